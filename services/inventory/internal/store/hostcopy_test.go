package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/pgtest"
)

// Exposure reads the hosts from a copy brought up to date by the hosts changed since it last
// read. A change that commits after a later one has already been read is still applied, a
// rescan that finds the same packages is no change, and a host joining or leaving is.
func TestHostCopyMissesNoLateCommit(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	exposed := func() string {
		t.Helper()
		hosts, _, err := st.Exposure(ctx, ExposureFilter{Limit: 100, Entries: []Entry{fooFix}})
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, h := range hosts {
			out += fmt.Sprintf("%s/%s ", h.HostID, h.Fleet)
		}
		return out
	}
	changed := func(id string) (xid int64) {
		t.Helper()
		if err := pool.QueryRow(ctx, "select changed_xid from hosts where id = $1", id).Scan(&xid); err != nil {
			t.Fatal(err)
		}
		return xid
	}
	for _, id := range []string{"h0", "h1", "h2"} {
		register(t, st, id, id)
		observe(t, st, id, fooHost)
	}
	if got, want := exposed(), "h0/f h1/f h2/f "; got != want {
		t.Fatalf("exposed %q, want %q", got, want)
	}

	before := changed("h2")
	observe(t, st, "h2", fooHost)
	if after := changed("h2"); after != before {
		t.Errorf("a rescan with the same packages changed the host (changed_xid %d → %d)", before, after)
	}

	// h0 is retired by a transaction that started first and commits last.
	slow, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)
	if _, err := slow.Exec(ctx, "update hosts set retired = true where id = 'h0'"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "update hosts set fleet = 'g' where id = 'h1'"); err != nil {
		t.Fatal(err)
	}
	if got, want := exposed(), "h0/f h1/g h2/f "; got != want {
		t.Fatalf("with the retirement under way: exposed %q, want %q", got, want)
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	register(t, st, "h10", "h10")
	observe(t, st, "h10", fooHost)
	if got, want := exposed(), "h1/g h10/f h2/f "; got != want {
		t.Fatalf("after the retirement committed and h10 joined: exposed %q, want %q", got, want)
	}
}
