package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostfacts"
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

// Hosts changing sets, leaving and joining while exposure answers are asked for: afterwards
// the copy brought up to date answer by answer is the copy read from scratch.
func TestHostCopyUnderConcurrentChanges(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	fixed := fooHost
	fixed.Packages = slices.Clone(fooHost.Packages)
	fixed.Packages[0].Version, fixed.Packages[0].SourceVersion = "1.0-2", "1.0-2"
	other := fooHost
	other.Packages = append(slices.Clone(fooHost.Packages), hostfacts.Package{Name: "bar", Version: "1", Arch: "amd64",
		SourceName: "bar", SourceVersion: "1", Status: "ii", Installed: true})
	variants := []hostfacts.Facts{fooHost, fixed, other}

	exposed := func(st *Store) []string {
		t.Helper()
		hosts, _, err := st.Exposure(ctx, ExposureFilter{Limit: 1000, Entries: []Entry{fooFix}})
		if err != nil {
			t.Error(err)
			return nil
		}
		var ids []string
		for _, h := range hosts {
			ids = append(ids, h.HostID+"/"+h.Name)
		}
		return ids
	}
	const writers, hostsEach, steps = 4, 10, 25
	for w := range writers {
		for i := range hostsEach {
			id := fmt.Sprintf("w%d-h%02d", w, i)
			register(t, st, id, id)
			observe(t, st, id, fooHost)
		}
	}
	exposed(st) // the copy is read

	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
					exposed(st)
				}
			}
		})
	}
	var writing sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for s := range steps {
				id := fmt.Sprintf("w%d-h%02d", w, rnd.IntN(hostsEach+2)) // some join late
				switch rnd.IntN(5) {
				case 0:
					if err := st.Decommission(ctx, id, "test"); err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
					}
				case 1:
					if _, err := st.Register(ctx, events.HostRegistered{HostID: id, Name: fmt.Sprintf("%s-%d", id, s), Fleet: "f",
						SSH: events.SSHTarget{Address: "10.0.0.1", TOFU: true}}, "test"); err != nil {
						t.Error(err)
					}
				default:
					if _, err := st.Observe(ctx, Observation{HostID: id, ScanID: events.NewID(), At: time.Now(),
						Facts: variants[rnd.IntN(len(variants))]}); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrRetired) {
						t.Error(err)
					}
				}
			}
		})
	}
	writing.Wait()
	close(done)
	wg.Wait()

	got, want := exposed(st), exposed(New(pool))
	if !slices.Equal(got, want) {
		t.Errorf("the copy kept up to date answers\n%v\nread from scratch\n%v", got, want)
	}
	if len(want) == 0 {
		t.Error("no host is exposed at the end: the test changed too little")
	}
}
