-- Events are mostly a few KB of JSON, compressed when stored out of line. lz4 costs a
-- fraction of the default pglz's CPU; an outbox row lives only until the relay publishes it.
alter table outbox alter column data set compression lz4;
