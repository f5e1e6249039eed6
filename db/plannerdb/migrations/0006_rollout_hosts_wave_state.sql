-- One index for a wave's hosts by state, in dispatch order, instead of two: (rollout, wave,
-- state) for the counts and the busy check, and (rollout, wave, host) of the pending hosts
-- for dispatch. Every host row is written into each index of the table when it is planned
-- and again at each change of state; at 100,000 hosts one index less is about a quarter of
-- the time to store a plan's hosts.
drop index rollout_hosts_wave;
drop index rollout_hosts_pending;
create index rollout_hosts_wave_state on rollout_hosts (rollout_id, wave, state, host_id);
