// Package query is the contract of the inventory query endpoint: the requests and answers
// served over HTTP JSON and, identically, over NATS request/reply (a nats.go micro service),
// and a client for the NATS side. The planner, the executor, the ChatOps bot, the CLI and
// the web console ask the inventory through it; nobody reads the inventory's tables.
package query

import (
	"slices"
	"strconv"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

// The inventory's request/reply subjects (the micro service "inventory").
const (
	ServiceInventory = "inventory"
	SubjectHosts     = "pf.query.inventory.hosts"
	SubjectHost      = "pf.query.inventory.host"
	SubjectExposure  = "pf.query.inventory.exposure"
	SubjectScan      = "pf.query.inventory.scan" // ask for a scan now
)

// HostsRequest filters hosts; every set field must match. Results are ordered by host id
// and paginated with an opaque cursor.
type HostsRequest struct {
	Fleet string            `json:"fleet,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	IDs   []string          `json:"ids,omitempty"`
	// Package filters on an installed binary package, optionally within a version range
	// (Debian ordering): MinVersion <= installed < BelowVersion.
	Package        string `json:"package,omitempty"`
	MinVersion     string `json:"min_version,omitempty"`
	BelowVersion   string `json:"below_version,omitempty"`
	RebootRequired *bool  `json:"reboot_required,omitempty"`
	// NotScannedFor selects hosts whose last scan is older than this (or never scanned).
	NotScannedFor  time.Duration `json:"not_scanned_for_ns,omitempty"`
	IncludeRetired bool          `json:"include_retired,omitempty"`
	Cursor         string        `json:"cursor,omitempty"`
	Limit          int           `json:"limit,omitempty"` // default 100, at most 1000
}

// Host is one host of the register with its latest observed state.
type Host struct {
	ID             string             `json:"id"`
	Name           string             `json:"name"`
	Fleet          string             `json:"fleet"`
	Tags           map[string]string  `json:"tags,omitempty"`
	SSH            events.SSHTarget   `json:"ssh"`
	New            bool               `json:"new,omitempty"`      // registered as new, not yet fully upgraded
	AppPath        string             `json:"app_path,omitempty"` // the application the Rails probes look at
	Retired        bool               `json:"retired,omitempty"`
	KeyMismatch    bool               `json:"key_mismatch,omitempty"` // refused until re-pinned
	OS             events.OSRelease   `json:"os"`
	Kernel         string             `json:"kernel,omitempty"`
	BootID         string             `json:"boot_id,omitempty"`
	LastScan       time.Time          `json:"last_scan,omitempty"`
	LastScanError  string             `json:"last_scan_error,omitempty"`
	PackageCount   int                `json:"package_count"`
	Held           []string           `json:"held,omitempty"`
	RebootRequired bool               `json:"reboot_required,omitempty"`
	RebootPackages []string           `json:"reboot_packages,omitempty"`
	Components     []events.Component `json:"components,omitempty"`
}

// HostsResponse is a page of hosts.
type HostsResponse struct {
	Hosts      []Host `json:"hosts"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// HostRequest asks for one host by id (or name).
type HostRequest struct {
	ID           string `json:"id"`
	WithPackages bool   `json:"with_packages,omitempty"`
}

// Package is an installed binary package.
type Package struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	Arch          string `json:"arch"`
	SourceName    string `json:"source_name"`
	SourceVersion string `json:"source_version"`
	Status        string `json:"status"`
}

// HostDetail is one host with its packages.
type HostDetail struct {
	Host
	// PackageSet is the content hash of the host's installed packages (as in
	// HostInventoryReported): two answers with the same set have the same packages, so a
	// client that keeps lists by set may ask without them.
	PackageSet string    `json:"package_set,omitempty"`
	Packages   []Package `json:"packages,omitempty"`
}

// The most hosts a page of the inventory's lists holds, and a page of exposure in groups. A
// grouped page also stops short of about 1 MiB of answer (a host costs it its id), so it may
// hold fewer: a client follows NextCursor until there is none.
const (
	MaxPage        = 1000
	MaxGroupedPage = 100 * MaxPage
)

// ExposureRequest asks which hosts an advisory affects: by advisory id or CVE (an advisory
// the inventory has seen), or by an explicit affected list (what the planner passes from the
// event it is handling, so the answer never waits for the inventory to store the advisory;
// AdvisoryID may then name that list in the answer).
type ExposureRequest struct {
	AdvisoryID string            `json:"advisory_id,omitempty"`
	CVE        string            `json:"cve,omitempty"`
	Affected   []events.Affected `json:"affected,omitempty"`
	Fleet      string            `json:"fleet,omitempty"`
	HostIDs    []string          `json:"host_ids,omitempty"`
	Cursor     string            `json:"cursor,omitempty"`
	Limit      int               `json:"limit,omitempty"` // hosts; default 100, at most 1000 (100,000 grouped)
	// Grouped asks for the page as Groups instead of Hosts: hosts exposed alike are listed
	// once with their packages, which keeps a whole fleet's exposure small to send and read.
	Grouped bool `json:"grouped,omitempty"`
}

// ExposedPackage is an installed binary package built from an affected source package at a
// version below the fix.
type ExposedPackage struct {
	Name          string `json:"name"`
	Arch          string `json:"arch,omitempty"`
	Installed     string `json:"installed"`
	SourceName    string `json:"source_name"`
	SourceVersion string `json:"source_version"`
	Fixed         string `json:"fixed,omitempty"` // empty: no fix yet
	AdvisoryID    string `json:"advisory_id,omitempty"`
}

// ExposedHost is a host and what makes it exposed.
type ExposedHost struct {
	HostID   string           `json:"host_id"`
	Name     string           `json:"name"`
	Fleet    string           `json:"fleet"`
	OS       events.OSRelease `json:"os"`
	Packages []ExposedPackage `json:"packages"`
}

// ExposureResponse is a page of exposed hosts, in Hosts or, when asked for, in Groups.
type ExposureResponse struct {
	AdvisoryIDs []string        `json:"advisory_ids,omitempty"`
	Hosts       []ExposedHost   `json:"hosts"`
	Groups      []ExposureGroup `json:"groups,omitempty"`
	NextCursor  string          `json:"next_cursor,omitempty"`
}

// ExposureGroup is hosts exposed alike: the same OS release and the same exposed packages.
// Its hosts are listed by fleet, by id alone: a page of 10,000 hosts is then mostly their
// ids, which is what the planner reads a whole fleet's exposure in.
type ExposureGroup struct {
	OS       events.OSRelease `json:"os"`
	Packages []ExposedPackage `json:"packages"`
	Fleets   []FleetHosts     `json:"fleets"`
}

// FleetHosts is the hosts of one fleet in an ExposureGroup.
type FleetHosts struct {
	Fleet   string   `json:"fleet"`
	HostIDs []string `json:"host_ids"`
}

// Len is how many hosts the group has.
func (g ExposureGroup) Len() int {
	n := 0
	for _, f := range g.Fleets {
		n += len(f.HostIDs)
	}
	return n
}

// GroupExposure groups exposed hosts that share their OS release and packages. Groups come in
// the order of their first host, a group's fleets in the order of their first host, and
// hosts keep their order within a fleet.
func GroupExposure(hosts []ExposedHost) []ExposureGroup {
	var g ExposureGrouper
	// Hosts that share one package list (the inventory's hosts of one package set) are
	// matched by the list's identity, without building its key.
	type shared struct {
		first *ExposedPackage
		n     int
		os    events.OSRelease
	}
	byList := map[shared]int{}
	for _, h := range hosts {
		if len(h.Packages) == 0 {
			g.Add(g.Group(h.OS, h.Packages), h.Fleet, h.HostID)
			continue
		}
		list := shared{&h.Packages[0], len(h.Packages), h.OS}
		i, ok := byList[list]
		if !ok {
			i = g.Group(h.OS, h.Packages)
			byList[list] = i
		}
		g.Add(i, h.Fleet, h.HostID)
	}
	return g.Groups()
}

// ExposureGrouper builds the groups of GroupExposure host by host, for a caller that knows
// which hosts share a package list without a record per host.
type ExposureGrouper struct {
	groups []ExposureGroup
	index  map[string]int // exposureKey → group
	key    []byte
}

// Group returns the group of hosts of os exposed through packages, which it starts (last)
// when there is none yet.
func (g *ExposureGrouper) Group(os events.OSRelease, packages []ExposedPackage) int {
	g.key = exposureKey(g.key[:0], os, packages)
	i, ok := g.index[string(g.key)]
	if !ok {
		if g.index == nil {
			g.index = map[string]int{}
		}
		i = len(g.groups)
		g.index[string(g.key)] = i
		g.groups = append(g.groups, ExposureGroup{OS: os, Packages: packages})
	}
	return i
}

// Add lists a host of fleet in group i, after the fleet's hosts listed so far.
func (g *ExposureGrouper) Add(i int, fleet, hostID string) {
	gr := &g.groups[i]
	f := len(gr.Fleets) - 1 // most often the fleet of the host before
	if f < 0 || gr.Fleets[f].Fleet != fleet {
		if f = slices.IndexFunc(gr.Fleets, func(f FleetHosts) bool { return f.Fleet == fleet }); f < 0 {
			f = len(gr.Fleets)
			gr.Fleets = append(gr.Fleets, FleetHosts{Fleet: fleet})
		}
	}
	gr.Fleets[f].HostIDs = append(gr.Fleets[f].HostIDs, hostID)
}

// Groups returns the groups built so far.
func (g *ExposureGrouper) Groups() []ExposureGroup { return g.groups }

// exposureKey appends an OS release and exposed packages, each string length-prefixed so no
// two different exposures share a key.
func exposureKey(b []byte, os events.OSRelease, packages []ExposedPackage) []byte {
	str := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(append(b, ':'), s...)
	}
	str(os.ID)
	str(os.VersionID)
	str(os.Codename)
	b = strconv.AppendInt(b, int64(len(packages)), 10)
	for _, p := range packages {
		for _, s := range [...]string{p.Name, p.Arch, p.Installed, p.SourceName, p.SourceVersion, p.Fixed, p.AdvisoryID} {
			str(s)
		}
	}
	return b
}

// ScanRequest asks the inventory to scan hosts now.
type ScanRequest struct {
	HostIDs []string `json:"host_ids,omitempty"`
	Fleet   string   `json:"fleet,omitempty"`
}

// ScanResponse says how many scans were queued.
type ScanResponse struct {
	Queued int `json:"queued"`
}

// Error is the body of every 4xx/5xx answer (HTTP), and the micro error description.
type Error struct {
	Code    int    `json:"code"` // HTTP status semantics: 400, 401, 404, 500…
	Message string `json:"message"`
}
