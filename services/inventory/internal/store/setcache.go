package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/patchfleet/patchfleet/db/inventorydb"
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
			fresh := &cachedSource{known: map[int64]bool{}, bySet: map[int64][]query.Package{}}
			c.mu.Lock()
			if cur := c.sources[src]; cur != nil {
				fresh = cur
			}
			for _, id := range sets {
				fresh.known[id] = true
			}
			for _, r := range rows {
				if e == nil || !containsSet(fresh.bySet[r.SetID], r.Name, r.Arch) {
					fresh.bySet[r.SetID] = append(fresh.bySet[r.SetID], query.Package{Name: r.Name, Arch: r.Arch,
						Version: r.Version, SourceName: r.SourceName, SourceVersion: r.SourceVersion})
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
