package executor

import (
	"strings"
	"testing"
)

func TestWithPoolMaxConns(t *testing.T) {
	for _, tc := range []struct {
		dsn      string
		n        int
		override bool
		want     string
	}{
		{"postgres://u:p@db:5432/pf?sslmode=verify-full", 20, false, "postgres://u:p@db:5432/pf?pool_max_conns=20&sslmode=verify-full"},
		{"postgresql://db/pf", 8, false, "postgresql://db/pf?pool_max_conns=8"},
		{"postgres://db/pf?pool_max_conns=50", 20, false, "postgres://db/pf?pool_max_conns=50"},
		{"postgres://db/pf?pool_max_conns=50", 20, true, "postgres://db/pf?pool_max_conns=20"},
		{"host=db dbname=pf", 12, false, "host=db dbname=pf pool_max_conns=12"},
		{"host=db pool_max_conns=3", 12, false, "host=db pool_max_conns=3"},
		{"host=db pool_max_conns=3", 12, true, "host=db pool_max_conns=3 pool_max_conns=12"},
		{"", 12, true, ""},
		{"postgres://db/pf", 0, true, "postgres://db/pf"},
	} {
		got, err := withPoolMaxConns(tc.dsn, tc.n, tc.override)
		if err != nil || got != tc.want {
			t.Errorf("withPoolMaxConns(%q, %d, %t) = %q, %v; want %q", tc.dsn, tc.n, tc.override, got, err, tc.want)
		}
	}
	if _, err := withPoolMaxConns("postgres://u:secret@db:bad/pf", 5, false); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad URL: %v (must fail without quoting the URL)", err)
	}
}

func TestDefaultDBMaxConns(t *testing.T) {
	for _, tc := range []struct{ concurrency, want int }{{1, 8}, {16, 8}, {64, 20}, {100, 29}, {1000, 32}} {
		if got := DefaultDBMaxConns(tc.concurrency); got != tc.want {
			t.Errorf("DefaultDBMaxConns(%d) = %d, want %d", tc.concurrency, got, tc.want)
		}
	}
	c := Config{Concurrency: 64}
	c.defaults()
	if c.DBMaxConns != 20 || c.dbMaxConnsSet {
		t.Errorf("defaults: DBMaxConns %d set %t, want 20 defaulted", c.DBMaxConns, c.dbMaxConnsSet)
	}
	c = Config{DBMaxConns: 2000}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "PATCHFLEET_EXECUTOR_DB_MAX_CONNS") {
		t.Errorf("Validate: %v, want PATCHFLEET_EXECUTOR_DB_MAX_CONNS named", err)
	}
}
