package view

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// FilterPackages returns the packages whose name or source package contains q (any case).
func FilterPackages(pkgs []query.Package, q string) []query.Package {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return pkgs
	}
	var out []query.Package
	for _, p := range pkgs {
		if strings.Contains(strings.ToLower(p.Name), q) || strings.Contains(strings.ToLower(p.SourceName), q) {
			out = append(out, p)
		}
	}
	return out
}

// FixRow is one place an advisory applies: a release's source package and its fix.
type FixRow struct {
	Where    string // "debian 12", "ubuntu 22.04 (Pro)", "rubygems"
	Package  string
	Fixed    string // "no fix yet" when empty
	Binaries string
}

// ExposedRow is one exposed package on one host.
type ExposedRow struct {
	HostID, Name, Fleet, OS string
	Package, Installed      string
	Fixed                   string
	ExposedSince            time.Time
}

// AdvisoryPage is the advisory page.
type AdvisoryPage struct {
	Advisory query.Advisory
	Fixes    []FixRow
	Exposed  []ExposedRow
	Hosts    int // distinct exposed hosts
	Rollouts []query.RolloutSummary
	Patched  int      // hosts the compliance view has as patched
	Refs     []string // the advisory's http(s) references
	More     bool
}

// BuildAdvisory assembles the advisory page.
func BuildAdvisory(a query.Advisory, exposed []query.ExposedHost, rollouts []query.RolloutSummary, recs []query.ComplianceRecord, more bool) AdvisoryPage {
	p := AdvisoryPage{Advisory: a, Rollouts: rollouts, More: more}
	for _, ref := range a.References {
		if strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "http://") {
			p.Refs = append(p.Refs, ref)
		}
	}
	for _, af := range a.Affected {
		where := af.Ecosystem
		if af.Release != "" {
			where += " " + af.Release
		}
		if af.Pro {
			where += " (Pro)"
		}
		fixed := af.FixedVersion
		if fixed == "" {
			fixed = "no fix yet"
		}
		var bins []string
		for _, b := range af.Binaries {
			bins = append(bins, b.Name)
		}
		p.Fixes = append(p.Fixes, FixRow{Where: where, Package: af.Package, Fixed: fixed, Binaries: joinMax(bins, 6)})
	}
	since := map[string]time.Time{}
	for _, r := range recs {
		switch {
		case !r.RetiredAt.IsZero(): // decommissioned unpatched: neither exposed nor patched
		case r.PatchedAt.IsZero():
			since[r.HostID] = r.ExposedSince
		default:
			p.Patched++
		}
	}
	for _, h := range exposed {
		p.Hosts++
		for _, pk := range h.Packages {
			fixed := pk.Fixed
			if fixed == "" {
				fixed = "no fix yet"
			}
			p.Exposed = append(p.Exposed, ExposedRow{HostID: h.HostID, Name: h.Name, Fleet: h.Fleet, OS: h.OS.ID + " " + h.OS.VersionID,
				Package: pk.Name, Installed: pk.Installed, Fixed: fixed, ExposedSince: since[h.HostID]})
		}
	}
	slices.SortStableFunc(p.Exposed, func(x, y ExposedRow) int {
		return cmp.Or(cmp.Compare(x.Fleet, y.Fleet), cmp.Compare(x.Name, y.Name), cmp.Compare(x.Package, y.Package))
	})
	return p
}

// ComplianceGroup summarises records per advisory or per host.
type ComplianceGroup struct {
	Key      string // advisory id or host id
	Fleet    string // per host
	Severity events.Severity
	Records  int
	Open     int // still exposed
	Reboot   int // patched, reboot pending
	Longest  time.Duration
	Earliest time.Time
}

// GroupCompliance groups records by advisory (byHost false) or by host, the longest
// exposure first.
func GroupCompliance(recs []query.ComplianceRecord, byHost bool) []ComplianceGroup {
	groups := map[string]*ComplianceGroup{}
	var keys []string
	for _, r := range recs {
		k := r.AdvisoryID
		if byHost {
			k = r.HostID
		}
		g := groups[k]
		if g == nil {
			g = &ComplianceGroup{Key: k, Earliest: r.ExposedSince}
			groups[k] = g
			keys = append(keys, k)
		}
		if byHost {
			g.Fleet = r.Fleet
		}
		if r.Severity.Rank() > g.Severity.Rank() || g.Severity == "" {
			g.Severity = r.Severity
		}
		g.Records++
		switch {
		case !r.RetiredAt.IsZero():
		case r.PatchedAt.IsZero():
			g.Open++
		case r.RebootPending:
			g.Reboot++
		}
		g.Longest = max(g.Longest, r.Vulnerable)
		if r.ExposedSince.Before(g.Earliest) {
			g.Earliest = r.ExposedSince
		}
	}
	out := make([]ComplianceGroup, 0, len(keys))
	for _, k := range keys {
		out = append(out, *groups[k])
	}
	slices.SortStableFunc(out, func(a, b ComplianceGroup) int {
		return cmp.Or(cmp.Compare(b.Open, a.Open), cmp.Compare(b.Longest, a.Longest), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// ComplianceHeader is the CSV export's header.
var ComplianceHeader = []string{"advisory_id", "host_id", "fleet", "severity", "exposed_since", "patched_at", "retired_at", "reboot_pending", "rollout_id", "vulnerable_hours"}

// WriteComplianceCSV writes records as CSV (RFC 4180, times in RFC 3339 UTC). Cells that a
// spreadsheet would take for a formula are prefixed with a quote.
func WriteComplianceCSV(w io.Writer, recs []query.ComplianceRecord) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(ComplianceHeader); err != nil {
		return fmt.Errorf("write csv header: %w", err)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, r := range recs {
		row := []string{cell(r.AdvisoryID), cell(r.HostID), cell(r.Fleet), cell(string(r.Severity)), ts(r.ExposedSince), ts(r.PatchedAt),
			ts(r.RetiredAt), fmt.Sprint(r.RebootPending), cell(r.RolloutID), fmt.Sprintf("%.1f", r.Vulnerable.Hours())}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv row %s/%s: %w", r.AdvisoryID, r.HostID, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// cell neutralises spreadsheet formulas (CSV injection).
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
