-- name: GetServiceInfo :one
select value from service_info where key = @key;

-- name: SetServiceInfo :exec
insert into service_info (key, value)
values (@key, @value)
on conflict (key) do update set value = excluded.value, updated_at = now();

-- name: UpsertHost :one
-- Registers or updates a host. An empty host key keeps the one pinned before, so re-importing
-- a TOFU host never unpins the key its first contact recorded; a new key re-pins and clears a
-- mismatch. Registering a retired host brings it back.
insert into hosts (id, name, fleet, tags, address, port, ssh_user, bastion, sudo, host_key, tofu,
                   tofu_allowed_by, is_new, app_path, registered_by)
values (@id, @name, @fleet, @tags, @address, @port, @ssh_user, @bastion, @sudo, @host_key, @tofu,
        @tofu_allowed_by, @is_new, @app_path, @registered_by)
on conflict (id) do update set
    name = excluded.name, fleet = excluded.fleet, tags = excluded.tags,
    address = excluded.address, port = excluded.port, ssh_user = excluded.ssh_user,
    bastion = excluded.bastion, sudo = excluded.sudo,
    host_key = case when excluded.host_key = '' then hosts.host_key else excluded.host_key end,
    key_mismatch = case when excluded.host_key <> '' and excluded.host_key <> hosts.host_key then false else hosts.key_mismatch end,
    presented_key = case when excluded.host_key <> '' and excluded.host_key <> hosts.host_key then '' else hosts.presented_key end,
    tofu = excluded.tofu,
    tofu_allowed_by = case when excluded.tofu then excluded.tofu_allowed_by else '' end,
    is_new = excluded.is_new, app_path = excluded.app_path, registered_by = excluded.registered_by,
    retired = false, retired_at = null, retired_reason = '',
    updated_at = now(), next_scan = now()
returning (xmax = 0) as inserted;

-- name: RetireHost :execrows
update hosts set retired = true, retired_at = @at, retired_reason = @reason, updated_at = now()
where id = @id and not retired;

-- name: HostExists :one
select exists (select 1 from hosts where id = @id);

-- name: GetHost :one
-- By id, else the host in service of that name. The id is tried first on its own (an
-- Append stops at the limit), so the usual lookup is one primary-key probe; an "or" of both
-- took a bitmap scan of two indexes.
(select * from hosts h where h.id = @id)
union all
(select * from hosts h where h.name = @id and not h.retired order by h.id limit 1)
limit 1;

-- name: ListHosts :many
-- One page of hosts by id; every filter is optional.
select * from hosts
where id > @after
  and (@include_retired::boolean or not retired)
  and (@fleet::text = '' or fleet = @fleet)
  and tags @> @tags::jsonb
  and (cardinality(@ids::text[]) = 0 or id = any(@ids::text[]))
  and (not @by_set::boolean or package_set_id = any(@set_ids::bigint[]))
  and (sqlc.narg('reboot_required')::boolean is null or reboot_required = sqlc.narg('reboot_required'))
  and (sqlc.narg('scanned_before')::timestamptz is null or last_scan is null or last_scan < sqlc.narg('scanned_before'))
order by id
limit @max_rows;

-- name: PackageSetByHash :one
select id from package_sets where hash = @hash;

-- name: InsertPackageSet :one
insert into package_sets (hash, package_count) values (@hash, @package_count)
on conflict (hash) do nothing
returning id;

-- name: InsertSetMembers :copyfrom
insert into package_set_members (set_id, name, arch, version, source_name, source_version, status, installed)
values (@set_id, @name, @arch, @version, @source_name, @source_version, @status, @installed);

-- name: SetMembers :many
select name, arch, version, source_name, source_version, status, installed
from package_set_members where set_id = @set_id order by name, arch;

-- name: MembersBySource :many
-- Installed members of any set built from these source packages: exposure's candidates.
select set_id, name, arch, version, source_name, source_version
from package_set_members where source_name = any(@sources::text[]) and installed;

-- name: MembersByName :many
select set_id, version from package_set_members where name = @name and installed;

-- name: HostChanges :many
-- The hosts changed since a reader's horizon (changed_xid at or above it), and the next
-- horizon: the oldest transaction running now, from this statement's own snapshot. The
-- outer join keeps one row (with an empty id) when nothing changed, for the horizon.
select pg_snapshot_xmin(pg_current_snapshot())::text::bigint as horizon,
       coalesce(h.id, '') as id, coalesce(h.name, '') as name, coalesce(h.fleet, '') as fleet,
       coalesce(h.os_id, '') as os_id, coalesce(h.os_version_id, '') as os_version_id,
       coalesce(h.os_codename, '') as os_codename, coalesce(h.package_set_id, 0) as package_set_id,
       coalesce(h.retired, true) as retired
from hosts h right join (select) one on h.changed_xid >= @since::bigint
order by h.id;

-- name: HostsWithComponent :many
-- Hosts running a component (Rails), for gem advisories, a page by id.
select id, name, fleet, os_id, os_version_id, os_codename, components
from hosts
where id > @after and not retired and components @> @component::jsonb
  and (@fleet::text = '' or fleet = @fleet)
  and (cardinality(@ids::text[]) = 0 or id = any(@ids::text[]))
