package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
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
// (os, release, set) triples select the hosts from the hosts' copy in memory. RubyGems entries are
// matched against the Rails component of hosts that run Rails.
func (s *Store) Exposure(ctx context.Context, f ExposureFilter) ([]query.ExposedHost, string, error) {
	return s.exposure(ctx, inventorydb.New(s.pool), f)
}

func (s *Store) exposure(ctx context.Context, q *inventorydb.Queries, f ExposureFilter) ([]query.ExposedHost, string, error) {
	ex, releases, rows, err := s.exposedRows(ctx, q, f)
	if err != nil {
		return nil, "", err
	}
	hosts := make([]query.ExposedHost, 0, len(rows))
	for _, h := range rows {
		r := releases[h.release]
		pkgs, err := ex.packages(setKey{r.osID, r.release, h.set})
		if err != nil {
			return nil, "", err
		}
		hosts = append(hosts, query.ExposedHost{HostID: h.id, Name: h.name, Fleet: h.fleet,
			OS: events.OSRelease{ID: r.osID, VersionID: r.release, Codename: h.codename}, Packages: pkgs})
	}
	if hosts, err = s.exposedGems(ctx, q, f, hosts); err != nil {
		return nil, "", err
	}
	if len(hosts) > f.Limit {
		hosts = hosts[:f.Limit]
		return hosts, hosts[len(hosts)-1].HostID, nil
	}
	return hosts, "", nil
}

// ExposureGroups returns Exposure's page in groups, as query.GroupExposure groups it, without
// a record per host: the planner reads a whole fleet's exposure in grouped pages of up to
// query.MaxGroupedPage hosts, or fewer when the answer would pass maxGroupedBytes. The hosts of
// one package set and codename join their group at once.
func (s *Store) ExposureGroups(ctx context.Context, f ExposureFilter) ([]query.ExposureGroup, string, error) {
	if slices.ContainsFunc(f.Entries, func(e Entry) bool { return e.Ecosystem == events.EcosystemRubyGems }) {
		// A gem's exposure is a host's own: its Rails version.
		hosts, next, err := s.Exposure(ctx, f)
		if err != nil {
			return nil, "", err
		}
		budget := newGroupedBudget()
		for i, h := range hosts {
			if !budget.fits(h.HostID, h.Packages) {
				hosts, next = hosts[:i], hosts[i-1].HostID
				break
			}
		}
		return query.GroupExposure(hosts), next, nil
	}
	q := inventorydb.New(s.pool)
	ex, releases, rows, err := s.exposedRows(ctx, q, f)
	if err != nil {
		return nil, "", err
	}
	// A host's group is found by its set (and codename), a set's by its list's identity (sets
	// with the same binaries share theirs): the group's key is built once per list.
	type onSet struct {
		release  int
		set      int64
		codename string
	}
	type onList struct {
		release  int
		first    *query.ExposedPackage
		n        int
		codename string
	}
	type setGroup struct {
		group    int // -1 until the set's first host is on the page
		packages []query.ExposedPackage
	}
	var g query.ExposureGrouper
	bySet, byList := map[onSet]setGroup{}, map[onList]int{}
	budget := newGroupedBudget()
	n := min(len(rows), f.Limit) // the hosts of this page
	for j, h := range rows[:n] {
		k := onSet{h.release, h.set, h.codename}
		sg, ok := bySet[k]
		if !ok {
			r := releases[h.release]
			pkgs, err := ex.packages(setKey{r.osID, r.release, k.set})
			if err != nil {
				return nil, "", err
			}
			sg = setGroup{-1, pkgs}
		}
		if !budget.fits(h.id, sg.packages) {
			n = j
			break
		}
		if sg.group < 0 {
			r := releases[h.release]
			l := onList{release: h.release, n: len(sg.packages), codename: h.codename}
			if len(sg.packages) > 0 {
				l.first = &sg.packages[0]
			}
			i, ok := byList[l]
			if !ok {
				i = g.Group(events.OSRelease{ID: r.osID, VersionID: r.release, Codename: h.codename}, sg.packages)
				byList[l] = i
			}
			sg.group = i
			bySet[k] = sg
		}
		g.Add(sg.group, h.fleet, h.id)
	}
	next := ""
	if n < len(rows) {
		next = rows[n-1].id
	}
	return g.Groups(), next, nil
}

// maxGroupedBytes bounds a grouped exposure page's answer, roughly: within the 1 MiB a NATS
// server takes in a message unless configured otherwise.
const maxGroupedBytes = 768 << 10

// groupedBudget counts what a grouped page's answer takes: each host's id, and each package
// list once (hosts that share one are grouped).
type groupedBudget struct {
	left  int
	hosts int
	lists map[*query.ExposedPackage]bool
}

func newGroupedBudget() *groupedBudget {
	return &groupedBudget{left: maxGroupedBytes, lists: map[*query.ExposedPackage]bool{}}
}

// fits counts a host exposed through packages and says whether the page still holds it. The
// first host always fits: a page makes progress.
func (b *groupedBudget) fits(id string, packages []query.ExposedPackage) bool {
	b.left -= len(id) + 3 // quoted, and a comma
	if len(packages) > 0 && !b.lists[&packages[0]] {
		b.lists[&packages[0]] = true
		for _, p := range packages {
			b.left -= 120 + len(p.Name) + len(p.Arch) + len(p.Installed) + len(p.SourceName) + len(p.SourceVersion) + len(p.Fixed) + len(p.AdvisoryID)
		}
	}
	b.hosts++
	return b.left >= 0 || b.hosts == 1
}

