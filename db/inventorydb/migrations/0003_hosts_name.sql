-- GetHost finds a host by id or by the name of a host in service. Without an index on name
-- the "or" made every lookup (one per scan, one per host query) read the whole table.
create index hosts_name on hosts (name) where not retired;
