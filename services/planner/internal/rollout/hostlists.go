package rollout

import (
	"context"
	"sync"

	"github.com/patchfleet/patchfleet/events/query"
)

// maxCachedLists bounds the package lists kept: hosts built from a few images share a few
// package sets, and a list is ~700 packages.
const maxCachedLists = 64

// packageLists keeps the package lists of recently seen package sets, by content hash (so
// an entry is never stale). Lists are shared: callers only read them.
type packageLists struct {
	mu    sync.Mutex
	lists map[string]*cachedList
	clock uint64 // advances on every use; an entry's used is its last
}

type cachedList struct {
	pkgs []query.Package
	used uint64
}

func (c *packageLists) get(set string) ([]query.Package, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lists[set]
	if !ok {
		return nil, false
	}
	c.clock++
	e.used = c.clock
	return e.pkgs, true
}

func (c *packageLists) put(set string, pkgs []query.Package) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lists == nil {
		c.lists = map[string]*cachedList{}
	}
	c.clock++
	c.lists[set] = &cachedList{pkgs: pkgs, used: c.clock}
	for len(c.lists) > maxCachedLists {
		oldest, at := "", uint64(0)
		for s, e := range c.lists {
			if at == 0 || e.used < at {
				oldest, at = s, e.used
			}
		}
		delete(c.lists, oldest)
	}
}

// host asks the inventory for a host with its packages. When set (the package set the
// event being handled reported) is one whose list is kept, the host is asked for without
// its packages, and they come from memory if the host still has that set: re-evaluating
// the hosts of one image after a rollout moves one list over the bus, not one per host.
func (e *Engine) host(ctx context.Context, id, set string) (query.HostDetail, error) {
	if pkgs, ok := e.lists.get(set); ok && set != "" {
		d, err := e.Inventory.Host(ctx, query.HostRequest{ID: id})
		if err != nil {
			return d, err
		}
		if d.PackageSet == set {
			d.Packages = pkgs
			return d, nil
		}
	}
	d, err := e.Inventory.Host(ctx, query.HostRequest{ID: id, WithPackages: true})
	if err == nil && d.PackageSet != "" {
		e.lists.put(d.PackageSet, d.Packages)
	}
	return d, err
}
