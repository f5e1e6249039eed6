package db_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/executordb"
	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/messaging"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/plannerdb"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, url, schema string) *pgxpool.Pool {
	t.Helper()
	pool, err := db.Connect(testContext(t), url, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// tables lists the tables of schema.
func tables(t *testing.T, pool *pgxpool.Pool, schema string) map[string]bool {
	t.Helper()
	rows, err := pool.Query(testContext(t), "select tablename from pg_tables where schemaname = $1", schema)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

func versions(t *testing.T, pool *pgxpool.Pool) (messaging, service int32) {
	t.Helper()
	ctx := testContext(t)
	if err := pool.QueryRow(ctx, "select version from messaging_schema_version").Scan(&messaging); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "select version from schema_version").Scan(&service); err != nil {
		t.Fatal(err)
	}
	return messaging, service
}

// latest is the number of migration files: the version a fully migrated schema is at.
func latest(t *testing.T, migrations fs.FS) int32 {
	t.Helper()
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	return int32(len(files))
}

func TestMigrateEverySchemaFromEmptyIntoOneDatabase(t *testing.T) {
	ctx := testContext(t)
	url := pgtest.EmptyDatabase(t)
	for schema, migrations := range map[string]fs.FS{
		ingestdb.Schema:    ingestdb.Migrations,
		inventorydb.Schema: inventorydb.Migrations,
		plannerdb.Schema:   plannerdb.Migrations,
		executordb.Schema:  executordb.Migrations,
	} {
		pool := connect(t, url, schema)
		if err := db.Migrate(ctx, pool, schema, migrations); err != nil {
			t.Fatalf("migrate %s: %v", schema, err)
		}
		got := tables(t, pool, schema)
		for _, want := range []string{"outbox", "inbox", "service_info", "messaging_schema_version", "schema_version"} {
			if !got[want] {
				t.Errorf("schema %s has no table %s (has %v)", schema, want, got)
			}
		}
		if m, s := versions(t, pool); m != latest(t, messaging.Migrations) || s != latest(t, migrations) {
			t.Errorf("schema %s: versions messaging %d, service %d; want %d, %d", schema, m, s, latest(t, messaging.Migrations), latest(t, migrations))
		}
		// Unqualified queries reach the pool's own schema.
		if _, err := pool.Exec(ctx, "insert into service_info (key, value) values ('name', $1)", schema); err != nil {
			t.Fatal(err)
		}
	}
	// Each schema got its own tables: one row each, not four in one.
	pool := connect(t, url, ingestdb.Schema)
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from service_info").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("ingest.service_info has %d rows, want 1", n)
	}
}

func TestMigrateTwiceChangesNothing(t *testing.T) {
	ctx := testContext(t)
	pool := connect(t, pgtest.EmptyDatabase(t), plannerdb.Schema)
	for i := range 2 {
		if err := db.Migrate(ctx, pool, plannerdb.Schema, plannerdb.Migrations); err != nil {
			t.Fatalf("migrate, run %d: %v", i+1, err)
		}
		if m, s := versions(t, pool); m != latest(t, messaging.Migrations) || s != latest(t, plannerdb.Migrations) {
			t.Fatalf("run %d: versions messaging %d, service %d; want %d, %d", i+1, m, s, latest(t, messaging.Migrations), latest(t, plannerdb.Migrations))
		}
	}
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := testContext(t)
	url := pgtest.EmptyDatabase(t)
	const instances = 4
	pools := make([]*pgxpool.Pool, instances)
	for i := range pools {
		pools[i] = connect(t, url, executordb.Schema)
	}
	errs := make([]error, instances)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			errs[i] = db.Migrate(ctx, pool, executordb.Schema, executordb.Migrations)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	if m, s := versions(t, pools[0]); m != latest(t, messaging.Migrations) || s != latest(t, executordb.Migrations) {
		t.Errorf("versions messaging %d, service %d; want %d, %d", m, s, latest(t, messaging.Migrations), latest(t, executordb.Migrations))
	}
}

func TestMigrateReportsTheFailingMigration(t *testing.T) {
	ctx := testContext(t)
	pool := connect(t, pgtest.EmptyDatabase(t), "broken")
	bad := fstest.MapFS{
		"001_good.sql": {Data: []byte("create table a (id int);")},
		"002_bad.sql":  {Data: []byte("create table b (id nosuchtype);")},
	}
	err := db.Migrate(ctx, pool, "broken", bad)
	if err == nil || !strings.Contains(err.Error(), "002_bad.sql") {
		t.Fatalf("migrate = %v, want an error naming 002_bad.sql", err)
	}
	// The good migration stays applied; the bad one left nothing behind.
	if _, s := versions(t, pool); s != 1 {
		t.Errorf("service version %d, want 1", s)
	}
}

func TestInTx(t *testing.T) {
	pool := pgtest.New(t, ingestdb.Schema, ingestdb.Migrations)
	ctx := testContext(t)
	if _, err := pool.Exec(ctx, `create table t (
		k int,
		constraint t_k_unique unique (k) deferrable initially deferred)`); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, "select count(*) from t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("commits", func(t *testing.T) {
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "insert into t values (1)")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 1 {
			t.Fatalf("%d rows after commit, want 1", n)
		}
	})

	t.Run("rolls back on error", func(t *testing.T) {
		boom := errors.New("boom")
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "insert into t values (2)"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx = %v, want boom", err)
		}
		if n := count(); n != 1 {
			t.Fatalf("%d rows after rollback, want 1", n)
		}
	})

	t.Run("returns the commit error", func(t *testing.T) {
		// Every statement succeeds; the deferred unique constraint fails at COMMIT.
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "insert into t values (3), (3)")
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" || pgErr.ConstraintName != "t_k_unique" {
			t.Fatalf("InTx = %v, want the unique violation of t_k_unique at commit", err)
		}
		if n := count(); n != 1 {
			t.Fatalf("%d rows after a failed commit, want 1", n)
		}
	})
}
