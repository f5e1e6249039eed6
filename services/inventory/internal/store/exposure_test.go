package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/query"
)

// fooHost is a Debian 12 host with libfoo1 1.0-1 (built from foo) and Rails 7.0.4; fooFix is
// the entry that exposes it.
var (
	fooHost = hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"},
		Packages:   []hostfacts.Package{{Name: "libfoo1", Version: "1.0-1", Arch: "amd64", SourceName: "foo", SourceVersion: "1.0-1", Status: "ii", Installed: true}},
		Components: []hostfacts.Component{{Name: "rails", Version: "7.0.4", Present: true}}}
	fooFix = Entry{Affected: events.Affected{Ecosystem: events.EcosystemDebian, Release: "12", Package: "foo", FixedVersion: "1.0-2"}}
)

// observe stores a scan of host id that found facts.
func observe(t *testing.T, st *Store, id string, facts hostfacts.Facts) {
	t.Helper()
	if _, err := st.Observe(context.Background(), Observation{HostID: id, ScanID: events.NewID(), At: time.Now(), Facts: facts}); err != nil {
		t.Fatal(err)
	}
}

// A grouped page ends when its answer would pass about maxGroupedBytes, whatever the limit
// asked for, and the pages still list every exposed host once, in order; with a gem entry
// (grouped from the hosts' answer) too.
func TestGroupedPagesKeepToTheirBudget(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	const hosts, idBytes = 60, 40 << 10 // 19 hosts a page
	// From the 20th host on, libfoo1 1.0-0: another group, and the host the first page has
	// no room for is the first of it.
	older := fooHost
	older.Packages = slices.Clone(fooHost.Packages)
	older.Packages[0].Version, older.Packages[0].SourceVersion = "1.0-0", "1.0-0"
	var want []string
	for i := range hosts {
		id := fmt.Sprintf("h%02d-%s", i, strings.Repeat("x", idBytes))
		register(t, st, id, fmt.Sprintf("h%02d", i))
		facts := fooHost
		if i >= 19 {
			facts = older
		}
		observe(t, st, id, facts)
		want = append(want, id)
	}
	rails := Entry{Affected: events.Affected{Ecosystem: events.EcosystemRubyGems, Package: "rails", FixedVersion: "7.0.4.1"}}
	for _, entries := range [][]Entry{{fooFix}, {fooFix, rails}} {
		f := ExposureFilter{Entries: entries, Limit: query.MaxGroupedPage}
		var got []string
		pages := 0
		for {
			groups, next, err := st.ExposureGroups(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			size := 0
			for _, g := range groups {
				if g.Len() == 0 {
					t.Errorf("page %d: a group without hosts: %+v", pages, g.Packages)
				}
				for _, fh := range g.Fleets {
					for _, id := range fh.HostIDs {
						got = append(got, id)
						size += len(id)
					}
				}
			}
			if size > maxGroupedBytes {
				t.Errorf("%d entries, page %d: %d bytes of host ids, over %d", len(entries), pages, size, maxGroupedBytes)
			}
			if f.After = next; next == "" {
				break
			}
		}
		slices.Sort(got) // each page's groups list their hosts by group
		if !slices.Equal(got, want) {
			t.Errorf("%d entries: the pages list %d hosts, want %d, each once", len(entries), len(got), len(want))
		}
		if pages < hosts*idBytes/maxGroupedBytes+1 {
			t.Errorf("%d entries: %d pages, want at least %d", len(entries), pages, hosts*idBytes/maxGroupedBytes+1)
		}
	}
}
