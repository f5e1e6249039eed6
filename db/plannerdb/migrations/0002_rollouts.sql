-- The planner's state: advisories it has seen, rollouts with their waves and per-host jobs,
-- and each host's exposure per advisory (for the compliance view).

-- Advisories as last published, so an inventory change can be re-evaluated against them.
create table advisories (
    advisory_id     text        primary key,
    revision        int         not null,
    severity        text        not null,
    known_exploited boolean     not null default false,
    published       timestamptz,
    affected        jsonb       not null,
    withdrawn       boolean     not null default false,
    updated_at      timestamptz not null
);

-- A rollout's id is derived from what caused it (advisory revision and fleet, request and
-- fleet, host and scan), so planning the same cause twice collides on the primary key.
create table rollouts (
    id                   text        primary key,
    -- One open rollout per key (advisory revision + fleet, request + fleet, new host, host
    -- re-evaluation): two planner instances cannot both open one.
    open_key             text        not null,
    kind                 text        not null,
    fleet                text        not null,
    state                text        not null check (state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted', 'completed', 'cancelled', 'rejected')),
    plan_hash            text        not null,
    advisory_ids         text[]      not null default '{}',
    request_id           text        not null default '',
    severity             text        not null default '',
    strategy             text        not null,
    reboot               text        not null,
    needs_approval       boolean     not null default false,
    approved_by          text        not null default '',
    not_before           timestamptz,
    ignore_windows       boolean     not null default false,
    windows              text[]      not null default '{}',
    bake_ns              bigint      not null default 0,
    max_failures         int         not null,
    max_unavailable      int         not null check (max_unavailable >= 1),
    health_check         text        not null default '',
    configure_unattended boolean     not null default false,
    wave_count           int         not null,
    canary               boolean     not null default false, -- wave 0 is a canary: any failure in it halts
    current_wave         int         not null default 0,
    -- The current wave may start at (bake time after the previous wave).
    wave_not_before      timestamptz,
    started_at           timestamptz,
    reason               text        not null default '',
    created_at           timestamptz not null,
    updated_at           timestamptz not null,
    finished_at          timestamptz
);

create unique index rollouts_one_open on rollouts (open_key)
    where state in ('awaiting_approval', 'scheduled', 'running', 'paused', 'halted');
create index rollouts_due on rollouts (created_at) where state in ('scheduled', 'running');
create index rollouts_fleet_open on rollouts (fleet) where state in ('running', 'paused', 'halted');
create index rollouts_listing on rollouts (created_at desc, id);

create table waves (
    rollout_id   text        not null references rollouts (id),
    idx          int         not null,
    state        text        not null default 'pending' check (state in ('pending', 'running', 'completed')),
    hosts        int         not null,
    started_at   timestamptz,
    completed_at timestamptz,
    primary key (rollout_id, idx)
);

create table rollout_hosts (
    rollout_id     text        not null references rollouts (id),
    host_id        text        not null,
    wave           int         not null,
    state          text        not null default 'pending' check (state in ('pending', 'dispatched', 'succeeded', 'failed', 'skipped')),
    packages       jsonb       not null default '[]',
    advisory_ids   text[]      not null default '{}',
    job_id         text        not null default '',
    attempt        int         not null default 0,
    reason         text        not null default '',
    reboot_pending boolean     not null default false,
    rebooted       boolean     not null default false,
    dispatched_at  timestamptz,
    finished_at    timestamptz,
    primary key (rollout_id, host_id)
);

create index rollout_hosts_wave on rollout_hosts (rollout_id, wave, state);
create index rollout_hosts_job on rollout_hosts (job_id) where job_id <> '';
create index rollout_hosts_host on rollout_hosts (host_id) where state in ('pending', 'dispatched');

-- How long each host was exposed to each advisory.
create table exposures (
    advisory_id    text        not null,
    host_id        text        not null,
    fleet          text        not null,
    severity       text        not null default '',
    exposed_since  timestamptz not null,
    patched_at     timestamptz,
    reboot_pending boolean     not null default false,
    rollout_id     text        not null default '',
    primary key (advisory_id, host_id)
);

create index exposures_host on exposures (host_id);
create index exposures_open on exposures (advisory_id) where patched_at is null or reboot_pending;
