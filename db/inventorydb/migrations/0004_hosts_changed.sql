-- Exposure reads the hosts from a copy in memory that each inventory instance brings up to
-- date before answering. changed_xid is the transaction that last changed what the copy
-- holds of a host (its name, fleet, OS release, package set, whether it is retired); a
-- reader asks for the hosts changed by transactions it may not have seen (changed_xid at or
-- above the oldest transaction running when it last read: pg_snapshot_xmin), so a change
-- that commits late is never passed over. Hosts are retired, never deleted.
alter table hosts add column changed_xid bigint not null default (pg_current_xact_id()::text::bigint);

create function hosts_changed() returns trigger language plpgsql as $$
begin
    new.changed_xid := pg_current_xact_id()::text::bigint;
    return new;
end
$$;

-- Only a change to what the copy holds: a scan that finds the same packages (most of them)
-- keeps the row's index entries and its place in no reader's changes.
create trigger hosts_changed before update on hosts for each row
    when ((old.name, old.fleet, old.os_id, old.os_version_id, old.os_codename, old.package_set_id, old.retired)
          is distinct from (new.name, new.fleet, new.os_id, new.os_version_id, new.os_codename, new.package_set_id, new.retired))
    execute function hosts_changed();

create index hosts_changed_xid on hosts (changed_xid);
