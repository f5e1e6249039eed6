-- An advisory's new exposures are copied in (see InsertExposures), up to a row per host of
-- the fleet, and each row goes into every index of the table. exposures_open served only
-- the compliance view's "open" filter, which the primary key (advisory_id, host_id) serves
-- as well for one advisory; without it a planned host costs two index entries, not three.
drop index exposures_open;
