// Package advisory is the normalised advisory model every feed parser
// produces: one shape for OSV, the Debian security tracker and Ubuntu's
// notices, validated so that a package name or version that reaches the
// planner (and later a remote shell) is known to be well formed.
package advisory

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/gemver"
)

// Feeds an advisory can come from (events.SecurityAdvisoryPublished.Source).
const (
	SourceOSV            = "osv"
	SourceDebianTracker  = "debian-tracker"
	SourceUbuntuNotices  = "ubuntu-notices"
	SourceDebianDSAList  = "debian-dsa-list"
	maxSummaryLen        = 8 << 10
	maxIDLen             = 128
	maxReleaseLen        = 16
	maxGemNameLen        = 128
	maxReferenceLen      = 2048
	maxAffectedPerRecord = 100_000
)

// ErrNoAffected marks a record that is well formed but names nothing in an
// ecosystem Patchfleet handles (or only releases that are not affected). It
// is skipped, not reported as bad.
var ErrNoAffected = errors.New("no affected package in a supported ecosystem")

// Advisory is one advisory, normalised.
type Advisory struct {
	ID             string
	Source         string   // SourceOSV, SourceDebianTracker, SourceUbuntuNotices
	Aliases        []string // CVE ids, sorted
	Title          string
	Summary        string
	Published      time.Time
	Modified       time.Time
	Severity       events.Severity
	SourceSeverity string // the feed's own value: a CVSS vector, "high", "medium**"…
	KnownExploited bool
	Withdrawn      time.Time // zero unless withdrawn
	Affected       []events.Affected
	References     []string

	// Notes says what was skipped while reading the record (an unknown
	// ecosystem, a range type we do not use). Not content: not hashed.
	Notes []string
}

// Event is the advisory as the revision-th SecurityAdvisoryPublished.
func (a Advisory) Event(revision int) events.SecurityAdvisoryPublished {
	n := a.Normalized()
	return events.SecurityAdvisoryPublished{
		AdvisoryID:     n.ID,
		Revision:       revision,
		Source:         n.Source,
		Aliases:        n.Aliases,
		Title:          n.Title,
		Summary:        n.Summary,
		Published:      n.Published,
		Modified:       n.Modified,
		Severity:       n.Severity,
		SourceSeverity: n.SourceSeverity,
		KnownExploited: n.KnownExploited,
		Affected:       n.Affected,
		References:     n.References,
	}
}

// WithdrawnEvent announces the withdrawal of a withdrawn advisory (Withdrawn
// not zero); Event is for every other revision.
func (a Advisory) WithdrawnEvent(revision int) events.AdvisoryWithdrawn {
	return events.AdvisoryWithdrawn{AdvisoryID: a.ID, Revision: revision, Withdrawn: a.Withdrawn.UTC()}
}

// hashed is what ContentHash covers. Modified is left out on purpose: feeds
// bump it when they regenerate a record without changing what it says, and
// that must not publish a new revision. Notes are diagnostics.
type hashed struct {
	ID             string            `json:"id"`
	Source         string            `json:"source"`
	Aliases        []string          `json:"aliases"`
	Title          string            `json:"title"`
	Summary        string            `json:"summary"`
	Published      time.Time         `json:"published"`
	Severity       events.Severity   `json:"severity"`
	SourceSeverity string            `json:"source_severity"`
	KnownExploited bool              `json:"known_exploited"`
	Withdrawn      time.Time         `json:"withdrawn"`
	Affected       []events.Affected `json:"affected"`
	References     []string          `json:"references"`
}