// exposedRows brings the hosts' copy up to date, then judges the sets entries expose and lists
// up to f.Limit+1 hosts of f on them. The copy first: a host's set is then one of those
// judged.
func (s *Store) exposedRows(ctx context.Context, q *inventorydb.Queries, f ExposureFilter) (*exposed, []releaseSets, []exposedRow, error) {
	if err := s.LoadHosts(ctx); err != nil {
		return nil, nil, nil, err
	}
	ex, err := s.exposedSets(ctx, q, f.Entries)
	if err != nil {
		return nil, nil, nil, err
	}
	releases := ex.releases()
	return ex, releases, s.hosts.page(f, releases), nil
}

// releaseSets is the package sets of one Debian or Ubuntu release found exposed.
type releaseSets struct {
	osID, release string
	sets          []int64
}

// releases lists the exposed sets by release, in order.
func (ex *exposed) releases() []releaseSets {
	var out []releaseSets
	for k := range ex.hits {
		i := slices.IndexFunc(out, func(r releaseSets) bool { return r.osID == k.osID && r.release == k.release })
		if i < 0 {
			i = len(out)
			out = append(out, releaseSets{osID: k.osID, release: k.release})
		}
		out[i].sets = append(out[i].sets, k.set)
	}
	for _, r := range out {
		slices.Sort(r.sets)
	}
	slices.SortFunc(out, func(a, b releaseSets) int {
		return cmp.Or(strings.Compare(a.osID, b.osID), strings.Compare(a.release, b.release))
	})
	return out
}

// ids is the filter's host ids, never nil: the queries take an empty list for "any".
func (f ExposureFilter) ids() []string {
	if f.IDs == nil {
		return []string{}
	}
	return f.IDs
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
		hits: map[setKey][]int{}, lists: map[setKey][]query.ExposedPackage{}, alike: map[memberList][]query.ExposedPackage{}}
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
	// alike: the answers of sets exposed by one entry, by the entry and the set's members
	// (shared by the sets that hold the same binaries: setCache): those sets share one list.
	alike map[memberList][]query.ExposedPackage
}

type memberList struct {
	entry int
	first *query.Package
}

// packages lists the exposed packages of one set, sorted, once: the set's hosts share the
// list (callers that add to a host's list clip it first), and so do the sets that hold the
// same binaries of a single entry's source.
func (ex *exposed) packages(k setKey) ([]query.ExposedPackage, error) {
	if out, ok := ex.lists[k]; ok {
		return out, nil
	}
	var alike memberList
	if hits := ex.hits[k]; len(hits) == 1 {
		alike = memberList{hits[0], &ex.bySource[ex.entries[hits[0]].Package][k.set][0]}
		if out, ok := ex.alike[alike]; ok {
			ex.lists[k] = out
			return out, nil
		}
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
	if alike.first != nil {
		ex.alike[alike] = out
	}
	return out, nil
}

// exposedGems adds to hosts (by id, at most f.Limit+1) the hosts that RubyGems entries expose
// through their Rails component, keeping the order and the bound.
func (s *Store) exposedGems(ctx context.Context, q *inventorydb.Queries, f ExposureFilter, hosts []query.ExposedHost) ([]query.ExposedHost, error) {
	var gems []Entry
	for _, e := range f.Entries {
		if e.Ecosystem == events.EcosystemRubyGems {
			gems = append(gems, e)
		}
	}
	if len(gems) == 0 {
		return hosts, nil
	}
	index := make(map[string]int, len(hosts))
	for i, h := range hosts {
		index[h.HostID] = i
	}
	debian := len(hosts)
	after, found := f.After, 0
	for found <= f.Limit {
		rows, err := q.HostsWithComponent(ctx, inventorydb.HostsWithComponentParams{After: after,
			Component: []byte(`[{"name":"rails"}]`), Fleet: f.Fleet, Ids: f.ids(), MaxRows: 1000})
		if err != nil {
			return nil, fmt.Errorf("hosts running rails: %w", err)
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
						return nil, fmt.Errorf("exposure of %s to %s: %w", r.ID, e.AdvisoryID, err)
					}
					exposed = append(exposed, ps...)
				}
			}
			if len(exposed) == 0 {
				continue
			}
			found++
			i, ok := index[r.ID]
			if !ok {
				i = len(hosts)
				hosts = append(hosts, query.ExposedHost{HostID: r.ID, Name: r.Name, Fleet: r.Fleet,
					OS: events.OSRelease{ID: r.OsID, VersionID: r.OsVersionID, Codename: r.OsCodename}})
			}
			// Clipped: a host's Debian list is its set's, shared with the set's other hosts.
			hosts[i].Packages = append(slices.Clip(hosts[i].Packages), exposed...)
		}
		if len(rows) < 1000 {
			break
		}
		after = rows[len(rows)-1].ID
	}
	if len(hosts) > debian {
		slices.SortFunc(hosts, func(a, b query.ExposedHost) int { return strings.Compare(a.HostID, b.HostID) })
		hosts = hosts[:min(len(hosts), f.Limit+1)]
	}
	return hosts, nil
}
