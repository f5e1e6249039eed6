-- name: GetServiceInfo :one
select value from service_info where key = @key;

-- name: SetServiceInfo :exec
insert into service_info (key, value)
values (@key, @value)
on conflict (key) do update set value = excluded.value, updated_at = now();

-- name: UpsertAdvisory :exec
insert into advisories (advisory_id, revision, severity, known_exploited, published, affected, updated_at)
values (@advisory_id, @revision, @severity, @known_exploited, @published, @affected, @now)
on conflict (advisory_id) do update
set revision = excluded.revision, severity = excluded.severity, known_exploited = excluded.known_exploited,
    published = excluded.published, affected = excluded.affected, withdrawn = false, updated_at = excluded.updated_at
where advisories.revision <= excluded.revision;

-- name: ActiveAdvisories :many
select advisory_id, severity, known_exploited, published, affected
from advisories where not withdrawn order by advisory_id;

-- name: WithdrawAdvisory :exec
update advisories set withdrawn = true, updated_at = @now where advisory_id = @advisory_id;

-- name: InsertRollout :execrows
insert into rollouts (id, open_key, kind, fleet, state, plan_hash, advisory_ids, request_id, severity,
    strategy, reboot, needs_approval, not_before, ignore_windows, windows, bake_ns, max_failures,
    max_unavailable, health_check, configure_unattended, wave_count, host_count, canary, reason, created_at, updated_at, finished_at)
values (@id, @open_key, @kind, @fleet, @state, @plan_hash, @advisory_ids, @request_id, @severity,
    @strategy, @reboot, @needs_approval, @not_before, @ignore_windows, @windows, @bake_ns, @max_failures,
    @max_unavailable, @health_check, @configure_unattended, @wave_count, @host_count, @canary, @reason, @now, @now, @finished_at)
on conflict do nothing;

-- name: InsertWaves :copyfrom
insert into waves (rollout_id, idx, hosts) values (@rollout_id, @idx, @hosts);

-- name: InsertRolloutTargets :copyfrom
insert into rollout_targets (rollout_id, idx, packages, advisory_ids, components)
values (@rollout_id, @idx, @packages, @advisory_ids, @components);

-- name: InsertWaveHosts :copyfrom
insert into wave_hosts (rollout_id, wave, target, host_ids)
values (@rollout_id, @wave, @target, @host_ids);

-- name: StartWaveHosts :exec
-- Turns the hosts of a wave that starts into pending rows; a host skipped before (see
-- SkipHost) keeps its row.
with w as (
    delete from wave_hosts d where d.rollout_id = @rollout_id and d.wave = @wave
    returning d.target, d.host_ids
)
insert into rollout_hosts (rollout_id, host_id, wave, state, target)
select @rollout_id::text, unnest(w.host_ids), @wave::int, 'pending', w.target from w
on conflict (rollout_id, host_id) do nothing;

-- name: LockRollout :one
select * from rollouts where id = @id for update;

-- name: TryLockRollout :one
select * from rollouts where id = @id and state in ('scheduled', 'running') for update skip locked;

-- name: DueRollouts :many
select id from rollouts
where state in ('scheduled', 'running') and (not_before is null or not_before <= @now)
order by created_at, id
limit @max;

-- name: SetRolloutState :exec
update rollouts
set state = @state, reason = @reason, updated_at = @now,
    finished_at = case when @state::text in ('completed', 'cancelled', 'rejected') then @now::timestamptz end
where id = @id;

-- name: ApproveRollout :exec
update rollouts set state = 'scheduled', approved_by = @approved_by, updated_at = @now where id = @id;

-- name: ResumeRollout :exec
update rollouts
set state = case when started_at is null then 'scheduled' else 'running' end, reason = '', updated_at = @now
where id = @id;

-- name: StartRollout :exec
update rollouts set state = 'running', started_at = coalesce(started_at, @now), updated_at = @now where id = @id;

-- name: SetCurrentWave :exec
update rollouts set current_wave = @current_wave, wave_not_before = @wave_not_before, updated_at = @now where id = @id;

-- name: GetWave :one
select * from waves where rollout_id = @rollout_id and idx = @idx;

-- name: StartWave :exec
update waves set state = 'running', started_at = @now where rollout_id = @rollout_id and idx = @idx;

