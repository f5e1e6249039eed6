-- An advisory that arrives exposes up to every host of a fleet at once. As a row per host in
-- exposures, each with two index entries, recording 100,000 of them took longer than the
-- whole plan. They are recorded instead as exposure sets: the hosts first found exposed to an
-- advisory at one time, in buckets by host id (plannerdb.ExposureBucket: a few thousand
-- short arrays, whatever the fleet's size).
--
-- A host's exposure to an advisory is either in a set (open since the set's time) or a row
-- of exposures, never both: before anything changes one host's exposures (patched, retired,
-- reboot pending, reopened), they are taken out of their sets into rows (TakeExposures).
create table exposure_sets (
    id            bigint      generated always as identity primary key,
    advisory_id   text        not null,
    bucket        int         not null,
    severity      text        not null,
    exposed_since timestamptz not null,
    host_ids      text[]      not null,
    fleets        text[]      not null, -- each host's fleet, by position in host_ids
    check (cardinality(host_ids) = cardinality(fleets))
);

-- The sets of an advisory; and, for one host, the sets of its bucket.
create index exposure_sets_advisory on exposure_sets (advisory_id);
create index exposure_sets_bucket on exposure_sets (bucket);
