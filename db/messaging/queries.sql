-- name: InsertOutboxBatch :exec
-- Events in one statement, stored in the order given. An event id already in the outbox is
-- not stored twice (a derived id produced again). When any was stored, the relays of this
-- schema are woken (see NotifyOutbox) by the same statement: one round trip, not two.
with added as (
    insert into outbox (event_id, subject, data)
    select unnest(@event_ids::text[]), unnest(@subjects::text[]), unnest(@datas::bytea[])
    on conflict (event_id) do nothing
    returning 1
)
select pg_notify('patchfleet_outbox.' || current_schema(), '') from added limit 1;

-- name: InsertOutboxOne :exec
-- InsertOutboxBatch for one event, without arrays: PostgreSQL builds a bytea[] parameter and
-- unnests it, copying the data twice more, which shows for an event of a megabyte.
with added as (
    insert into outbox (event_id, subject, data)
    values (@event_id, @subject, @data)
    on conflict (event_id) do nothing
    returning 1
)
select pg_notify('patchfleet_outbox.' || current_schema(), '') from added limit 1;

-- name: NotifyOutbox :exec
-- Wakes the relays of this schema (see outbox.Channel). Delivered at commit, never for a
-- rolled back transaction.
select pg_notify('patchfleet_outbox.' || current_schema(), '');

-- name: FetchUnpublished :many
select seq, event_id, subject, data
from outbox
where published_at is null
order by seq
limit @max_rows;

-- name: MarkPublished :execrows
update outbox
set published_at = now()
where seq = any(@seqs::bigint[]) and published_at is null;

-- name: LastUnpublished :one
select coalesce(max(seq), 0)::bigint from outbox where published_at is null;

-- name: CountUnpublishedUpTo :one
select count(*) from outbox where published_at is null and seq <= @max_seq;

-- name: PruneOutbox :execrows
delete from outbox
where published_at is not null and published_at < @published_before::timestamptz;

-- name: InsertInbox :execrows
-- Zero rows: the consumer has already processed the event.
insert into inbox (consumer, event_id)
values (@consumer, @event_id)
on conflict (consumer, event_id) do nothing;

-- name: PruneInbox :execrows
delete from inbox
where processed_at < @processed_before;