-- name: CompleteWave :exec
update waves set state = 'completed', completed_at = @now where rollout_id = @rollout_id and idx = @idx;

-- name: WaveHosts :many
select host_id from rollout_hosts where rollout_id = @rollout_id and wave = @wave order by host_id;

-- name: LockFleet :exec
select pg_advisory_xact_lock(hashtext('planner.fleet:' || @fleet::text));

-- name: FleetInFlight :one
select count(*)::int from rollout_hosts h join rollouts r on r.id = h.rollout_id
where r.fleet = @fleet and h.state = 'dispatched';

-- name: PendingHosts :many
-- Pending hosts of a wave that have no job in flight elsewhere (the executor never runs two
-- jobs on a host, and the planner does not queue one behind another).
select h.host_id, t.packages, t.components, h.attempt from rollout_hosts h
join rollout_targets t on t.rollout_id = h.rollout_id and t.idx = h.target
where h.rollout_id = @rollout_id and h.wave = @wave and h.state = 'pending'
  and not exists (select 1 from rollout_hosts o where o.host_id = h.host_id and o.state = 'dispatched')
order by h.host_id
limit @max;

-- name: DispatchHosts :exec
-- Marks hosts of a rollout dispatched, each with its job and attempt, in one statement.
update rollout_hosts h
set state = 'dispatched', job_id = d.job_id, attempt = d.attempt, dispatched_at = @now
from (select unnest(@host_ids::text[]) as host_id, unnest(@job_ids::text[]) as job_id, unnest(@attempts::int[]) as attempt) d
where h.rollout_id = @rollout_id and h.host_id = d.host_id;

-- name: WaveCounts :one
select count(*) filter (where state = 'pending')::int as pending,
       count(*) filter (where state = 'dispatched')::int as dispatched,
       count(*) filter (where state = 'succeeded')::int as succeeded,
       count(*) filter (where state = 'failed')::int as failed,
       count(*) filter (where state = 'skipped')::int as skipped
from rollout_hosts where rollout_id = @rollout_id and wave = @wave;

-- name: WaveBusy :one
-- Whether a wave still has a host in flight or waiting: the jobs in flight are looked at
-- first (a few rows, through their index), so a running wave answers without counting.
select (exists (select 1 from rollout_hosts d where d.rollout_id = @rollout_id and d.wave = @wave and d.state = 'dispatched')
    or exists (select 1 from rollout_hosts p where p.rollout_id = @rollout_id and p.wave = @wave and p.state = 'pending'))::boolean as busy;

-- name: RolloutCounts :one
-- Failures so far (failed hosts all have rows: they were dispatched).
select count(*) filter (where state = 'failed')::int as failed,
       count(*) filter (where state = 'failed' and wave = 0)::int as failed_first_wave
from rollout_hosts where rollout_id = @rollout_id;

-- name: HostByJob :one
-- (job_id <> '' lets a generic plan use the partial index rollout_hosts_job.)
select h.rollout_id, h.host_id, h.wave, h.state, t.advisory_ids from rollout_hosts h
join rollout_targets t on t.rollout_id = h.rollout_id and t.idx = h.target
where h.job_id = @job_id and h.job_id <> '';

