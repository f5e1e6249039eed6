-- name: InsertOutbox :execrows
-- An event id already in the outbox is not stored twice (a derived id produced again).
insert into outbox (event_id, subject, data)
values (@event_id, @subject, @data)
on conflict (event_id) do nothing;

-- name: NotifyOutbox :exec
-- Delivered at commit, and never for a rolled back transaction.
select pg_notify(@channel::text, '');

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

-- name: CountUnpublished :one
select count(*) from outbox where published_at is null;

-- name: PruneOutbox :execrows
delete from outbox
where published_at is not null and published_at < @published_before;

-- name: InsertInbox :execrows
-- Zero rows: the consumer has already processed the event.
insert into inbox (consumer, event_id)
values (@consumer, @event_id)
on conflict (consumer, event_id) do nothing;

-- name: PruneInbox :execrows
delete from inbox
where processed_at < @processed_before;
