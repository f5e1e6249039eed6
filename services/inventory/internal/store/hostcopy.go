package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/patchfleet/patchfleet/db/inventorydb"
)

// hostCopy is what exposure reads of the hosts in service (id, name, fleet, OS release and
// package set), kept in memory in id order. Before every exposure answer it reads the hosts
// changed since it last read (hosts.changed_xid, migration 0004), so an answer is as current
// as a query would be; a page of 10,000 exposed hosts is then a walk of memory, not 10,000
// rows out of PostgreSQL. A changed host's record is replaced in place; only hosts joining
// or leaving move the others.
type hostCopy struct {
	sync    sync.Mutex // one reader of the changes at a time
	horizon int64      // the changes of transactions at or above it are read again

	mu    sync.RWMutex
	hosts []*copiedHost     // by id (bytewise), only hosts in service that were scanned; never changed, replaced
	strs  map[string]string // fleets and releases, held once
}

type copiedHost struct {
	id, name, fleet         string
	osID, release, codename string
	set                     int64
}

// LoadHosts brings the hosts' copy exposure answers read from up to date: every exposure
// answer does first, and the service at its start (the first read is of every host). It
// reads through the pool, never a transaction: what a transaction changed is read once it
// commits.
func (s *Store) LoadHosts(ctx context.Context) error {
	return s.hosts.update(ctx, inventorydb.New(s.pool))
}

// update reads the hosts changed since the last update and applies them.
func (c *hostCopy) update(ctx context.Context, q *inventorydb.Queries) error {
	c.sync.Lock()
	defer c.sync.Unlock()
	rows, err := q.HostChanges(ctx, c.horizon)
	if err != nil {
		return fmt.Errorf("hosts changed: %w", err)
	}
	if len(rows) == 0 {
		return errors.New("hosts changed: no horizon")
	}
	horizon := rows[0].Horizon
	if rows[0].ID == "" { // nothing changed
		c.horizon = horizon
		return nil
	}
	// In id order as Go compares strings, whatever the database's collation.
	slices.SortFunc(rows, func(a, b inventorydb.HostChangesRow) int { return strings.Compare(a.ID, b.ID) })

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.strs == nil {
		c.strs = map[string]string{}
	}
	var joining []*copiedHost
	var leaving []int // where, in c.hosts
	for _, r := range rows {
		i, found := c.find(r.ID)
		if r.Retired || r.PackageSetID == 0 {
			if found {
				leaving = append(leaving, i)
			}
			continue
		}
		h := &copiedHost{id: r.ID, name: r.Name, fleet: c.str(r.Fleet), osID: c.str(r.OsID),
			release: c.str(r.OsVersionID), codename: c.str(r.OsCodename), set: r.PackageSetID}
		if found {
			c.hosts[i] = h
		} else {
			joining = append(joining, h)
		}
	}
	if len(leaving) > 0 {
		for _, i := range leaving {
			c.hosts[i] = nil
		}
		c.hosts = slices.DeleteFunc(c.hosts, func(h *copiedHost) bool { return h == nil })
	}
	if len(joining) > 0 {
		c.hosts = mergeHosts(c.hosts, joining)
	}
	c.horizon = horizon
	return nil
}

// find returns where the host with id is, or would be, in c.hosts.
func (c *hostCopy) find(id string) (int, bool) {
	return slices.BinarySearchFunc(c.hosts, id, func(h *copiedHost, id string) int { return strings.Compare(h.id, id) })
}

// str returns s as held once.
func (c *hostCopy) str(s string) string {
	if held, ok := c.strs[s]; ok {
		return held
	}
	c.strs[s] = s
	return s
}

// mergeHosts merges two lists of distinct hosts in id order.
func mergeHosts(a, b []*copiedHost) []*copiedHost {
	out := make([]*copiedHost, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].id < b[0].id {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// exposedRow is a host on an exposed package set of releases[release].
type exposedRow struct {
	*copiedHost
	release int
}

// page lists, by id, up to f.Limit+1 hosts of f (one more than a page: whether there is a
// next one) on the exposed sets of releases.
func (c *hostCopy) page(f ExposureFilter, releases []releaseSets) []exposedRow {
	sets := make([]map[int64]bool, len(releases))
	for i, r := range releases {
		sets[i] = make(map[int64]bool, len(r.sets))
		for _, s := range r.sets {
			sets[i][s] = true
		}
	}
	rows := make([]exposedRow, 0, min(f.Limit+1, 1024))
	add := func(h *copiedHost) bool {
		if f.Fleet != "" && h.fleet != f.Fleet {
			return true
		}
		for i, r := range releases {
			if h.release == r.release && h.osID == r.osID && sets[i][h.set] {
				rows = append(rows, exposedRow{h, i})
				break
			}
		}
		return len(rows) <= f.Limit
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(f.IDs) > 0 {
		ids := slices.Clone(f.IDs)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			if i, ok := c.find(id); ok && id > f.After && !add(c.hosts[i]) {
				break
			}
		}
		return rows
	}
	for i := sort.Search(len(c.hosts), func(i int) bool { return c.hosts[i].id > f.After }); i < len(c.hosts); i++ {
		if !add(c.hosts[i]) {
			break
		}
	}
	return rows
}
