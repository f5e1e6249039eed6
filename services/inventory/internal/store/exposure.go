package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory/internal/exposure"
)

// Entry is an affected entry and the advisory it comes from ("" for an explicit list).
type Entry struct {
	AdvisoryID string
	events.Affected
}

// ExposureFilter asks which hosts entries expose, one page by host id after After.
type ExposureFilter struct {
	Entries []Entry
	Fleet   string
	IDs     []string
	After   string
	Limit   int
}

type setKey struct {
	osID, release string
	set           int64
}

// Exposure returns one page of exposed hosts ordered by id, and the id to continue after.
//
// Debian and Ubuntu entries: set members are looked up by source package (an index), each
// set's candidates are judged in Go with Debian version ordering, and the exposed
// (os, release, set) triples select the hosts in one indexed query. RubyGems entries are
// matched against the Rails component of hosts that run Rails.
func (s *Store) Exposure(ctx context.Context, f ExposureFilter) ([]query.ExposedHost, string, error) {
	return s.exposure(ctx, inventorydb.New(s.pool), f)
}

func (s *Store) exposure(ctx context.Context, q *inventorydb.Queries, f ExposureFilter) ([]query.ExposedHost, string, error) {
	ids := f.IDs
	if ids == nil {
		ids = []string{}
	}
	ex, err := s.exposedSets(ctx, q, f.Entries)
	if err != nil {
		return nil, "", err
	}
	hosts := map[string]*query.ExposedHost{}
	// One query per (os, release): most advisories name one release, so usually one query.
	type release struct{ osID, release string }
	groups := map[release][]int64{}
	for k := range ex.hits {
		r := release{k.osID, k.release}
		groups[r] = append(groups[r], k.set)
	}
	for r, sets := range groups {
		slices.Sort(sets)
		rows, err := q.ExposedHosts(ctx, inventorydb.ExposedHostsParams{OsID: r.osID, Release: r.release, SetIds: sets,
			After: f.After, Fleet: f.Fleet, Ids: ids, MaxRows: int32(f.Limit + 1)})
		if err != nil {
			return nil, "", fmt.Errorf("exposed hosts on %s %s: %w", r.osID, r.release, err)
		}
		for _, h := range rows {
			pkgs, err := ex.packages(setKey{h.OsID, h.OsVersionID, h.PackageSetID.Int64})
			if err != nil {
				return nil, "", err
			}
			hosts[h.ID] = &query.ExposedHost{HostID: h.ID, Name: h.Name, Fleet: h.Fleet,
				OS: events.OSRelease{ID: h.OsID, VersionID: h.OsVersionID, Codename: h.OsCodename}, Packages: pkgs}
		}
	}
	if err := s.exposedGems(ctx, q, f, ids, hosts); err != nil {
		return nil, "", err
	}
	out := make([]query.ExposedHost, 0, len(hosts))
	for _, id := range slices.Sorted(maps.Keys(hosts)) {
		if len(out) == f.Limit {
			return out, out[len(out)-1].HostID, nil
		}
		out = append(out, *hosts[id])
	}
	return out, "", nil
}

// exposedSets judges every stored package set that holds an affected source package.
func (s *Store) exposedSets(ctx context.Context, q *inventorydb.Queries, entries []Entry) (*exposed, error) {
	var sources []string
	for _, e := range entries {
		if _, ok := exposure.HostOS(e.Ecosystem); ok && !slices.Contains(sources, e.Package) {
			sources = append(sources, e.Package)
		}
	}
	if len(sources) == 0 {
		return &exposed{}, nil
	}
	sets, err := q.PackageSetIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("package sets: %w", err)
	}
	bySource, err := s.sets.members(ctx, q, sources, sets)
	if err != nil {
		return nil, err
	}
	// Phase one only decides which sets are exposed (no allocation per package); the page's
	// few sets get their package lists afterwards, in exposedPackages.
	ex := &exposed{bySource: bySource, entries: entries, memos: make([]map[string]exposure.Verdict, len(entries)),
		hits: map[setKey][]int{}, lists: map[setKey][]query.ExposedPackage{}}
	for i, e := range entries {
		osID, ok := exposure.HostOS(e.Ecosystem)
		if !ok {
			continue
		}
		ex.memos[i] = map[string]exposure.Verdict{}
		for set, pkgs := range bySource[e.Package] {
			hit, err := exposure.Affects(e.Affected, pkgs, ex.memos[i])
			if err != nil {
				return nil, fmt.Errorf("exposure to %s: %w", e.AdvisoryID, err)
			}
			if hit {
				k := setKey{osID, e.Release, set}
				ex.hits[k] = append(ex.hits[k], i)
			}
		}
	}
	return ex, nil
}

