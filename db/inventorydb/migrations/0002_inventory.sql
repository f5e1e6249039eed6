-- The host register, package sets, advisories and what Patchfleet installed.
--
-- Hosts built from one image share most packages, so each distinct installed package set is
-- stored once (keyed by a content hash) and hosts point at their current set: 100,000 hosts
-- with ~1,000 distinct sets hold ~700,000 member rows, not 70 million.

create table package_sets (
    id            bigint      generated always as identity primary key,
    hash          text        not null unique, -- sha256 of the canonical sorted package list
    package_count integer     not null,
    created_at    timestamptz not null default now()
);

create table package_set_members (
    set_id         bigint  not null references package_sets (id) on delete cascade,
    name           text    not null,
    arch           text    not null,
    version        text    not null,
    source_name    text    not null,
    source_version text    not null,
    status         text    not null,
    installed      boolean not null,
    primary key (set_id, name, arch)
);
-- Exposure looks sets up by source package (an index-only scan: the rows it needs are in the
-- index), the hosts filter by binary package.
create index package_set_members_source on package_set_members (source_name)
    include (set_id, name, arch, version, source_version) where installed;
create index package_set_members_name on package_set_members (name);

create table hosts (
    id             text        primary key,
    name           text        not null,
    fleet          text        not null,
    tags           jsonb       not null default '{}',
    address        text        not null,
    port           integer     not null default 22,
    ssh_user       text        not null default '',
    bastion        text        not null default '',
    sudo           boolean     not null default false,
    -- The pinned host key (authorized_keys format); empty until trust on first use pins one.
    host_key       text        not null default '',
    tofu           boolean     not null default false,
    tofu_allowed_by text       not null default '', -- who allowed trust on first use
    tofu_pinned_at timestamptz,                     -- when a first contact pinned host_key
    key_mismatch   boolean     not null default false,
    presented_key  text        not null default '', -- fingerprint offered at the mismatch
    is_new         boolean     not null default false,
    app_path       text        not null default '',
    registered_by  text        not null default '',
    registered_at  timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    retired        boolean     not null default false,
    retired_at     timestamptz,
    retired_reason text        not null default '',

    -- The latest observation.
    os_id           text        not null default '',
    os_version_id   text        not null default '',
    os_codename     text        not null default '',
    kernel          text        not null default '',
    boot_id         text        not null default '',
    package_set_id  bigint      references package_sets (id),
    package_count   integer     not null default 0,
    held            text[]      not null default '{}',
    reboot_required boolean     not null default false,
    reboot_packages text[]      not null default '{}',
    reboot_since    timestamptz,
    components      jsonb       not null default '[]',
    last_scan       timestamptz,
    last_scan_id    text        not null default '',
    last_scan_error text        not null default '',
    problems        integer     not null default 0,

    -- The scheduler claims hosts whose next_scan is due (skip locked, so instances share).
    next_scan       timestamptz not null default now()
);
create index hosts_fleet on hosts (fleet, id);
create index hosts_tags on hosts using gin (tags jsonb_path_ops);
create index hosts_package_set on hosts (package_set_id);
create index hosts_next_scan on hosts (next_scan) where not retired and not key_mismatch;

-- Versions Patchfleet installed (from UpgradeCompleted), so a scan tells them from drift.
-- A row is dropped once a scan has seen it.
create table installs (
    host_id      text        not null,
    name         text        not null,
    version      text        not null,
    job_id       text        not null,
    installed_at timestamptz not null,
    primary key (host_id, name, version)
);

-- The latest revision of every advisory seen, with what it affects.
create table advisories (
    id         text        primary key,
    revision   integer     not null,
    aliases    text[]      not null default '{}',
    affected   jsonb       not null, -- []events.Affected
    withdrawn  boolean     not null default false,
    updated_at timestamptz not null default now()
);
create index advisories_aliases on advisories using gin (aliases);
