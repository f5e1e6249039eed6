package pgtest

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

var migrations = fstest.MapFS{
	"migrations/0001_things.sql": {Data: []byte("create table things (name text primary key);")},
}

func TestEachTestGetsItsOwnMigratedDatabase(t *testing.T) {
	ctx := context.Background()
	a := New(t, "pgtest", migrations)
	b := New(t, "pgtest", migrations)
	if _, err := a.Exec(ctx, "insert into things values ('only in a')"); err != nil {
		t.Fatal(err) // unqualified: search_path is the schema
	}
	var n int
	if err := b.QueryRow(ctx, "select count(*) from things").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("b sees %d rows written to a", n)
	}
	for _, pool := range []interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}{a, b} {
		var schema string
		if err := pool.QueryRow(ctx, "select current_schema()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		if schema != "pgtest" {
			t.Fatalf("current_schema() = %s, want pgtest", schema)
		}
		if err := pool.QueryRow(ctx, "select count(*) from outbox").Scan(&n); err != nil {
			t.Fatalf("messaging tables missing: %v", err)
		}
	}
}

func TestDatabaseIsDroppedAfterTheTest(t *testing.T) {
	var name string
	t.Run("uses a database", func(t *testing.T) {
		var err error
		name, err = NewDatabase(context.Background(), t, "pgtest", migrations)
		if err != nil {
			t.Fatal(err)
		}
	})
	conn, err := pgx.Connect(context.Background(), URL(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(context.Background(), "select exists(select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test", name)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ admin, want string }{
		{"postgres://u:p@h:5432/postgres?sslmode=disable", "postgres://u:p@h:5432/pf_x?sslmode=disable"},
		{"postgresql://u@/postgres?host=/run/pg", "postgresql://u@/pf_x?host=/run/pg"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=pf_x"},
	} {
		got, err := withDatabase(tc.admin, "pf_x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.admin, got, err, tc.want)
		}
	}
	// The keyword/value form really connects to the last dbname.
	cfg, err := pgx.ParseConfig("host=h user=u dbname=postgres dbname=pf_x")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database != "pf_x" {
		t.Fatalf("dbname = %s, want pf_x", cfg.Database)
	}
}
