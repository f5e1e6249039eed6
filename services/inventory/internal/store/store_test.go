package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/query"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// register registers host id named name in fleet f, reached by trust on first use.
func register(t *testing.T, st *Store, id, name string) {
	t.Helper()
	if _, err := st.Register(context.Background(), events.HostRegistered{HostID: id, Name: name, Fleet: "f",
		SSH: events.SSHTarget{Address: "10.0.0.1", TOFU: true}}, "test"); err != nil {
		t.Fatal(err)
	}
}

// Hosts built from one image report the same new package set at the same moment: every
// observation commits, and the set is stored once.
func TestConcurrentObservationsShareOneSet(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	const n = 8
	for i := range n {
		register(t, st, fmt.Sprintf("h%d", i), "h")
	}
	var pkgs []hostfacts.Package
	for i := range 300 {
		v := fmt.Sprintf("1.%d-1", i)
		pkgs = append(pkgs, hostfacts.Package{Name: fmt.Sprintf("pkg%03d", i), Version: v, Arch: "amd64",
			SourceName: fmt.Sprintf("src%03d", i/3), SourceVersion: v, Status: "ii", Installed: true})
	}
	facts := hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"}, Packages: pkgs}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := st.Observe(ctx, Observation{HostID: fmt.Sprintf("h%d", i), ScanID: events.NewID(), At: time.Now(), Facts: facts})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var sets, members int
	if err := pool.QueryRow(ctx, "select count(*), (select count(*) from package_set_members) from package_sets").Scan(&sets, &members); err != nil {
		t.Fatal(err)
	}
	if sets != 1 || members != 300 {
		t.Errorf("%d sets with %d members, want 1 with 300", sets, members)
	}
	var outbox int
	if err := pool.QueryRow(ctx, "select count(*) from outbox").Scan(&outbox); err != nil {
		t.Fatal(err)
	}
	if outbox != n {
		t.Errorf("%d events in the outbox, want %d HostInventoryReported", outbox, n)
	}
}

// An observation for an unknown host stores nothing.
func TestObserveUnknownHost(t *testing.T) {
	st := New(pgtest.New(t, inventorydb.Schema, inventorydb.Migrations))
	_, err := st.Observe(context.Background(), Observation{HostID: "nope", ScanID: "s", At: time.Now(),
		Facts: hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian"}}})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v, want not found", err)
	}
}

// A host's package list comes from the cache once its set has been read, as a copy; after a
// scan changes the host's set, the new set's list. Either answer names the set the scan
// reported, with or without the packages.
func TestHostPackagesAcrossSets(t *testing.T) {
	st := New(pgtest.New(t, inventorydb.Schema, inventorydb.Migrations))
	ctx := context.Background()
	register(t, st, "h", "h")
	observe := func(version string) string {
		t.Helper()
		facts := hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"}, Packages: []hostfacts.Package{
			{Name: "libssl3", Version: version, Arch: "amd64", SourceName: "openssl", SourceVersion: version, Status: "ii", Installed: true},
			{Name: "zlib1g", Version: "1.2", Arch: "amd64", SourceName: "zlib", SourceVersion: "1.2", Status: "ii", Installed: true}}}
		r, err := st.Observe(ctx, Observation{HostID: "h", ScanID: events.NewID(), At: time.Now(), Facts: facts})
		if err != nil {
			t.Fatal(err)
		}
		return r.PackageSet
	}
	libssl := func(set string) string {
		t.Helper()
		if d, err := st.Host(ctx, "h", false); err != nil || d.PackageSet != set || d.Packages != nil {
			t.Fatalf("host without packages: set %s (want %s), %d packages, %v", d.PackageSet, set, len(d.Packages), err)
		}
		d, err := st.Host(ctx, "h", true)
		if err != nil {
			t.Fatal(err)
		}
		if d.PackageSet != set || len(d.Packages) != 2 || d.Packages[0].Name != "libssl3" {
			t.Fatalf("set %s (want %s), packages %+v", d.PackageSet, set, d.Packages)
		}
		v := d.Packages[0].Version
		d.Packages[0].Version = "changed by the caller"
		return v
	}
	set := observe("3.0.1")
	for range 2 {
		if v := libssl(set); v != "3.0.1" {
			t.Fatalf("libssl3 %s, want 3.0.1", v)
		}
	}
	upgraded := observe("3.0.2") // reads the previous set's list for its changes
	if upgraded == set {
		t.Fatal("the upgrade reported the same package set")
	}
	if v := libssl(upgraded); v != "3.0.2" {
		t.Fatalf("libssl3 %s after the upgrade, want 3.0.2", v)
	}
}

