package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/query"
)

// maxCachedSources bounds the set cache: one entry per source package exposure asked about.
const maxCachedSources = 512

// setCache keeps, per source package, the installed binaries built from it in every package
// set. Package sets never change once stored (they are named by their content), so an entry
// only ever needs the sets stored since it was filled: exposure reads ~1,000 set ids instead
// of thousands of member rows.
type setCache struct {
	mu      sync.Mutex
	sources map[string]*cachedSource
}

type cachedSource struct {
	known map[int64]bool
	bySet map[int64][]query.Package
	// alike keeps one list per content: sets that hold the same binaries of the source
	// share it, and exposure lists and groups them once (by the list's identity).
	alike map[string][]query.Package
	used  time.Time
}

// members returns source → set → packages for every set in sets (a snapshot's set ids).
func (c *setCache) members(ctx context.Context, q *inventorydb.Queries, sources []string, sets []int64) (map[string]map[int64][]query.Package, error) {
	out := make(map[string]map[int64][]query.Package, len(sources))
	for _, src := range sources {
		c.mu.Lock()
		if c.sources == nil {
			c.sources = map[string]*cachedSource{}
		}
		e := c.sources[src]
		var missing []int64
		if e != nil {
			for _, id := range sets {
				if !e.known[id] {
					missing = append(missing, id)
				}
			}
		}
		c.mu.Unlock()

		if e == nil || len(missing) > 0 {
			var rows []inventorydb.MembersBySourceRow
			var err error
			if e == nil {
				rows, err = q.MembersBySource(ctx, []string{src})
			} else {
				var in []inventorydb.MembersBySourceInRow
				in, err = q.MembersBySourceIn(ctx, inventorydb.MembersBySourceInParams{Sources: []string{src}, SetIds: missing})
				for _, r := range in {
					rows = append(rows, inventorydb.MembersBySourceRow(r))
				}
			}
			if err != nil {
				return nil, fmt.Errorf("packages built from %s: %w", src, err)
			}
			c.mu.Lock()
			// Another request may have filled the entry meanwhile, or it may have been
			// evicted (what e holds is still right): then only what it lacks is added.
			fresh := c.sources[src]
			if fresh == nil {
				fresh = e
			}
			filled := fresh != nil
			if !filled {
				fresh = &cachedSource{known: map[int64]bool{}, bySet: map[int64][]query.Package{}, alike: map[string][]query.Package{}}
			}
			for _, id := range sets {
				fresh.known[id] = true
			}
			var added []int64
			for _, r := range rows {
				if !filled || !containsSet(fresh.bySet[r.SetID], r.Name, r.Arch) {
					if len(fresh.bySet[r.SetID]) == 0 {
						added = append(added, r.SetID)
					}
					fresh.bySet[r.SetID] = append(fresh.bySet[r.SetID], query.Package{Name: r.Name, Arch: r.Arch,
						Version: r.Version, SourceName: r.SourceName, SourceVersion: r.SourceVersion})
				}
			}
			var key []byte
			for _, id := range added {
				key = packagesKey(key[:0], fresh.bySet[id])
				if same, ok := fresh.alike[string(key)]; ok {
					fresh.bySet[id] = same
				} else {
					fresh.bySet[id] = slices.Clip(fresh.bySet[id]) // shared: never appended to in place
					fresh.alike[string(key)] = fresh.bySet[id]
				}
			}
			c.sources[src] = fresh
			c.evictLocked()
			e = fresh
			c.mu.Unlock()
		}
		c.mu.Lock()
		e.used = time.Now()
		m := make(map[int64][]query.Package, len(e.bySet))
		for _, id := range sets {
			if ps, ok := e.bySet[id]; ok {
				m[id] = ps
			}
		}
		c.mu.Unlock()
		out[src] = m
	}
	return out, nil
}

// packagesKey appends ps, each string length-prefixed so no two different lists share a key.
func packagesKey(b []byte, ps []query.Package) []byte {
	for _, p := range ps {
		for _, s := range [...]string{p.Name, p.Arch, p.Version, p.SourceName, p.SourceVersion} {
			b = strconv.AppendInt(b, int64(len(s)), 10)
			b = append(append(b, ':'), s...)
		}
	}
	return b
}

