-- name: GetServiceInfo :one
select value from service_info where key = @key;

-- name: SetServiceInfo :exec
insert into service_info (key, value)
values (@key, @value)
on conflict (key) do update set value = excluded.value, updated_at = now();

-- name: ReceiveJob :one
-- Records a job once and returns its row; a redelivery finds the row stored before.
with added as (
    insert into jobs (job_id, host_id, rollout_id, event_id, correlation_id, request)
    values (@job_id, @host_id, @rollout_id, @event_id, @correlation_id, @request)
    on conflict (job_id) do nothing
    returning *
)
select * from added
union all
select * from jobs where job_id = @job_id and not exists (select 1 from added);

-- name: GetJob :one
select * from jobs where job_id = @job_id;

-- name: StartAttempt :one
update jobs
set status = 'running', attempt = attempt + 1, executor = @executor,
    started_at = coalesce(started_at, now()), updated_at = now()
where job_id = @job_id and status in ('received', 'running')
returning attempt, started_at;

-- name: SaveProgress :execrows
update jobs set step = @step, progress = @progress, updated_at = now()
where job_id = @job_id and status = 'running';

-- name: FinishJob :execrows
update jobs
set status = @status, step = @step, progress = @progress, reason = @reason,
    result_subject = @result_subject, result_id = @result_id, result_data = @result_data,
    finished_at = now(), updated_at = now()
where job_id = @job_id and status in ('received', 'running');

-- name: HostJobs :many
select job_id, rollout_id, status, step, reason, received_at, finished_at from jobs
where host_id = @host_id order by received_at desc limit @max_rows;

-- name: AcquireLease :one
insert into host_leases (host_id, holder, job_id, expires_at)
values (@host_id, @holder, @job_id, now() + make_interval(secs => @ttl_seconds::float8))
on conflict (host_id) do update
set holder = excluded.holder, job_id = excluded.job_id, acquired_at = now(), expires_at = excluded.expires_at
where host_leases.expires_at < now()
   or (host_leases.holder = excluded.holder and host_leases.job_id = excluded.job_id)
returning holder, job_id, expires_at;

-- name: GetLease :one
select holder, job_id, expires_at, expires_at < now() as expired from host_leases where host_id = @host_id;

-- name: RenewLease :execrows
update host_leases set expires_at = now() + make_interval(secs => @ttl_seconds::float8)
where host_id = @host_id and holder = @holder and job_id = @job_id;

-- name: ReleaseLease :exec
delete from host_leases where host_id = @host_id and holder = @holder and job_id = @job_id;

-- name: AppendLog :exec
insert into job_logs (job_id, seq, data) values (@job_id, @seq, @data);

-- name: JobLog :many
select seq, at, data from job_logs where job_id = @job_id order by seq;

-- name: JobLogSize :one
select coalesce(max(seq), 0)::integer as last_seq, coalesce(sum(length(data)), 0)::bigint as bytes
from job_logs where job_id = @job_id;
