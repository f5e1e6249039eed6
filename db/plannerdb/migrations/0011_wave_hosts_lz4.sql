-- A large rollout's waves are a few arrays of up to every host id of a fleet, stored out of
-- line and compressed. lz4 costs a fraction of the default pglz's CPU on write.
alter table wave_hosts alter column host_ids set compression lz4;
