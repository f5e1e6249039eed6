-- The jobs in flight, a few hundred rows of a rollout of any size: what the fleet's
-- unavailability budget counts, what keeps a host from a second job, and what keeps a wave
-- from completing. Without it each of those read every open row of the rollout, once per
-- job result.
create index rollout_hosts_dispatched on rollout_hosts (host_id) where state = 'dispatched';