// A host scanned again is compared with its set's cached list: every field of every package
// counts, and a list in another order is still the same set.
func TestRescanIsComparedWithTheHostsSet(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	register(t, st, "h", "h")
	base := []hostfacts.Package{
		{Name: "libssl3", Version: "3.0.1", Arch: "amd64", SourceName: "openssl", SourceVersion: "3.0.1", Status: "ii", Installed: true},
		{Name: "zlib1g", Version: "1.2", Arch: "amd64", SourceName: "zlib", SourceVersion: "1.2", Status: "ii", Installed: true}}
	observe := func(pkgs []hostfacts.Package) events.HostInventoryReported {
		t.Helper()
		r, err := st.Observe(ctx, Observation{HostID: "h", ScanID: events.NewID(), At: time.Now(),
			Facts: hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"}, Packages: pkgs}})
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := pool.QueryRow(ctx, "select s.hash from hosts h join package_sets s on s.id = h.package_set_id where h.id = 'h'").Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if want := SetHash(Packages(hostfacts.Facts{Packages: pkgs})); r.PackageSet != want || stored != want || r.PackageCount != len(pkgs) {
			t.Fatalf("reported set %s of %d packages, stored %s; want %s of %d", r.PackageSet, r.PackageCount, stored, want, len(pkgs))
		}
		return r
	}
	set := observe(base).PackageSet
	if r := observe(base); r.PackageSet != set || len(r.Changes) != 0 {
		t.Fatalf("same packages: set %s, changes %v; want %s, none", r.PackageSet, r.Changes, set)
	}
	change := map[string]func(p *hostfacts.Package){
		"version":        func(p *hostfacts.Package) { p.Version = "3.0.2" },
		"architecture":   func(p *hostfacts.Package) { p.Arch = "i386" },
		"source name":    func(p *hostfacts.Package) { p.SourceName = "openssl3" },
		"source version": func(p *hostfacts.Package) { p.SourceVersion = "3.0.2" },
		"status":         func(p *hostfacts.Package) { p.Status = "hi" },
	}
	for name, f := range change {
		pkgs := slices.Clone(base)
		f(&pkgs[0])
		if r := observe(pkgs); r.PackageSet == set {
			t.Errorf("%s changed: the host kept its set", name)
		}
		observe(base) // and back
	}
	if r := observe([]hostfacts.Package{base[1], base[0]}); r.PackageSet != set || len(r.Changes) != 0 {
		t.Errorf("same packages in another order: set %s, changes %v; want %s, none", r.PackageSet, r.Changes, set)
	}
	if r := observe(base[:1]); r.PackageSet == set || len(r.Changes) != 1 {
		t.Errorf("a package removed: set %s, changes %v", r.PackageSet, r.Changes)
	}
}

func TestListCacheIsBounded(t *testing.T) {
	var c listCache
	for id := range int64(maxCachedLists + 10) {
		c.put(id, fmt.Sprint(id), []query.Package{{Name: fmt.Sprint(id)}})
	}
	if n := len(c.lists); n != maxCachedLists {
		t.Fatalf("%d lists cached, want %d", n, maxCachedLists)
	}
	if _, _, ok := c.get(0); ok {
		t.Error("the least recently used list is still cached")
	}
	if h, ps, ok := c.get(maxCachedLists + 9); !ok || h != fmt.Sprint(maxCachedLists+9) || ps[0].Name != h {
		t.Errorf("latest list: %s %v, %v", h, ps, ok)
	}
}

// The set cache shares one list among the sets that hold the same binaries of a source, when
// it is filled and when it learns new sets; requests filling it at once add each package once.
func TestSetCacheSharesAlikeLists(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	q := inventorydb.New(pool)
	// Sets 0, 1 and 3 hold libfoo1 and foo-bin 1.0-1 (built from foo) and differ elsewhere;
	// set 2 holds them at 1.0-2.
	observe := func(i int, fooVersion string) int64 {
		t.Helper()
		id := fmt.Sprintf("h%d", i)
		register(t, st, id, id)
		var pkgs []hostfacts.Package
		for _, name := range []string{"libfoo1", "foo-bin"} {
			pkgs = append(pkgs, hostfacts.Package{Name: name, Version: fooVersion, Arch: "amd64",
				SourceName: "foo", SourceVersion: fooVersion, Status: "ii", Installed: true})
		}
		pkgs = append(pkgs, hostfacts.Package{Name: "other", Version: fmt.Sprintf("%d", i+1), Arch: "amd64",
			SourceName: "other", SourceVersion: fmt.Sprintf("%d", i+1), Status: "ii", Installed: true})
		facts := hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"}, Packages: pkgs}
		if _, err := st.Observe(ctx, Observation{HostID: id, ScanID: events.NewID(), At: time.Now(), Facts: facts}); err != nil {
			t.Fatal(err)
		}
		h, err := q.GetHost(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return h.PackageSetID.Int64
	}
	sets := []int64{observe(0, "1.0-1"), observe(1, "1.0-1"), observe(2, "1.0-2")}

	check := func(c *setCache, sets []int64) map[int64][]query.Package {
		t.Helper()
		got, err := c.members(ctx, q, []string{"foo"}, sets)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range sets {
			if ps := got["foo"][id]; len(ps) != 2 || ps[0].SourceName != "foo" {
				t.Fatalf("set %d: %+v, want its 2 binaries of foo", id, ps)
			}
		}
		return got["foo"]
	}
	var c setCache
	got := check(&c, sets)
	if &got[sets[0]][0] != &got[sets[1]][0] || &got[sets[0]][0] == &got[sets[2]][0] {
		t.Errorf("alike sets do not share one list, or unlike sets do: %p %p %p", got[sets[0]], got[sets[1]], got[sets[2]])
	}
	if got[sets[2]][0].Version != "1.0-2" {
		t.Errorf("set 2 lists %+v", got[sets[2]])
	}
	sets = append(sets, observe(3, "1.0-1")) // learnt after the cache was filled
	if got = check(&c, sets); &got[sets[3]][0] != &got[sets[0]][0] {
		t.Errorf("a set learnt later does not share the list of its alike sets")
	}

	var fresh setCache
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { check(&fresh, sets) })
	}
	wg.Wait()
}

// A claimed scan's observation sets the next scan, unless a scan was asked for while it
// ran: that request stands.
func TestObservationOfAClaimedScanSchedulesTheNext(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	register(t, st, "h", "h")
	nextScan := func() time.Time {
		t.Helper()
		var at time.Time
		if err := pool.QueryRow(ctx, "select next_scan from hosts where id = 'h'").Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	claim := func() time.Time {
		t.Helper()
		if _, err := st.ScanNow(ctx, []string{"h"}, ""); err != nil {
			t.Fatal(err)
		}
		ids, until, err := st.Claim(ctx, 10, time.Minute)
		if err != nil || len(ids) != 1 {
			t.Fatalf("claim: %v %v", ids, err)
		}
		return until
	}
	observe := func(next Next) {
		t.Helper()
		facts := hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"}}
		if _, err := st.Observe(ctx, Observation{HostID: "h", ScanID: events.NewID(), At: time.Now(), Facts: facts, Next: &next}); err != nil {
			t.Fatal(err)
		}
	}

	later := time.Now().Add(time.Hour).Truncate(time.Second)
	observe(Next{ClaimedUntil: claim(), At: later})
	if got := nextScan(); !got.Equal(later) {
		t.Errorf("next scan %s, want %s", got, later)
	}

	until := claim()
	if _, err := st.ScanNow(ctx, []string{"h"}, ""); err != nil { // asked for while the scan runs
		t.Fatal(err)
	}
	asked := nextScan()
	observe(Next{ClaimedUntil: until, At: later})
	if got := nextScan(); !got.Equal(asked) {
		t.Errorf("next scan %s after a scan asked for meanwhile, want it kept at %s", got, asked)
	}
}

// A claim hands the scanner the host as stored; a key mismatch found with a key the host has
// since been re-pinned away from marks nothing: the next scan uses the new key.
func TestKeyMismatchOfARePinnedHostIsDropped(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	register := func(key string) {
		t.Helper()
		if _, err := st.Register(ctx, events.HostRegistered{HostID: "h", Name: "web-1", Fleet: "f",
			SSH: events.SSHTarget{Address: "10.0.0.1", Port: 2222, User: "patch", HostKey: key}}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	const keyA, keyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"
	register(keyA)
	if _, err := st.ScanNow(ctx, []string{"h"}, ""); err != nil {
		t.Fatal(err)
	}
	claimed, _, err := st.Claim(ctx, 10, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	c := claimed[0]
	if c.ID != "h" || c.Name != "web-1" || c.SSH.Address != "10.0.0.1" || c.SSH.Port != 2222 || c.SSH.User != "patch" || c.SSH.HostKey != keyA {
		t.Fatalf("claimed %+v", c)
	}
	state := func() (mismatch bool, announced int) {
		t.Helper()
		if err := pool.QueryRow(ctx, "select key_mismatch from hosts where id = 'h'").Scan(&mismatch); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, "select count(*) from outbox where subject like '%HostKeyMismatch%'").Scan(&announced); err != nil {
			t.Fatal(err)
		}
		return mismatch, announced
	}

	register(keyB) // re-pinned while the scan with key A ran
	if err := st.KeyMismatch(ctx, c, "SHA256:a", "SHA256:b", "host key mismatch"); err != nil {
		t.Fatal(err)
	}
	if m, n := state(); m || n != 0 {
		t.Fatalf("after a mismatch with the old pin: key_mismatch=%v, %d announced", m, n)
	}
	c.SSH.HostKey = keyB
	if err := st.KeyMismatch(ctx, c, "SHA256:b", "SHA256:c", "host key mismatch"); err != nil {
		t.Fatal(err)
	}
	if m, n := state(); !m || n != 1 {
		t.Fatalf("after a mismatch with the current pin: key_mismatch=%v, %d announced", m, n)
	}
}

// A host is found by id, else by the name of a host in service; an id wins over another
// host's name.
func TestHostByIDOrName(t *testing.T) {
	st := New(pgtest.New(t, inventorydb.Schema, inventorydb.Migrations))
	ctx := context.Background()
	for _, h := range [][2]string{{"h1", "web-1"}, {"web-1", "other"}, {"h0", "db-1"}, {"h2", "db-1"}} {
		register(t, st, h[0], h[1])
	}
	if err := st.Decommission(ctx, "h0", "replaced"); err != nil {
		t.Fatal(err)
	}
	for ask, want := range map[string]string{"h1": "h1", "web-1": "web-1", "other": "web-1", "db-1": "h2"} {
		h, err := st.Host(ctx, ask, false)
		if err != nil || h.ID != want {
			t.Errorf("host %q: %q, %v; want %q", ask, h.ID, err, want)
		}
	}
	if _, err := st.Host(ctx, "nope", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown host: %v, want ErrNotFound", err)
	}
}

// An observation of a host decommissioned meanwhile (a scan under way) is dropped.
func TestObservationOfADecommissionedHostIsRefused(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	register(t, st, "h", "h")
	if err := st.Decommission(ctx, "h", "replaced"); err != nil {
		t.Fatal(err)
	}
	facts := hostfacts.Facts{OS: hostfacts.OSRelease{ID: "debian", VersionID: "12"}}
	_, err := st.Observe(ctx, Observation{HostID: "h", ScanID: events.NewID(), At: time.Now(), Facts: facts})
	if !errors.Is(err, ErrRetired) {
		t.Fatalf("observe a decommissioned host: %v, want ErrRetired", err)
	}
	var scanned int
	if err := pool.QueryRow(ctx, "select count(*) from hosts where last_scan is not null").Scan(&scanned); err != nil || scanned != 0 {
		t.Fatalf("%d hosts scanned (%v), want 0", scanned, err)
	}
}

// Concurrent observations are stored in groups; each gets its own outcome: a refused or
// invalid one fails alone, two of one host are both stored, one after the other.
func TestObservationsAreStoredInGroups(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	const n = 40
	for i := range n {
		register(t, st, fmt.Sprintf("h%02d", i), fmt.Sprintf("h%02d", i))
	}
	if err := st.Decommission(ctx, "h05", "replaced"); err != nil {
		t.Fatal(err)
	}
	type try struct {
		host, os string
		want     error // nil, a sentinel, or errBad
	}
	errBad := errors.New("invalid")
	var tries []try
	for i := range n {
		tries = append(tries, try{fmt.Sprintf("h%02d", i), "debian", nil})
	}
	tries[5].want = ErrRetired
	tries[7] = try{"h07", "", errBad} // HostInventoryReported needs the OS
	tries = append(tries, try{"ghost", "debian", ErrNotFound}, try{"h01", "debian", nil})

	scanIDs := make([]string, len(tries))
	errs := make([]error, len(tries))
	var wg sync.WaitGroup
	for i, tr := range tries {
		scanIDs[i] = events.NewID()
		wg.Go(func() {
			_, errs[i] = st.Observe(ctx, Observation{HostID: tr.host, ScanID: scanIDs[i], At: time.Now(),
				Facts: hostfacts.Facts{OS: hostfacts.OSRelease{ID: tr.os, VersionID: "12"}}})
		})
	}
	wg.Wait()
	stored := map[string][]string{} // host → scan ids stored
	for i, tr := range tries {
		switch {
		case tr.want == nil && errs[i] != nil:
			t.Errorf("%s: %v", tr.host, errs[i])
		case tr.want == errBad && errs[i] == nil, tr.want != nil && tr.want != errBad && !errors.Is(errs[i], tr.want):
			t.Errorf("%s: err %v, want %v", tr.host, errs[i], tr.want)
		case tr.want == nil:
			stored[tr.host] = append(stored[tr.host], scanIDs[i])
		}
	}
	var outboxed int
	if err := pool.QueryRow(ctx, "select count(*) from outbox").Scan(&outboxed); err != nil || outboxed != n-1 {
		t.Errorf("%d events in the outbox (%v), want %d", outboxed, err, n-1)
	}
	rows, err := pool.Query(ctx, "select id, coalesce(last_scan_id, '') from hosts")
	if err != nil {
		t.Fatal(err)
	}
	last, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ ID, Scan string }])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range last {
		if ids := stored[h.ID]; len(ids) == 0 && h.Scan != "" || len(ids) > 0 && !slices.Contains(ids, h.Scan) {
			t.Errorf("host %s: last scan %q, stored %v", h.ID, h.Scan, ids)
		}
	}
}

// The first observation leads; those arriving meanwhile wait and are stored as one group,
// headed by the next leader.
func TestGroupHandsTheLeadOver(t *testing.T) {
	var g group
	closed := func(r *observing) bool {
		select {
		case <-r.turn:
			return true
		default:
			return false
		}
	}
	a := g.join(Observation{HostID: "a"})
	b, c := g.join(Observation{HostID: "b"}), g.join(Observation{HostID: "c"})
	if !a.lead || !closed(a) || closed(b) || closed(c) {
		t.Fatalf("a leads (%v), b and c wait: %v %v %v", a.lead, closed(a), closed(b), closed(c))
	}
	first := g.take()
	if len(first) != 3 || first[0] != a {
		t.Fatalf("first group %d, headed by %v", len(first), first[0].o.HostID)
	}
	d := g.join(Observation{HostID: "d"})
	g.done(first)
	if !closed(b) || !closed(c) || b.lead || c.lead {
		t.Error("b and c not released as stored")
	}
	if !d.lead || !closed(d) {
		t.Fatal("d, waiting, did not get the lead")
	}
	if rs := g.take(); len(rs) != 1 || rs[0] != d {
		t.Fatalf("second group: %d", len(rs))
	}
	g.done([]*observing{d})
	if e := g.join(Observation{HostID: "e"}); !e.lead {
		t.Error("with nobody leading, a new observation does not lead")
	}
}

// Scans asked for by fleet or by id reach the hosts that can be scanned, and lock them in id
// order, as a group of observations does: a transaction holding the first host (as a group
// storing it would) keeps ScanNow from locking any other, so the two cannot deadlock.
func TestScanNowLocksHostsInIDOrder(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	const n = 30
	for i := range n {
		register(t, st, fmt.Sprintf("h%02d", n-1-i), "h") // stored in the reverse of id order
	}
	if err := st.Decommission(ctx, "h03", "replaced"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.ScanNow(ctx, []string{"h01", "h03", "nope"}, ""); err != nil || got != 1 {
		t.Fatalf("scan h01, h03 (decommissioned), nope: %d hosts (%v), want 1", got, err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "select 1 from hosts where id = 'h00' for update"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var scanned int
	go func() {
		var err error
		scanned, err = st.ScanNow(ctx, nil, "") // every host: a sequential scan, in storage order
		done <- err
	}()
	// Wait until ScanNow waits for h00.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		if err := pool.QueryRow(ctx, "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query like '%name: ScanNow%'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ScanNow never waited for the locked host")
		}
		runtime.Gosched()
	}
	if _, err := tx.Exec(ctx, "select 1 from hosts where id = 'h29' for update nowait"); err != nil {
		t.Errorf("the last host was locked by ScanNow while it waited for the first: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || scanned != n-1 {
		t.Fatalf("scan every host: %d hosts (%v), want %d", scanned, err, n-1)
	}
}

// A group that fails is stored again one observation at a time; a package set it stored for
// one host and found again for the next was rolled back with it, and is not remembered.
func TestFailedGroupForgetsTheSetsItStored(t *testing.T) {
	pool := pgtest.New(t, inventorydb.Schema, inventorydb.Migrations)
	st := New(pool)
	ctx := context.Background()
	for _, id := range []string{"h1", "h2", "h3"} {
		register(t, st, id, id)
	}
	pkgs := []hostfacts.Package{{Name: "zlib1g", Version: "1.2", Arch: "amd64", SourceName: "zlib", SourceVersion: "1.2", Status: "ii", Installed: true}}
	observation := func(host, os string) *observing {
		return &observing{o: Observation{HostID: host, ScanID: events.NewID(), At: time.Now(),
			Facts: hostfacts.Facts{OS: hostfacts.OSRelease{ID: os, VersionID: "12"}, Packages: pkgs}}}
	}
	// h1 stores the new set, h2 finds it, h3 fails the group (HostInventoryReported needs the OS).
	rs := []*observing{observation("h1", "debian"), observation("h2", "debian"), observation("h3", "")}
	st.storeGroup(ctx, rs)
	if rs[0].err != nil || rs[1].err != nil || rs[2].err == nil {
		t.Fatalf("outcomes h1 %v, h2 %v, h3 %v; want h3 alone to fail", rs[0].err, rs[1].err, rs[2].err)
	}
	var stored int
	if err := pool.QueryRow(ctx, "select count(*) from hosts h join package_sets s on s.id = h.package_set_id where h.id in ('h1', 'h2')").Scan(&stored); err != nil || stored != 2 {
		t.Fatalf("%d of h1, h2 stored with their set (%v)", stored, err)
	}
}

// The host answer carries what registration said of it, the application path included: a
// replace job registers its new host with the old one's.
func TestHostAnswerCarriesItsRegistration(t *testing.T) {
	st := New(pgtest.New(t, inventorydb.Schema, inventorydb.Migrations))
	ctx := context.Background()
	if _, err := st.Register(ctx, events.HostRegistered{HostID: "web-7", Name: "web-7", Fleet: "web", Tags: map[string]string{"role": "web"},
		New: true, AppPath: "/srv/app", SSH: events.SSHTarget{Address: "10.0.0.7", TOFU: true}}, "test"); err != nil {
		t.Fatal(err)
	}
	h, err := st.Host(ctx, "web-7", false)
	if err != nil || h.AppPath != "/srv/app" || !h.New || h.Fleet != "web" || h.Tags["role"] != "web" {
		t.Errorf("host %+v, %v: want the application path, new, fleet and tags registered", h.Host, err)
	}
}

// A host registered as new waits for its full upgrade until a full upgrade of it completes;
// a replacement waits for none (its replace job upgrades it).
func TestANewHostIsNewUntilItsFullUpgrade(t *testing.T) {
	st := New(pgtest.New(t, inventorydb.Schema, inventorydb.Migrations))
	ctx := context.Background()
	reg := func(id, replaces string) {
		if _, err := st.Register(ctx, events.HostRegistered{HostID: id, Name: id, Fleet: "web", New: true, Replaces: replaces,
			SSH: events.SSHTarget{Address: "10.0.0.7", TOFU: true}}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	isNew := func(id string) bool {
		h, err := st.Host(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		return h.New
	}
	reg("web-7", "")
	reg("web-8", "web-6")
	if !isNew("web-7") || isNew("web-8") {
		t.Fatalf("new: web-7 %t, web-8 (a replacement) %t; want true, false", isNew("web-7"), isNew("web-8"))
	}
	done := func(kind, job string) {
		if err := st.UpgradeCompleted(ctx, "test", events.Meta{ID: job, Time: time.Now()}, events.UpgradeCompleted{JobID: job, HostID: "web-7", Kind: kind}); err != nil {
			t.Fatal(err)
		}
	}
	done(events.KindSecurity, "j1")
	if !isNew("web-7") {
		t.Error("a security upgrade ended web-7's wait for its full upgrade")
	}
	done(events.KindFull, "j2")
	if isNew("web-7") {
		t.Error("web-7 is still new after its full upgrade")
	}
}
