-- name: GetServiceInfo :one
select value from service_info where key = @key;

-- name: SetServiceInfo :exec
insert into service_info (key, value)
values (@key, @value)
on conflict (key) do update set value = excluded.value, updated_at = now();

-- name: AdvisoryStates :many
-- The stored state of a batch of advisories, to tell unchanged ones from changed ones.
select id, revision, content_hash, modified, withdrawn
from advisories
where id = any(@ids::text[]);

-- name: LockAdvisoryStates :many
-- AdvisoryStates inside the write transaction: rows are locked so two ingesters of one
-- advisory cannot both create the same revision.
select id, revision, content_hash, modified, withdrawn
from advisories
where id = any(@ids::text[])
order by id
for update;

-- name: SetCurrentRevisions :exec
-- Makes new revisions their advisories' current ones (the highest, when a batch holds
-- several of one advisory), before InsertRevisions appends them to the history. Withdrawn
-- is the zero time (0001-01-01) for an advisory that is not withdrawn; aliases are
-- space-separated (aliases never hold spaces).
with u as (
    select unnest(@ids::text[]) as id, unnest(@revisions::int[]) as revision,
           unnest(@content_hashes::text[]) as content_hash, unnest(@sources::text[]) as source,
           unnest(@origins::text[]) as origin, unnest(@aliases::text[]) as aliases,
           unnest(@modifieds::timestamptz[]) as modified,
           nullif(unnest(@withdrawns::timestamptz[]), '0001-01-01 00:00:00+00'::timestamptz) as withdrawn
)
insert into advisories (id, revision, content_hash, source, origin, aliases, modified, withdrawn)
select distinct on (u.id) u.id, u.revision, u.content_hash, u.source, u.origin,
       string_to_array(u.aliases, ' '), u.modified, u.withdrawn
from u
order by u.id, u.revision desc
on conflict (id) do update set
    revision = excluded.revision,
    content_hash = excluded.content_hash,
    source = excluded.source,
    origin = excluded.origin,
    aliases = excluded.aliases,
    modified = excluded.modified,
    withdrawn = excluded.withdrawn,
    updated_at = now();

-- name: InsertRevisions :copyfrom
-- The history, copied: a revision's record is a few KB, and a batch's records sent as one
-- array parameter are encoded, copied and sent whole, where COPY streams them.
insert into advisory_revisions (advisory_id, revision, content_hash, origin, modified, withdrawn, record, event_id)
values (@advisory_id, @revision, @content_hash, @origin, @modified, @withdrawn, @record, @event_id);

-- name: UpsertRawRecords :exec
insert into raw_records (origin, raw_hash, advisory_id)
select unnest(@origins::text[]), unnest(@raw_hashes::bytea[]), unnest(@advisory_ids::text[])
on conflict (origin) do update set raw_hash = excluded.raw_hash, advisory_id = excluded.advisory_id;

-- name: RawRecordsUnder :many
-- Raw digests of the records read from one feed (origins starting with its path or URL).
select origin, raw_hash from raw_records where starts_with(origin, @prefix::text);

-- name: InsertIngestError :exec
insert into ingest_errors (source, origin, reason) values (@source, @origin, @reason);

-- name: IngestErrors :many
select seq, source, origin, reason, occurred_at
from ingest_errors
where seq > @after_seq
order by seq
limit @max_rows;

-- name: FeedState :one
select url, etag, last_modified, last_success, last_error, last_error_at
from feed_state where url = @url;

-- name: SaveFeedSuccess :exec
insert into feed_state (url, etag, last_modified, last_success, last_error)
values (@url, @etag, @last_modified, @at, '')
on conflict (url) do update set
    etag = excluded.etag,
    last_modified = excluded.last_modified,
    last_success = excluded.last_success,
    last_error = '',
    updated_at = now();

-- name: SaveFeedError :exec
insert into feed_state (url, last_error, last_error_at)
values (@url, @last_error, @at)
on conflict (url) do update set
    last_error = excluded.last_error,
    last_error_at = excluded.last_error_at,
    updated_at = now();

-- The current record of an advisory is its current revision's.

-- name: GetAdvisory :one
select a.id, a.revision, a.content_hash, a.source, a.origin, a.modified, a.withdrawn, r.record
from advisories a join advisory_revisions r on r.advisory_id = a.id and r.revision = a.revision
where a.id = @id;

-- name: AdvisoriesByAlias :many
select a.id, a.revision, a.content_hash, a.source, a.origin, a.modified, a.withdrawn, r.record
from advisories a join advisory_revisions r on r.advisory_id = a.id and r.revision = a.revision
where a.aliases @> array[@alias::text]
order by a.id
limit @max_rows;

-- name: AdvisoriesModifiedSince :many
-- A page of advisories modified at or after since, in (modified, id) order, after the
-- position (after_modified, after_id) of the previous page's last row.
select a.id, a.revision, a.content_hash, a.source, a.origin, a.modified, a.withdrawn, r.record
from advisories a join advisory_revisions r on r.advisory_id = a.id and r.revision = a.revision
where a.modified >= @since::timestamptz
  and (a.modified, a.id) > (@after_modified::timestamptz, @after_id::text)
order by a.modified, a.id
limit @max_rows;

-- name: AdvisoryRevisions :many
select advisory_id, revision, content_hash, origin, modified, withdrawn, event_id, created_at
from advisory_revisions
where advisory_id = @advisory_id
order by revision;
