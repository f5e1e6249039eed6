// Package db connects Patchfleet services to PostgreSQL and migrates their schemas.
//
// Every service owns one schema (ingest, inventory, planner, executor). Connect pins the
// pool's search_path to it, so a service's queries are unqualified and cannot reach another
// service's tables by accident. Every schema also gets the shared messaging tables (the
// transactional outbox and the inbox), migrated before the service's own tables.
package db

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The service schemas.
const (
	SchemaIngest    = "ingest"
	SchemaInventory = "inventory"
	SchemaPlanner   = "planner"
	SchemaExecutor  = "executor"
)

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema reports whether name is usable as a schema name without quoting.
func ValidSchema(name string) error {
	if !schemaName.MatchString(name) {
		return fmt.Errorf("schema name %q: want lowercase letters, digits and underscores", name)
	}
	return nil
}

// Connect opens a pool on url whose connections have search_path = schema alone (not
// public), so unqualified names are the service's own tables. The schema need not exist
// yet: Migrate creates it.
func Connect(ctx context.Context, url, schema string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url for schema %s: %w", schema, err)
	}
	return ConnectConfig(ctx, cfg, schema)
}

// ConnectConfig is Connect for an already parsed configuration.
func ConnectConfig(ctx context.Context, cfg *pgxpool.Config, schema string) (*pgxpool.Pool, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, err
	}
	// A startup parameter rather than SET after connect: it is the session default, so it
	// survives RESET ALL and DISCARD ALL (which tern runs between migrations).
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		registerTextArrays(conn.TypeMap())
		if after != nil {
			return after(ctx, conn)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database %s (schema %s): %w", cfg.ConnConfig.Database, schema, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database %s (schema %s): %w", cfg.ConnConfig.Database, schema, err)
	}
	return pool, nil
}

// Beginner is what InTx needs: a pool, a connection or an outer transaction (which then
// gets a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx runs fn in a transaction and commits it when fn returns nil. It returns fn's error
// (after rolling back) or the commit's: a commit can fail on its own — a deferred
// constraint, a serialization failure, a lost connection — and then nothing was stored.
func InTx(ctx context.Context, db Beginner, fn func(pgx.Tx) error) (err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(context.WithoutCancel(ctx)); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			return errors.Join(err, fmt.Errorf("roll back transaction: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}