// exposed is what phase one found: for each exposed (os, release, set), the entries that
// expose it.
type exposed struct {
	bySource map[string]map[int64][]query.Package
	entries  []Entry
	memos    []map[string]exposure.Verdict
	hits     map[setKey][]int
	lists    map[setKey][]query.ExposedPackage // packages' answers
}

// packages lists the exposed packages of one set, sorted, once: the set's hosts share the
// list (callers that add to a host's list clip it first).
func (ex *exposed) packages(k setKey) ([]query.ExposedPackage, error) {
	if out, ok := ex.lists[k]; ok {
		return out, nil
	}
	var out []query.ExposedPackage
	for _, i := range ex.hits[k] {
		e := ex.entries[i]
		ps, err := exposure.Packages(e.Affected, e.AdvisoryID, ex.bySource[e.Package][k.set], ex.memos[i])
		if err != nil {
			return nil, fmt.Errorf("exposure to %s: %w", e.AdvisoryID, err)
		}
		out = append(out, ps...)
	}
	slices.SortFunc(out, func(a, b query.ExposedPackage) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Arch, b.Arch), strings.Compare(a.AdvisoryID, b.AdvisoryID))
	})
	ex.lists[k] = out
	return out, nil
}

func (s *Store) exposedGems(ctx context.Context, q *inventorydb.Queries, f ExposureFilter, ids []string, hosts map[string]*query.ExposedHost) error {
	var gems []Entry
	for _, e := range f.Entries {
		if e.Ecosystem == events.EcosystemRubyGems {
			gems = append(gems, e)
		}
	}
	if len(gems) == 0 {
		return nil
	}
	after, found := f.After, 0
	for found <= f.Limit {
		rows, err := q.HostsWithComponent(ctx, inventorydb.HostsWithComponentParams{After: after,
			Component: []byte(`[{"name":"rails"}]`), Fleet: f.Fleet, Ids: ids, MaxRows: 1000})
		if err != nil {
			return fmt.Errorf("hosts running rails: %w", err)
		}
		for _, r := range rows {
			var comps []events.Component
			_ = json.Unmarshal(r.Components, &comps)
			var exposed []query.ExposedPackage
			for _, c := range comps {
				if c.Name != "rails" {
					continue
				}
				for _, e := range gems {
					ps, err := exposure.Gems(e.Affected, e.AdvisoryID, c.Version)
					if err != nil {
						return fmt.Errorf("exposure of %s to %s: %w", r.ID, e.AdvisoryID, err)
					}
					exposed = append(exposed, ps...)
				}
			}
			if len(exposed) == 0 {
				continue
			}
			found++
			h := hosts[r.ID]
			if h == nil {
				h = &query.ExposedHost{HostID: r.ID, Name: r.Name, Fleet: r.Fleet,
					OS: events.OSRelease{ID: r.OsID, VersionID: r.OsVersionID, Codename: r.OsCodename}}
				hosts[r.ID] = h
			}
			// Clipped: a host's Debian list is its set's, shared with the set's other hosts.
			h.Packages = append(slices.Clip(h.Packages), exposed...)
		}
		if len(rows) < 1000 {
			break
		}
		after = rows[len(rows)-1].ID
	}
	return nil
}
