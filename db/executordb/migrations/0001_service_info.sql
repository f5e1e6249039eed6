-- Facts about the schema itself (key/value), so the executor schema has a table of its own from the
-- start. The service's real tables come in later migrations.
create table service_info (
    key        text        primary key,
    value      text        not null,
    updated_at timestamptz not null default now()
);