// ContentHash is a stable digest of the normalised content ("sha256:…"):
// equal for two reads of the same advisory whatever the order of lists in
// the feed, different as soon as anything meaningful (a fixed version, a
// release, the severity) changes.
func (a Advisory) ContentHash() string {
	n := a.Normalized()
	b, err := json.Marshal(hashed{
		ID: n.ID, Source: n.Source, Aliases: n.Aliases, Title: n.Title, Summary: n.Summary,
		Published: n.Published.UTC(), Severity: n.Severity, SourceSeverity: n.SourceSeverity,
		KnownExploited: n.KnownExploited, Withdrawn: n.Withdrawn.UTC(), Affected: n.Affected,
		References: n.References,
	})
	if err != nil {
		// Only strings, bools and times: Marshal cannot fail.
		panic(fmt.Sprintf("advisory: hash %s: %v", a.ID, err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Normalized returns a deep copy with every list in canonical order and
// without duplicates: aliases and references sorted, affected entries for
// the same (ecosystem, release, Pro, package) merged, versions in the
// ecosystem's own order, binaries by name. Times are in UTC.
func (a Advisory) Normalized() Advisory {
	n := a
	n.Aliases = sortedUnique(a.Aliases)
	n.References = sortedUnique(a.References)
	n.Notes = slices.Clone(a.Notes)
	n.Published, n.Modified, n.Withdrawn = a.Published.UTC(), a.Modified.UTC(), a.Withdrawn.UTC()
	if a.Severity == "" {
		n.Severity = events.SeverityUnknown
	}

	merged := map[affectedKey]*events.Affected{}
	var keys []affectedKey
	for _, af := range a.Affected {
		k := affectedKey{af.Ecosystem, af.Release, af.Pro, af.Package}
		m, ok := merged[k]
		if !ok {
			c := af
			c.Ranges, c.Versions, c.Binaries = slices.Clone(af.Ranges), slices.Clone(af.Versions), slices.Clone(af.Binaries)
			merged[k] = &c
			keys = append(keys, k)
			continue
		}
		m.Ranges = append(m.Ranges, af.Ranges...)
		m.Versions = append(m.Versions, af.Versions...)
		m.Binaries = append(m.Binaries, af.Binaries...)
		m.FixedVersion = higher(af.Ecosystem, m.FixedVersion, af.FixedVersion)
	}
	slices.SortFunc(keys, func(x, y affectedKey) int {
		return cmp.Or(cmp.Compare(x.eco, y.eco), cmp.Compare(x.release, y.release),
			cmp.Compare(boolInt(x.pro), boolInt(y.pro)), cmp.Compare(x.pkg, y.pkg))
	})
	n.Affected = nil
	if len(keys) > 0 {
		n.Affected = make([]events.Affected, 0, len(keys))
	}
	for _, k := range keys {
		af := merged[k]
		order := versionOrder(af.Ecosystem)
		slices.SortFunc(af.Versions, order)
		af.Versions = slices.Compact(af.Versions)
		slices.SortFunc(af.Ranges, func(x, y events.VersionRange) int {
			if c := order(x.Introduced, y.Introduced); c != 0 {
				return c
			}
			if c := order(x.Fixed, y.Fixed); c != 0 {
				return c
			}
			return order(x.LastAffected, y.LastAffected)
		})
		af.Ranges = slices.Compact(af.Ranges)
		slices.SortFunc(af.Binaries, func(x, y events.BinaryPackage) int {
			// Versions only break ties: parsing them for every
			// comparison would dominate the cost of a record.
			if c := cmp.Compare(x.Name, y.Name); c != 0 {
				return c
			}
			return order(x.Version, y.Version)
		})
		af.Binaries = slices.Compact(af.Binaries)
		if len(af.Ranges) == 0 {
			af.Ranges = nil
		}
		if len(af.Versions) == 0 {
			af.Versions = nil
		}
		if len(af.Binaries) == 0 {
			af.Binaries = nil
		}
		n.Affected = append(n.Affected, *af)
	}
	return n
}

type affectedKey struct {
	eco, release string
	pro          bool
	pkg          string
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// versionOrder orders versions of an ecosystem, falling back to byte order
// for anything its parser refuses (Validate reports those) so that sorting
// stays total and deterministic.
func versionOrder(eco string) func(a, b string) int {
	return func(a, b string) int {
		if a == b {
			return 0
		}
		if a == "" || b == "" {
			return cmp.Compare(a, b)
		}
		var c int
		var err error
		if eco == events.EcosystemRubyGems {
			c, err = gemver.Compare(a, b)
		} else {
			c, err = deb.Compare(a, b)
		}
		if err != nil || c == 0 {
			// Equal-ordering distinct strings (1.0 and 1.0.0 for gems) still
			// need a fixed order.
			return cmp.Compare(a, b)
		}
		return c
	}
}

// higher returns the later of two fixed versions; "" (no fix) loses to any fix.
func higher(eco, a, b string) string {
	if versionOrder(eco)(a, b) >= 0 {
		return a
	}
	return b
}

// HighestFixed returns the highest fixed version among ranges: with several
// ranges (a gem fixed on several release lines) it is the fix on the newest
// line, and the ranges stay authoritative.
func HighestFixed(eco string, ranges []events.VersionRange) string {
	fixed := ""
	for _, r := range ranges {
		fixed = higher(eco, fixed, r.Fixed)
	}
	return fixed
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+-]*$`)
	releasePattern = regexp.MustCompile(`^(unstable|[0-9]+(\.[0-9]+)?)$`)
	gemNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]*[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// Validate checks everything a consumer relies on: an id, a source, a
// modification time, a known severity, at least one affected package, and
// every package name and version well formed for its ecosystem (Debian
// policy for debian and ubuntu, Gem::Version for rubygems). The error names
// the advisory and each problem.
func (a Advisory) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case a.ID == "":
		add("id is empty")
	case len(a.ID) > maxIDLen || !idPattern.MatchString(a.ID):
		add("id %.64q is not a plain identifier", a.ID)
	}
	if a.Source == "" {
		add("source is empty")
	}
	if a.Modified.IsZero() {
		add("modified time is missing")
	}
	if !a.Severity.Valid() {
		add("severity %q is not a normalised severity", a.Severity)
	}
	for _, id := range a.Aliases {
		if len(id) > maxIDLen || !idPattern.MatchString(id) {
			add("alias %.64q is not a plain identifier", id)
		}
	}
	for _, r := range a.References {
		if len(r) > maxReferenceLen || strings.ContainsFunc(r, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
			add("reference %.64q is too long or holds control characters", r)
		}
	}
	if len(a.Affected) > maxAffectedPerRecord {
		add("%d affected entries, more than %d", len(a.Affected), maxAffectedPerRecord)
	}
	for i, af := range a.Affected {
		if err := validateAffected(af); err != nil {
			errs = append(errs, fmt.Errorf("affected[%d] %s %s %s: %w", i, af.Ecosystem, af.Release, af.Package, err))
		}
	}
	if len(a.Affected) == 0 && a.Withdrawn.IsZero() {
		errs = append(errs, ErrNoAffected)
	}
	if len(errs) == 0 {
		return nil
	}
	id := a.ID
	if id == "" {
		id = "(no id)"
	}
	return fmt.Errorf("advisory %.64s: %w", id, errors.Join(errs...))
}

func validateAffected(af events.Affected) error {
	var versionOK func(string) error
	switch af.Ecosystem {
	case events.EcosystemDebian, events.EcosystemUbuntu:
		if len(af.Release) > maxReleaseLen || !releasePattern.MatchString(af.Release) {
			return fmt.Errorf("release %.32q is not a VERSION_ID", af.Release)
		}
		if af.Pro && af.Ecosystem != events.EcosystemUbuntu {
			return errors.New("only ubuntu has Pro releases")
		}
		if err := deb.ValidPackageName(af.Package); err != nil {
			return err
		}
		versionOK = deb.ValidVersion
	case events.EcosystemRubyGems:
		if af.Release != "" || af.Pro {
			return errors.New("a gem has no release")
		}
		if len(af.Package) > maxGemNameLen || !gemNamePattern.MatchString(af.Package) {
			return fmt.Errorf("invalid gem name %.64q", af.Package)
		}
		versionOK = gemver.Valid
	default:
		return fmt.Errorf("unsupported ecosystem %.32q", af.Ecosystem)
	}
	// Each distinct version is checked once, so a bad fixed version that
	// also closes a range is reported once.
	seen := map[string]bool{}
	var errs []error
	check := func(what, v string) {
		if v == "" || seen[v] {
			return
		}
		seen[v] = true
		if err := versionOK(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	check("fixed version", af.FixedVersion)
	for _, r := range af.Ranges {
		if r.Introduced != "0" {
			check("introduced", r.Introduced)
		}
		check("fixed", r.Fixed)
		check("last affected", r.LastAffected)
	}
	for _, v := range af.Versions {
		check("affected version", v)
	}
	for _, b := range af.Binaries {
		if af.Ecosystem == events.EcosystemRubyGems {
			errs = append(errs, errors.New("a gem has no binary packages"))
			break
		}
		if err := deb.ValidPackageName(b.Name); err != nil {
			errs = append(errs, fmt.Errorf("binary: %w", err))
		}
		check("binary "+b.Name+" version", b.Version)
	}
	return errors.Join(errs...)
}

// Truncate cuts a free-text field to a size an event can carry, on a rune
// boundary, marking the cut.
func Truncate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxSummaryLen {
		return s
	}
	cut := maxSummaryLen
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
