-- Upgrade jobs, one row per job id: what was asked, how far it got (step and progress, saved
-- after every step so an executor that takes the job over resumes instead of repeating it),
-- and, once finished, the result event exactly as announced, so a redelivered job re-emits
-- the same event (same id: JetStream drops the duplicate) instead of running again.
create table jobs (
    job_id         text        primary key,
    host_id        text        not null,
    rollout_id     text        not null,
    event_id       text        not null, -- the UpgradeRequested that created the row
    correlation_id text        not null,
    request        jsonb       not null,
    status         text        not null default 'received'
                   check (status in ('received', 'running', 'completed', 'failed')),
    step           text        not null default '',
    attempt        integer     not null default 0,
    executor       text        not null default '',
    progress       jsonb       not null default '{}',
    reason         text        not null default '', -- UpgradeFailed reason, or '' when completed
    result_subject text        not null default '',
    result_id      text        not null default '',
    result_data    bytea,
    received_at    timestamptz not null default now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    updated_at     timestamptz not null default now()
);

create index jobs_host_received on jobs (host_id, received_at desc);

-- One lease per host: the executor instance (holder) running a job there. Renewed by a
-- heartbeat; an expired lease (its holder died) may be taken over.
create table host_leases (
    host_id     text        primary key,
    holder      text        not null,
    job_id      text        not null,
    acquired_at timestamptz not null default now(),
    expires_at  timestamptz not null
);

-- The full command log of every job, in chunks, bounded per job by the executor.
create table job_logs (
    job_id text        not null references jobs (job_id) on delete cascade,
    seq    integer     not null,
    at     timestamptz not null default now(),
    data   bytea       not null,
    primary key (job_id, seq)
);
