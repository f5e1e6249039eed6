-- The transactional outbox: events stored in the transaction that made the state change they
-- announce, published by the relay (db/outbox) in seq order, pruned after a retention.
create table outbox (
    seq          bigint generated always as identity primary key,
    event_id     text        not null unique,
    subject      text        not null,
    data         bytea       not null,
    created_at   timestamptz not null default now(),
    published_at timestamptz
);

-- What the relay reads: small, since published rows leave it.
create index outbox_unpublished on outbox (seq) where published_at is null;
create index outbox_published_at on outbox (published_at) where published_at is not null;

-- The inbox: ids of events a consumer has processed, recorded in the transaction of the
-- consumer's effect so a redelivered event is recognised and skipped.
create table inbox (
    consumer     text        not null,
    event_id     text        not null,
    processed_at timestamptz not null default now(),
    primary key (consumer, event_id)
);

create index inbox_processed_at on inbox (processed_at);