func containsSet(ps []query.Package, name, arch string) bool {
	for _, p := range ps {
		if p.Name == name && p.Arch == arch {
			return true
		}
	}
	return false
}

func (c *setCache) evictLocked() {
	for len(c.sources) > maxCachedSources {
		var oldest string
		var at time.Time
		for s, e := range c.sources {
			if oldest == "" || e.used.Before(at) {
				oldest, at = s, e.used
			}
		}
		delete(c.sources, oldest)
	}
}

// maxCachedLists bounds the package-list cache: hosts built from a few images share a few
// sets, and a list is ~700 packages (~100 KiB).
const maxCachedLists = 64

// listCache keeps the whole package lists of the sets read most recently, with their
// hashes. A scan that changed a host's set reads the previous list (its changes), and the
// planner asks for a host's list after every scan; both hit the few sets a fleet's images
// share. A set never changes once stored, and its id is never reused, so an entry is never
// stale.
type listCache struct {
	mu    sync.Mutex
	lists map[int64]*cachedList
	clock uint64 // advances on every use; an entry's used is its last
}

type cachedList struct {
	hash string
	pkgs []query.Package
	used uint64
}

// get returns a set's hash and a copy of its list, if cached.
func (c *listCache) get(id int64) (string, []query.Package, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lists[id]
	if !ok {
		return "", nil, false
	}
	c.clock++
	e.used = c.clock
	return e.hash, slices.Clone(e.pkgs), true
}

// matching returns a set's hash if its list is cached and is exactly pkgs (as scanned,
// before Packages): a host scanned again with the set it had costs a comparison, not a
// canonical list and its hash.
func (c *listCache) matching(id int64, pkgs []hostfacts.Package) (string, bool) {
	c.mu.Lock()
	e, ok := c.lists[id]
	if ok {
		c.clock++
		e.used = c.clock
	}
	c.mu.Unlock()
	// An entry's list never changes once put: it is compared outside the lock.
	if !ok || len(e.pkgs) != len(pkgs) {
		return "", false
	}
	for i, p := range pkgs {
		q := &e.pkgs[i]
		if p.Name != q.Name || p.Arch != q.Arch || p.Version != q.Version || p.SourceName != q.SourceName ||
			p.SourceVersion != q.SourceVersion || p.Status != q.Status {
			return "", false
		}
	}
	return e.hash, true
}

// hash returns a set's hash, if its list is cached.
func (c *listCache) hash(id int64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lists[id]
	if !ok {
		return "", false
	}
	return e.hash, true
}

func (c *listCache) put(id int64, hash string, pkgs []query.Package) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lists == nil {
		c.lists = map[int64]*cachedList{}
	}
	c.clock++
	c.lists[id] = &cachedList{hash: hash, pkgs: slices.Clone(pkgs), used: c.clock}
	for len(c.lists) > maxCachedLists {
		oldest, at := int64(0), uint64(0)
		for id, e := range c.lists {
			if at == 0 || e.used < at {
				oldest, at = id, e.used
			}
		}
		delete(c.lists, oldest)
	}
}

// maxCachedSetIDs bounds the set id cache; it is emptied when full. An entry is a hash and
// an id: 100,000 sets take about 10 MB.
const maxCachedSetIDs = 100_000

// setIDCache maps a package set's hash to its id, so that a scan that finds a known set —
// almost every scan of a fleet built from images — stores no set and reads none. Only
// committed sets are put in: a set is never deleted and its id never reused, so an entry
// is never stale.
type setIDCache struct {
	mu  sync.Mutex
	ids map[string]int64
}

func (c *setIDCache) get(hash string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[hash]
	return id, ok
}

func (c *setIDCache) put(hash string, id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil || len(c.ids) >= maxCachedSetIDs {
		c.ids = map[string]int64{}
	}
	c.ids[hash] = id
}
