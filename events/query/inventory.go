// Package query is the contract of the inventory query endpoint: the requests and answers
// served over HTTP JSON and, identically, over NATS request/reply (a nats.go micro service),
// and a client for the NATS side. The planner, the executor, the ChatOps bot, the CLI and
// the web console ask the inventory through it; nobody reads the inventory's tables.
package query

import (
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
	New            bool               `json:"new,omitempty"` // registered as new, not yet fully upgraded
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
	Limit      int               `json:"limit,omitempty"` // default 100, at most 1000
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

// ExposureResponse is a page of exposed hosts.
type ExposureResponse struct {
	AdvisoryIDs []string      `json:"advisory_ids,omitempty"`
	Hosts       []ExposedHost `json:"hosts"`
	NextCursor  string        `json:"next_cursor,omitempty"`
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
