// Package pgtest gives each test a fresh, migrated PostgreSQL database of its own.
//
// Tests run against the server named by PATCHFLEET_TEST_DATABASE_URL when it is set (any
// database on it; the role must be allowed to create databases), and otherwise against a
// throwaway cluster started from the local PostgreSQL binaries (see db/pglocal) the first
// time a test asks for a database. Tests never skip for lack of PostgreSQL.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
//		...
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/messaging"
	"github.com/patchfleet/patchfleet/db/pglocal"
)

// EnvURL names the variable pointing tests at an existing server instead of a throwaway one.
const EnvURL = "PATCHFLEET_TEST_DATABASE_URL"

var (
	mu        sync.Mutex
	adminURL  string           // a database on the server, for CREATE/DROP DATABASE
	cluster   *pglocal.Cluster // started by us, stopped by Main
	startErr  error
	templates = map[string]string{} // (schema, migrations hash) → template database
)

// Main runs the tests and then stops the cluster, if one was started, and exits with the
// tests' code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
		cluster = nil
	}
	mu.Unlock()
	os.Exit(code)
}

// server returns the admin URL, starting the throwaway cluster on first use.
func server(ctx context.Context) (string, error) {
	if adminURL != "" || startErr != nil {
		return adminURL, startErr
	}
	if u := os.Getenv(EnvURL); u != "" {
		adminURL = u
		return adminURL, nil
	}
	c, err := pglocal.Start(ctx, pglocal.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		startErr = fmt.Errorf("start a throwaway postgresql for tests (or set %s): %w", EnvURL, err)
		return "", startErr
	}
	cluster, adminURL = c, c.URL("postgres")
	return adminURL, nil
}

// URL returns the URL of database name on the test server, starting it if need be.
func URL(t testing.TB, name string) string {
	t.Helper()
	mu.Lock()
	admin, err := server(context.Background())
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// New creates a database for this test, migrated for schema with the shared messaging
// migrations and then migrations (nil: messaging only), and returns a pool on it whose
// search_path is schema. The pool is closed and the database dropped when the test ends.
//
// The first call for a (schema, migrations) pair migrates a template database; every later
// one copies it (CREATE DATABASE … TEMPLATE), which is much faster than migrating again.
func New(t testing.TB, schema string, migrations fs.FS) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name, err := NewDatabase(ctx, t, schema, migrations)
	if err != nil {
		t.Fatal(err)
	}
	u := URL(t, name)
	pool, err := db.Connect(ctx, u, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // runs before the drop registered by NewDatabase
	return pool
}

// NewDatabase is New without the pool: it returns the new database's name. The database
// is dropped when the test ends.
func NewDatabase(ctx context.Context, t testing.TB, schema string, migrations fs.FS) (string, error) {
	t.Helper()
	mu.Lock()
	admin, err := server(ctx)
	var tpl string
	if err == nil {
		tpl, err = template(ctx, admin, schema, migrations)
	}
	mu.Unlock()
	if err != nil {
		return "", err
	}
	return createDatabase(ctx, t, admin, tpl)
}

// EmptyDatabase creates a database with nothing in it (no schema migrated) and returns its
// URL; it is dropped when the test ends. For testing migrations themselves.
func EmptyDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mu.Lock()
	admin, err := server(ctx)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	name, err := createDatabase(ctx, t, admin, "template0")
	if err != nil {
		t.Fatal(err)
	}
	return URL(t, name)
}

func createDatabase(ctx context.Context, t testing.TB, admin, template string) (string, error) {
	name := "pf_test_" + randomHex(8)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create database "+ident(name)+" template "+ident(template)); err != nil {
		return "", fmt.Errorf("create test database %s from %s: %w", name, template, err)
	}
	t.Cleanup(func() { drop(admin, name, t) })
	return name, nil
}

func drop(admin, name string, t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("drop test database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	// FORCE: a connection the test leaked must not keep its database alive.
	if _, err := conn.Exec(ctx, "drop database if exists "+ident(name)+" with (force)"); err != nil {
		t.Errorf("drop test database %s: %v", name, err)
	}
}

// template returns the migrated template database for (schema, migrations), creating it on
// first use. Its name is derived from the migrations' content, so test binaries sharing an
// external server share templates, and a changed migration gets a new one. Called with mu
// held; an advisory lock serialises test binaries.
func template(ctx context.Context, admin, schema string, migrations fs.FS) (string, error) {
	if err := db.ValidSchema(schema); err != nil {
		return "", err
	}
	// The shared messaging migrations are part of every template.
	sum, err := hashFS(messaging.Migrations, migrations)
	if err != nil {
		return "", fmt.Errorf("hash migrations for schema %s: %w", schema, err)
	}
	key := schema + "/" + sum
	if name, ok := templates[key]; ok {
		return name, nil
	}
	name := "pf_tpl_" + schema + "_" + sum[:12]
	if len(name) > 63 {
		name = "pf_tpl_" + sum[:24]
	}

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "select pg_advisory_lock(hashtext('patchfleet.pgtest.template'))"); err != nil {
		return "", fmt.Errorf("lock test templates: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock(hashtext('patchfleet.pgtest.template'))")

	var exists bool
	if err := conn.QueryRow(ctx, "select exists(select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up template %s: %w", name, err)
	}
	if !exists {
		// Built under a temporary name and renamed when complete, so a template that exists
		// is a migrated one even if an earlier run died half way.
		tmp := name + "_tmp"
		if _, err := conn.Exec(ctx, "drop database if exists "+ident(tmp)+" with (force)"); err != nil {
			return "", fmt.Errorf("drop unfinished template %s: %w", tmp, err)
		}
		if _, err := conn.Exec(ctx, "create database "+ident(tmp)); err != nil {
			return "", fmt.Errorf("create template %s: %w", tmp, err)
		}
		if err := migrateDatabase(ctx, admin, tmp, schema, migrations); err != nil {
			return "", fmt.Errorf("template %s: %w", name, err)
		}
		if _, err := conn.Exec(ctx, "alter database "+ident(tmp)+" rename to "+ident(name)); err != nil {
			return "", fmt.Errorf("rename template %s: %w", tmp, err)
		}
	}
	templates[key] = name
	return name, nil
}

func migrateDatabase(ctx context.Context, admin, name, schema string, migrations fs.FS) error {
	u, err := withDatabase(admin, name)
	if err != nil {
		return err
	}
	pool, err := db.Connect(ctx, u, schema)
	if err != nil {
		return err
	}
	defer pool.Close() // closed before the template is copied: CREATE DATABASE needs it idle
	return db.Migrate(ctx, pool, schema, migrations)
}

// withDatabase returns admin with its database replaced by name; admin is a URL or a
// keyword/value connection string.
func withDatabase(admin, name string) (string, error) {
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvURL, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return admin + " dbname=" + name, nil // the last setting wins
}

func hashFS(fss ...fs.FS) (string, error) {
	h := sha256.New()
	for i, fsys := range fss {
		if fsys == nil {
			continue
		}
		fmt.Fprintf(h, "fs%d;", i)
		err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%d:%s;%d:", len(path), path, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }
