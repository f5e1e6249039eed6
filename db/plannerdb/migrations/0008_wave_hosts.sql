-- A plan's hosts wait in arrays, one row per wave and job target, until their wave starts;
-- then they become rows of rollout_hosts (see StartWaveHosts), and a rollout that ends
-- turns the hosts of the waves it never started into skipped rows. Planning writes a few
-- rows, not one row and three index entries per host of the fleet; a host's row is
-- written when its work is near.
--
-- A host of a rollout is in rollout_hosts, in wave_hosts, or in both when it was skipped
-- before its wave started (its row then wins). rollouts.host_count keeps the plan's size.
create table wave_hosts (
    rollout_id text   not null,
    wave       int    not null,
    target     int    not null,
    host_ids   text[] not null,
    primary key (rollout_id, wave, target)
);

alter table rollouts add column host_count int not null default 0;

update rollouts r set host_count = (select count(*) from rollout_hosts h where h.rollout_id = r.id);
