-- Advisories as last seen (the current revision), every revision ever published, the state
-- of polled feeds, and the records that could not be ingested.

create table advisories (
    id           text        primary key,
    revision     int         not null check (revision >= 1),
    content_hash text        not null, -- advisory.ContentHash of the current revision
    source       text        not null, -- osv, debian-tracker, ubuntu-notices, or a publisher's name
    origin       text        not null, -- where it was last read: file, zip entry, URL, FEEDS event
    aliases      text[]      not null default '{}',
    modified     timestamptz not null,
    withdrawn    timestamptz,
    record       jsonb       not null, -- the normalised advisory (events.SecurityAdvisoryPublished)
    updated_at   timestamptz not null default now()
);

-- CVE lookup: aliases @> array['CVE-…'].
create index advisories_aliases on advisories using gin (aliases);
-- "Modified since T", paged by (modified, id).
create index advisories_modified on advisories (modified, id);

create table advisory_revisions (
    advisory_id  text        not null references advisories (id),
    revision     int         not null,
    content_hash text        not null,
    origin       text        not null,
    modified     timestamptz not null,
    withdrawn    timestamptz,
    record       jsonb       not null,
    event_id     text        not null, -- the SecurityAdvisoryPublished / AdvisoryWithdrawn id
    created_at   timestamptz not null default now(),
    primary key (advisory_id, revision)
);

-- Raw record digests: an OSV record whose bytes are unchanged since it was last ingested is
-- not parsed again. Keyed by origin (the file or zip entry it came from).
create table raw_records (
    origin      text  primary key,
    raw_hash    bytea not null,
    advisory_id text  not null
);

-- Conditional-request state of polled feeds, so a restart does not refetch an unchanged feed.
create table feed_state (
    url           text        primary key,
    etag          text        not null default '',
    last_modified text        not null default '',
    last_success  timestamptz,
    last_error    text        not null default '',
    last_error_at timestamptz,
    updated_at    timestamptz not null default now()
);

-- Records that could not be used, with where they came from and why.
create table ingest_errors (
    seq         bigint      generated always as identity primary key,
    source      text        not null, -- the feed: a path, URL or the FEEDS stream
    origin      text        not null, -- the record: file, zip entry, "#id", event id
    reason      text        not null,
    occurred_at timestamptz not null default now()
);

create index ingest_errors_occurred_at on ingest_errors (occurred_at);