-- name: SucceedHost :one
-- Records the success of a job's host and its exposures to the rollout's advisories as
-- patched, in one statement (the host's exposures taken out of their sets first). No row:
-- the job is unknown or its host has a result already.
with done as (
    update rollout_hosts h
    set state = 'succeeded', reason = '', reboot_pending = @reboot_pending, rebooted = @rebooted, finished_at = @now
    from rollout_targets t
    where h.job_id = @job_id and h.job_id <> '' and h.state in ('pending', 'dispatched')
      and t.rollout_id = h.rollout_id and t.idx = h.target
    returning h.rollout_id, h.host_id, t.advisory_ids
), patched as (
    update exposures e
    set patched_at = coalesce(e.patched_at, @now), reboot_pending = @reboot_pending, rollout_id = done.rollout_id
    from done
    where e.host_id = done.host_id and e.advisory_id = any(done.advisory_ids)
)
select rollout_id, host_id from done;

-- name: FinishHost :execrows
update rollout_hosts
set state = @state, reason = @reason, reboot_pending = @reboot_pending, rebooted = @rebooted, finished_at = @now
where rollout_id = @rollout_id and host_id = @host_id and state in ('pending', 'dispatched');

-- name: SkipPendingHosts :exec
-- Skips the hosts of an ending rollout that have not been dispatched: pending rows, and the
-- hosts of waves that never started, which become rows.
with w as (
    delete from wave_hosts d where d.rollout_id = @rollout_id
    returning d.wave, d.target, d.host_ids
), unstarted as (
    insert into rollout_hosts (rollout_id, host_id, wave, state, target, reason, finished_at)
    select @rollout_id::text, unnest(w.host_ids), w.wave, 'skipped', w.target, @reason::text, @now::timestamptz from w
    on conflict (rollout_id, host_id) do nothing
)
update rollout_hosts h set state = 'skipped', reason = @reason, finished_at = @now
where h.rollout_id = @rollout_id and h.state = 'pending';

-- name: RolloutResults :many
select host_id, state, reason, reboot_pending, rebooted from rollout_hosts
where rollout_id = @rollout_id order by host_id;

-- name: AnyRolloutOpen :one
select exists (select 1 from rollouts where state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted'))::boolean;

-- name: CoveredPackages :many
-- A join on the unnested ids, not "= any(array)": planning passes up to every host of a fleet.
select h.host_id, t.packages
from unnest(@host_ids::text[]) as u (id)
join rollout_hosts h on h.host_id = u.id
join rollouts r on r.id = h.rollout_id
join rollout_targets t on t.rollout_id = h.rollout_id and t.idx = h.target
where h.state in ('pending', 'dispatched')
  and r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted')
union all
select w.host_id, t.packages
from (select rollout_id, target, unnest(host_ids) as host_id from wave_hosts) w
join unnest(@host_ids::text[]) as u (id) on u.id = w.host_id
join rollouts r on r.id = w.rollout_id
join rollout_targets t on t.rollout_id = w.rollout_id and t.idx = w.target
where r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted')
  and not exists (select 1 from rollout_hosts h where h.rollout_id = w.rollout_id and h.host_id = w.host_id);

-- name: OpenJobsOfHost :many
select h.rollout_id, t.packages, h.state, r.kind from rollout_hosts h
join rollouts r on r.id = h.rollout_id
join rollout_targets t on t.rollout_id = h.rollout_id and t.idx = h.target
where h.host_id = @host_id and h.state in ('pending', 'dispatched')
  and r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted')
union all
select w.rollout_id, t.packages, 'pending', r.kind from wave_hosts w
join rollouts r on r.id = w.rollout_id
join rollout_targets t on t.rollout_id = w.rollout_id and t.idx = w.target
where @host_id::text = any(w.host_ids)
  and r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted')
  and not exists (select 1 from rollout_hosts h where h.rollout_id = w.rollout_id and h.host_id = @host_id);

-- name: RecordExposures :exec
-- Records exposures as rows: new ones, and ended ones again since now. An exposure in a set
-- is open and on record already.
insert into exposures (advisory_id, host_id, fleet, severity, exposed_since)
select u.advisory_id, u.host_id, u.fleet, u.severity, @now
from (
    select unnest(@advisory_ids::text[]) as advisory_id, unnest(@host_ids::text[]) as host_id, unnest(@buckets::int[]) as bucket,
           unnest(@fleets::text[]) as fleet, unnest(@severities::text[]) as severity
) u
where not exists (
    select 1 from exposure_sets s
    where s.bucket = u.bucket and s.advisory_id = u.advisory_id and u.host_id = any(s.host_ids))
on conflict (advisory_id, host_id) do update
set exposed_since = excluded.exposed_since, patched_at = null, retired_at = null
where exposures.patched_at is not null or exposures.retired_at is not null;

-- name: LockExposures :exec
-- Serialises the recording of exposures to these advisories (in id order, so two
-- transactions cannot wait on each other): InsertExposureSets copies hosts that must not be
-- on record.
select pg_advisory_xact_lock(hashtext('planner.exposures:' || id))
from (select distinct unnest(@advisory_ids::text[]) as id order by 1) a;

-- name: ExposuresOfAdvisory :many
-- The hosts with an exposure to an advisory on record, and whether it ended.
select host_id, (patched_at is not null or retired_at is not null)::boolean as ended from exposures where advisory_id = @advisory_id::text
union all
select unnest(host_ids), false from exposure_sets where advisory_id = @advisory_id::text;

-- name: InsertExposureSets :copyfrom
insert into exposure_sets (advisory_id, bucket, severity, exposed_since, host_ids, fleets)
values (@advisory_id, @bucket, @severity, @exposed_since, @host_ids, @fleets);

-- name: TakeExposures :exec
-- Takes a host's exposures (all, or those to the advisories listed) out of their sets into
-- rows of exposures, as they were: from then on they change as rows. The sets are updated
-- in place, each from its latest version, so a concurrent taker of another host of a set
-- waits for this one and then takes from what it left. The rows come from the snapshot's
-- version of each set taken from, which has the host: hosts join sets only as new sets.
with taken as (
    update exposure_sets s
    set host_ids = s.host_ids[:array_position(s.host_ids, @host_id::text) - 1] || s.host_ids[array_position(s.host_ids, @host_id::text) + 1:],
        fleets = s.fleets[:array_position(s.host_ids, @host_id::text) - 1] || s.fleets[array_position(s.host_ids, @host_id::text) + 1:]
    where s.bucket = @bucket and @host_id::text = any(s.host_ids) and (@every::boolean or s.advisory_id = any(@advisory_ids::text[]))
    returning s.id
)
insert into exposures (advisory_id, host_id, fleet, severity, exposed_since)
select o.advisory_id, @host_id::text, o.fleets[array_position(o.host_ids, @host_id::text)], o.severity, o.exposed_since
from taken join exposure_sets o on o.id = taken.id
on conflict (advisory_id, host_id) do nothing;

-- name: DropEmptyExposureSets :exec
delete from exposure_sets where bucket = @bucket and host_ids = '{}';

-- name: OpenExposuresOfHost :many
-- The advisories a host has an open exposure to on record: in rows, and in exposure sets.
select advisory_id from exposures
where host_id = @host_id and patched_at is null and retired_at is null
union
select advisory_id from exposure_sets
where bucket = @bucket and @host_id::text = any(host_ids)
order by 1;

-- name: PatchedOutside :exec
-- A host no longer exposed to these advisories (upgraded outside Patchfleet) is patched now.
update exposures set patched_at = @now
where host_id = @host_id and patched_at is null and retired_at is null and advisory_id = any(@advisory_ids::text[]);

-- name: RetireExposures :exec
-- A decommissioned host's open exposures end now.
update exposures set retired_at = @now
where host_id = @host_id and retired_at is null and (patched_at is null or reboot_pending);

-- name: ClearRebootPending :exec
update exposures set reboot_pending = false where host_id = @host_id and reboot_pending;

-- name: MarkRebooted :exec
update rollout_hosts set rebooted = true, reboot_pending = false
where host_id = @host_id and (job_id = @job_id or (@job_id::text = '' and reboot_pending));

-- name: ListRollouts :many
-- A host not yet dispatched is pending whether it has a row or waits in wave_hosts.
select r.*, c.pending, c.in_flight, c.succeeded, c.failed, c.skipped
from rollouts r
cross join lateral (
    select (r.host_count - count(*) filter (where h.state <> 'pending'))::int as pending,
           count(*) filter (where h.state = 'dispatched')::int as in_flight,
           count(*) filter (where h.state = 'succeeded')::int as succeeded,
           count(*) filter (where h.state = 'failed')::int as failed,
           count(*) filter (where h.state = 'skipped')::int as skipped
    from rollout_hosts h where h.rollout_id = r.id
) c
where (@fleet::text = '' or r.fleet = @fleet)
  and (@state::text = '' or r.state = @state)
  and (@advisory_id::text = '' or @advisory_id = any(r.advisory_ids))
  and (@id::text = '' or r.id = @id)
  and (not @open::boolean or r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted'))
  and (@after_id::text = '' or (r.created_at, r.id) < (@after_time::timestamptz, @after_id::text))
order by r.created_at desc, r.id desc
limit @max;

-- name: ListWaves :many
select * from waves where rollout_id = @rollout_id order by idx;

-- name: ListRolloutHosts :many
select h.host_id, h.wave, h.state, h.job_id, h.reason, h.reboot_pending, h.rebooted, h.dispatched_at, h.finished_at,
       t.packages, t.components
from rollout_hosts h
join rollout_targets t on t.rollout_id = h.rollout_id and t.idx = h.target
where h.rollout_id = @rollout_id
union all
select w.host_id, w.wave, 'pending', '', '', false, false, null::timestamptz, null::timestamptz, t.packages, t.components
from (select rollout_id, wave, target, unnest(host_ids) as host_id from wave_hosts where rollout_id = @rollout_id) w
join rollout_targets t on t.rollout_id = w.rollout_id and t.idx = w.target
where not exists (select 1 from rollout_hosts h where h.rollout_id = w.rollout_id and h.host_id = w.host_id)
order by 2, 1;

-- name: Compliance :many
-- The rows of exposures and the hosts of exposure sets alike (a host in a set is open).
-- Unfiltered, a page draws on the sets only up to the advisory by which the sets after the
-- cursor's advisory hold @max hosts (counted without unnesting them): the page ends there
-- at the latest, so the console's pages through every exposure do not each unnest all.
with bound as (
    select a.advisory_id from (
        select advisory_id, sum(sum(cardinality(host_ids))) over (order by advisory_id) as upto
        from exposure_sets
        where advisory_id > @after_advisory::text
        group by advisory_id
    ) a
    where a.upto >= @max::int and @advisory_id::text = '' and @host_id::text = '' and @fleet::text = ''
    order by a.advisory_id
    limit 1
)
select e.advisory_id, e.host_id, e.fleet, e.severity, e.exposed_since, e.patched_at, e.retired_at, e.reboot_pending, e.rollout_id
from exposures e
where (@advisory_id::text = '' or e.advisory_id = @advisory_id)
  and (@host_id::text = '' or e.host_id = @host_id)
  and (@fleet::text = '' or e.fleet = @fleet)
  and (not @open::boolean or e.retired_at is null and (e.patched_at is null or e.reboot_pending))
  and (e.advisory_id, e.host_id) > (@after_advisory::text, @after_host::text)
union all
select s.advisory_id, h.host_id, h.fleet, s.severity, s.exposed_since, null, null, false, ''
from exposure_sets s
cross join lateral (select unnest(s.host_ids) as host_id, unnest(s.fleets) as fleet) h
where (@advisory_id = '' or s.advisory_id = @advisory_id)
  and (@host_id = '' or s.bucket = @bucket::int and h.host_id = @host_id)
  and (@fleet = '' or h.fleet = @fleet)
  and s.advisory_id >= @after_advisory and (s.advisory_id, h.host_id) > (@after_advisory, @after_host)
  and s.advisory_id <= coalesce((select advisory_id from bound), s.advisory_id)
order by 1, 2
limit @max;

-- name: OpenRolloutsOfAdvisory :many
select id from rollouts
where advisory_ids = array[@advisory_id::text] and state in ('awaiting_approval', 'scheduled')
for update;

-- name: PendingRolloutsOfHost :many
-- Open rollouts that have not dispatched the host yet.
select h.rollout_id from rollout_hosts h join rollouts r on r.id = h.rollout_id
where h.host_id = @host_id and h.state = 'pending'
  and r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted')
union
select w.rollout_id from wave_hosts w join rollouts r on r.id = w.rollout_id
where @host_id::text = any(w.host_ids)
  and r.state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted')
  and not exists (select 1 from rollout_hosts h where h.rollout_id = w.rollout_id and h.host_id = @host_id)
order by 1;

-- name: SkipHost :one
-- Skips one host of a rollout that has not been dispatched: its pending row, or, when its
-- wave has not started, a skipped row that wins over its place in wave_hosts. 0: the host
-- was dispatched, finished or is not in the rollout.
with unstarted as (
    select w.wave, w.target from wave_hosts w
    where w.rollout_id = @rollout_id and @host_id::text = any(w.host_ids)
    limit 1
), added as (
    insert into rollout_hosts (rollout_id, host_id, wave, state, target, reason, finished_at)
    select @rollout_id::text, @host_id::text, u.wave, 'skipped', u.target, @reason::text, @now::timestamptz from unstarted u
    on conflict (rollout_id, host_id) do nothing
    returning 1
), skipped as (
    update rollout_hosts h set state = 'skipped', reason = @reason, finished_at = @now
    where h.rollout_id = @rollout_id and h.host_id = @host_id and h.state = 'pending'
    returning 1
)
select ((select count(*) from added) + (select count(*) from skipped))::int;

