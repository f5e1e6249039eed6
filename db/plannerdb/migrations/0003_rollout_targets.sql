-- Lighter job rows for large plans. A host's job target (its packages, advisories and
-- component pins) is stored once per distinct target of a rollout — at fleet scale most hosts
-- of a plan share one — and rollout_hosts refers to it by index. rollout_hosts loses its
-- foreign key: planning inserts every host of a fleet, and a per-row key check roughly
-- doubles the cost of that copy; rows are only written next to their rollout, in its
-- transaction.

create table rollout_targets (
    rollout_id   text   not null,
    idx          int    not null,
    packages     jsonb  not null default '[]',
    advisory_ids text[] not null default '{}',
    components   jsonb  not null default '[]',
    primary key (rollout_id, idx)
);

insert into rollout_targets (rollout_id, idx, packages, advisory_ids)
select rollout_id, row_number() over (partition by rollout_id order by packages::text, advisory_ids) - 1, packages, advisory_ids
from (select distinct rollout_id, packages, advisory_ids from rollout_hosts) d;

alter table rollout_hosts add column target int not null default 0;

update rollout_hosts h set target = t.idx
from rollout_targets t
where t.rollout_id = h.rollout_id and t.packages = h.packages and t.advisory_ids = h.advisory_ids;

alter table rollout_hosts
    drop constraint rollout_hosts_rollout_id_fkey,
    drop column packages,
    drop column advisory_ids;
