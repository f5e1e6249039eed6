-- Patchfleet on a shared PostgreSQL: one login role per service, each owning its schema, no
-- grants across schemas, and a read-only reporting role.
--
-- Run once as a superuser (or a role with CREATEROLE that owns the database):
--   psql -v ON_ERROR_STOP=1 -d postgres -f roles.sql
-- then set each role's password (never in this file):
--   psql -d patchfleet -c "\password patchfleet_planner"
-- Each service's PATCHFLEET_DATABASE_URL_FILE holds
--   postgres://patchfleet_planner:<password>@db.patchfleet.internal:5432/patchfleet?sslmode=verify-full&sslrootcert=/etc/patchfleet/tls/pg-ca.pem
-- Re-running it is harmless.

\set ON_ERROR_STOP on

SELECT 'CREATE DATABASE patchfleet' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'patchfleet')\gexec
\connect patchfleet

-- Nobody but the roles below may connect, and nobody creates objects in public.
REVOKE ALL ON DATABASE patchfleet FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
    svc text[];
BEGIN
    -- {role, schema}: the schema names are fixed by the services (db/db.go).
    FOREACH svc SLICE 1 IN ARRAY ARRAY[
        ['patchfleet_ingest', 'ingest'],
        ['patchfleet_inventory', 'inventory'],
        ['patchfleet_planner', 'planner'],
        ['patchfleet_executor', 'executor']]
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = svc[1]) THEN
            -- LOGIN only: no superuser, no CREATEDB, no CREATEROLE, no replication.
            EXECUTE format('CREATE ROLE %I LOGIN NOINHERIT CONNECTION LIMIT 50', svc[1]);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE patchfleet TO %I', svc[1]);
        -- The role owns its schema: its migrations create and alter the tables in it (the
        -- services create the schema only when it is missing, which needs CREATE on the
        -- database; creating it here means they never need that).
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', svc[2], svc[1]);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', svc[2], svc[1]);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc[2]);
        -- Unqualified names resolve in its own schema only.
        EXECUTE format('ALTER ROLE %I IN DATABASE patchfleet SET search_path = %I', svc[1], svc[2]);
        EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', svc[1], '5min');
        EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L', svc[1], '1min');
    END LOOP;

    -- Reporting: reads every service schema, changes nothing.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'patchfleet_reporting') THEN
        CREATE ROLE patchfleet_reporting LOGIN NOINHERIT CONNECTION LIMIT 10;
    END IF;
    ALTER ROLE patchfleet_reporting SET default_transaction_read_only = on;
    ALTER ROLE patchfleet_reporting SET statement_timeout = '2min';
    GRANT CONNECT ON DATABASE patchfleet TO patchfleet_reporting;
    FOREACH svc SLICE 1 IN ARRAY ARRAY[
        ['patchfleet_ingest', 'ingest'],
        ['patchfleet_inventory', 'inventory'],
        ['patchfleet_planner', 'planner'],
        ['patchfleet_executor', 'executor']]
    LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO patchfleet_reporting', svc[2]);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO patchfleet_reporting', svc[2]);
        -- Tables the service's future migrations create are readable too.
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO patchfleet_reporting', svc[1], svc[2]);
    END LOOP;
END
$$;
