// Package view builds what the console's pages show from query answers and events: plain
// values in, plain values out, no IO. The templates and the live updates render these.
package view

import (
	"cmp"
	"slices"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// Severities from the most to the least urgent, as the pages list them.
var Severities = []events.Severity{events.SeverityCritical, events.SeverityHigh, events.SeverityMedium,
	events.SeverityLow, events.SeverityNegligible, events.SeverityUnknown}

// SeverityCount is how many distinct hosts are exposed at one severity.
type SeverityCount struct {
	Severity events.Severity
	Hosts    int
}

// FleetRow summarises one fleet.
type FleetRow struct {
	Fleet         string
	Hosts         int
	Exposed       int // hosts with at least one unpatched advisory
	Worst         events.Severity
	RebootPending int
	Stale         int
}

// AdvisoryCount is an advisory and how many hosts it still exposes.
type AdvisoryCount struct {
	ID       string
	Severity events.Severity
	Hosts    int
	Oldest   time.Time // earliest exposed-since among them
}

// HostRef names a host with a note (why it is listed).
type HostRef struct {
	ID, Name, Fleet, Note string
}

// Overview is the fleet overview page.
type Overview struct {
	Hosts         int
	Exposed       int
	Urgent        int // hosts exposed to a high or critical advisory
	RebootPending int
	Stale         int
	StaleAfter    time.Duration
	BySeverity    []SeverityCount
	Fleets        []FleetRow
	Advisories    []AdvisoryCount // most urgent first
	Rollouts      []query.RolloutSummary
	RebootHosts   []HostRef
	StaleHosts    []HostRef
	Chart         Chart
	Truncated     bool // an input was cut at its page limit
}

// OverviewInput is what the overview is built from.
type OverviewInput struct {
	Hosts      []query.Host
	Open       []query.ComplianceRecord // still exposed or waiting for a reboot
	History    []query.ComplianceRecord // every record, for the chart
	Rollouts   []query.RolloutSummary   // open rollouts
	Now        time.Time
	StaleAfter time.Duration
	Days       int
	Truncated  bool
}

// maxListed bounds the host lists on the overview; the host pages have the rest.
const maxListed = 10

// BuildOverview summarises the fleet.
func BuildOverview(in OverviewInput) Overview {
	o := Overview{Hosts: len(in.Hosts), StaleAfter: in.StaleAfter, Rollouts: in.Rollouts, Truncated: in.Truncated}
	fleets := map[string]*FleetRow{}
	fleet := func(name string) *FleetRow {
		if fleets[name] == nil {
			fleets[name] = &FleetRow{Fleet: name}
		}
		return fleets[name]
	}
	for _, h := range in.Hosts {
		f := fleet(h.Fleet)
		f.Hosts++
		if h.RebootRequired {
			o.RebootPending++
			f.RebootPending++
			if len(o.RebootHosts) < maxListed {
				o.RebootHosts = append(o.RebootHosts, HostRef{ID: h.ID, Name: h.Name, Fleet: h.Fleet, Note: joinMax(h.RebootPackages, 3)})
			}
		}
		if Stale(h, in.Now, in.StaleAfter) {
			o.Stale++
			f.Stale++
			if len(o.StaleHosts) < maxListed {
				o.StaleHosts = append(o.StaleHosts, HostRef{ID: h.ID, Name: h.Name, Fleet: h.Fleet, Note: ScanNote(h, in.Now)})
			}
		}
	}

	exposed, urgent := map[string]bool{}, map[string]bool{}
	perSev := map[events.Severity]map[string]bool{}
	perFleet := map[string]map[string]bool{}
	perAdv := map[string]*AdvisoryCount{}
	for _, r := range in.Open {
		if !r.PatchedAt.IsZero() {
			continue // patched, only waiting for a reboot
		}
		sev := r.Severity
		if !sev.Valid() || sev == "" {
			sev = events.SeverityUnknown
		}
		exposed[r.HostID] = true
		if sev.Rank() >= events.SeverityHigh.Rank() {
			urgent[r.HostID] = true
		}
		addSet(perSev, sev, r.HostID)
		addSet(perFleet, r.Fleet, r.HostID)
		f := fleet(r.Fleet)
		if sev.Rank() > f.Worst.Rank() || f.Worst == "" {
			f.Worst = sev
		}
		a := perAdv[r.AdvisoryID]
		if a == nil {
			a = &AdvisoryCount{ID: r.AdvisoryID, Severity: sev, Oldest: r.ExposedSince}
			perAdv[r.AdvisoryID] = a
		}
		a.Hosts++
		if r.ExposedSince.Before(a.Oldest) {
			a.Oldest = r.ExposedSince
		}
	}
	o.Exposed, o.Urgent = len(exposed), len(urgent)
	for _, s := range Severities {
		o.BySeverity = append(o.BySeverity, SeverityCount{Severity: s, Hosts: len(perSev[s])})
	}
	for name, hs := range perFleet {
		fleet(name).Exposed = len(hs)
	}
	for _, f := range fleets {
		o.Fleets = append(o.Fleets, *f)
	}
	slices.SortFunc(o.Fleets, func(a, b FleetRow) int {
		return cmp.Or(cmp.Compare(b.Exposed, a.Exposed), cmp.Compare(a.Fleet, b.Fleet))
	})
	for _, a := range perAdv {
		o.Advisories = append(o.Advisories, *a)
	}
	slices.SortFunc(o.Advisories, func(a, b AdvisoryCount) int {
		return cmp.Or(cmp.Compare(b.Severity.Rank(), a.Severity.Rank()), cmp.Compare(b.Hosts, a.Hosts),
			a.Oldest.Compare(b.Oldest), cmp.Compare(a.ID, b.ID))
	})
	o.Chart = BarChart(ExposedPerDay(in.History, in.Now, in.Days), 720, 160)
	return o
}

func addSet[K comparable](m map[K]map[string]bool, k K, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

// Stale reports whether a host has not been scanned within staleAfter (or never).
func Stale(h query.Host, now time.Time, staleAfter time.Duration) bool {
	return h.LastScan.IsZero() || now.Sub(h.LastScan) > staleAfter
}

// ScanNote says when a host was last scanned and whether that failed.
func ScanNote(h query.Host, now time.Time) string {
	s := "never scanned"
	if !h.LastScan.IsZero() {
		s = "last scan " + Ago(h.LastScan, now)
	}
	if h.LastScanError != "" {
		s += " · " + Clip(h.LastScanError, 80)
	}
	return s
}

func joinMax(ss []string, n int) string {
	out := ""
	for i, s := range ss {
		if i == n {
			return out + ", …"
		}
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}