order by id
limit @max_rows;

-- name: LockHosts :many
-- In id order, as every statement and transaction locking several hosts does (ScanNow, an
-- import): no deadlock between them.
select * from hosts where id = any(@ids::text[]) order by id for update;

-- name: SaveObservation :batchexec
update hosts set
    os_id = @os_id, os_version_id = @os_version_id, os_codename = @os_codename,
    kernel = @kernel, boot_id = @boot_id, package_set_id = @package_set_id,
    package_count = @package_count, held = @held, reboot_required = @reboot_required,
    reboot_packages = @reboot_packages, reboot_since = sqlc.narg('reboot_since'),
    components = @components, last_scan = @scanned_at, last_scan_id = @scan_id,
    last_scan_error = '', problems = @problems,
    -- The next scan, when this one was claimed and the claim still stands (see ScheduleScan).
    next_scan = case when next_scan = sqlc.narg('claimed_until') then sqlc.narg('next_scan')::timestamptz else next_scan end
where id = @id;

-- name: SaveScanError :exec
update hosts set last_scan_error = @message where id = @id;

-- name: PinTOFUKey :execrows
-- Pins the key a first contact accepted, only if nothing was pinned meanwhile.
update hosts set host_key = @host_key, tofu_pinned_at = @at where id = @id and host_key = '' and tofu;

-- name: MarkKeyMismatch :execrows
-- Marks a host refused for presenting another key than the one the scan was given; the row
-- count says whether it is news. A host re-pinned since then is left alone: its next scan
-- uses the new key.
update hosts set key_mismatch = true, presented_key = @presented, last_scan_error = @message
where id = @id and host_key = @pinned and not (key_mismatch and presented_key = @presented);

-- name: ClaimDueHosts :many
-- Claims hosts due for a scan, pushing next_scan out by a lease so no other instance takes
-- them, and returns them: the scan needs no other read to reach a host.
update hosts h set next_scan = @lease_until
where h.id in (
    select d.id from hosts d
    where d.next_scan <= @now and not d.retired and not d.key_mismatch
    order by d.next_scan
    limit @max_rows
    for update skip locked)
returning h.*;

-- name: ScheduleScan :exec
-- Sets the next scan after a claimed one, unless a scan-now moved next_scan off the claim's
-- lease meanwhile (that request still stands).
update hosts set next_scan = @next_scan where id = @id and next_scan = @claimed_until;

-- name: ScanNow :execrows
-- Locks the hosts in id order first, as LockHosts does: a scan round storing observations of
-- the same hosts meanwhile cannot deadlock with it.
update hosts h set next_scan = @now
from (
    select id from hosts
    where not retired and not key_mismatch
      and (cardinality(@ids::text[]) = 0 or id = any(@ids::text[]))
      and (@fleet::text = '' or fleet = @fleet)
    order by id
    for update
) d
where h.id = d.id;

-- name: FullyUpgraded :exec
-- A new host has had the full upgrade it was waiting for.
update hosts set is_new = false where id = @id and is_new;

-- name: AddInstalls :exec
-- The packages one job installed on a host, in one statement.
insert into installs (host_id, name, version, job_id, installed_at)
select @host_id, unnest(@names::text[]), unnest(@versions::text[]), @job_id, @installed_at
on conflict (host_id, name, version) do update set job_id = excluded.job_id, installed_at = excluded.installed_at;

-- name: Installs :many
select name, version from installs where host_id = @host_id;

-- name: DeleteInstall :exec
delete from installs where host_id = @host_id and name = @name and version = @version;

-- name: UpsertAdvisory :exec
-- Latest revision wins; an older revision arriving late changes nothing.
insert into advisories (id, revision, aliases, affected, withdrawn)
values (@id, @revision, @aliases, @affected, false)
on conflict (id) do update set
    revision = excluded.revision, aliases = excluded.aliases, affected = excluded.affected,
    withdrawn = false, updated_at = now()
where advisories.revision <= excluded.revision;

-- name: WithdrawAdvisory :exec
insert into advisories (id, revision, affected, withdrawn)
values (@id, @revision, '[]', true)
on conflict (id) do update set withdrawn = true, revision = greatest(advisories.revision, excluded.revision), updated_at = now()
where advisories.revision <= excluded.revision;

-- name: FindAdvisories :many
-- An advisory by id or by alias (CVE); withdrawn ones included so callers can say so.
select id, revision, affected, withdrawn from advisories
where id = @key or @key = any(aliases)
order by id;

-- name: PackageSetIDs :many
select id from package_sets order by id;

-- name: MembersBySourceIn :many
-- MembersBySource limited to some sets: the ones a cache has not seen yet.
select set_id, name, arch, version, source_name, source_version
from package_set_members
where source_name = any(@sources::text[]) and installed and set_id = any(@set_ids::bigint[]);

-- name: PackageSetHash :one
select hash from package_sets where id = @id;
