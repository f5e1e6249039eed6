package db

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/patchfleet/patchfleet/db/messaging"
)

// Version tables, one per migration set, both inside the service's schema, so each set
// counts its own versions and the messaging tables can evolve independently of a service.
const (
	messagingVersionTable = "messaging_schema_version"
	serviceVersionTable   = "schema_version"
)

// Migrate brings schema up to date: it creates the schema if missing, then applies the shared
// messaging migrations (outbox, inbox) and then the service's own migrations.
//
// migrations holds files named NNNN_description.sql (tern's format: numbered from 1, forward
// SQL, optionally "---- create above / drop below ----" and the reverse); either at its root
// or in a "migrations" directory, as the service packages embed them. Each migration runs in
// a transaction with search_path set to schema, so migrations are unqualified. A nil
// migrations applies the messaging migrations only.
//
// We use tern rather than goose: tern is pgx-native (it migrates over a *pgx.Conn, the same
// driver and connection settings as the services, no database/sql shim), takes a PostgreSQL
// advisory lock while migrating, lets us name the version table — one per set per schema —
// and reads migrations from an fs.FS, so they are embedded in each service binary. goose's
// strengths (multi-dialect, Go migrations over database/sql) are not ones we need.
//
// Two instances may migrate at once: a schema-specific advisory lock serialises them, and the
// second finds nothing left to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) error {
	if err := ValidSchema(schema); err != nil {
		return err
	}
	// A dedicated connection whose session default search_path is the schema, whatever the
	// pool's: tern runs RESET ALL after each migration.
	cfg := pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("migrate schema %s: connect: %w", schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if _, err := conn.Exec(ctx, "select pg_advisory_lock(hashtext('patchfleet.migrate.' || $1))", schema); err != nil {
		return fmt.Errorf("migrate schema %s: lock: %w", schema, err)
	}
	// Closing the connection releases the lock too; unlocking explicitly is just tidier.
	defer conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock(hashtext('patchfleet.migrate.' || $1))", schema)

	var exists bool
	if err := conn.QueryRow(ctx, "select exists(select 1 from pg_namespace where nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("migrate schema %s: look up schema: %w", schema, err)
	}
	if !exists {
		// Checked first because CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege
		// on the database, which a production role may not have once the schema exists.
		if _, err := conn.Exec(ctx, "create schema "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("migrate schema %s: create schema: %w", schema, err)
		}
	}

	if err := apply(ctx, conn, schema, messagingVersionTable, messaging.Migrations); err != nil {
		return fmt.Errorf("migrate schema %s: messaging: %w", schema, err)
	}
	if migrations != nil {
		if err := apply(ctx, conn, schema, serviceVersionTable, migrations); err != nil {
			return fmt.Errorf("migrate schema %s: %w", schema, err)
		}
	}
	return nil
}

func apply(ctx context.Context, conn *pgx.Conn, schema, versionTable string, migrations fs.FS) error {
	root, err := migrationsRoot(migrations)
	if err != nil {
		return err
	}
	m, err := migrate.NewMigrator(ctx, conn, pgx.Identifier{schema, versionTable}.Sanitize())
	if err != nil {
		return fmt.Errorf("version table %s: %w", versionTable, err)
	}
	if err := m.LoadMigrations(root); err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		// A failing migration's error already names it (tern's MigrationPgError).
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// migrationsRoot accepts both an FS holding the files and one holding a "migrations"
// directory (how the db/<service>db packages embed them).
func migrationsRoot(fsys fs.FS) (fs.FS, error) {
	if fi, err := fs.Stat(fsys, "migrations"); err == nil && fi.IsDir() {
		sub, err := fs.Sub(fsys, "migrations")
		if err != nil {
			return nil, fmt.Errorf("open migrations directory: %w", err)
		}
		return sub, nil
	}
	return fsys, nil
}
