package events

import (
	"fmt"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events/deb"
)

// SecurityAdvisoryPublished announces one revision of a normalised advisory. It is published
// once per (advisory id, revision); re-reading an unchanged feed publishes nothing.
type SecurityAdvisoryPublished struct {
	AdvisoryID     string     `json:"advisory_id"` // DSA-5000-1, USN-6409-1, GHSA-…, CVE-…
	Revision       int        `json:"revision"`    // 1 for the first version seen, +1 per change
	Source         string     `json:"source"`      // the feed it came from: osv, debian-tracker, ubuntu-notices
	Aliases        []string   `json:"aliases,omitempty"`
	Title          string     `json:"title,omitempty"`
	Summary        string     `json:"summary,omitempty"`
	Published      time.Time  `json:"published"`
	Modified       time.Time  `json:"modified"`
	Severity       Severity   `json:"severity"`
	SourceSeverity string     `json:"source_severity,omitempty"` // the feed's own value (a CVSS vector, "high", …)
	KnownExploited bool       `json:"known_exploited,omitempty"`
	Affected       []Affected `json:"affected"`
	References     []string   `json:"references,omitempty"`
}

func (SecurityAdvisoryPublished) EventType() string  { return "SecurityAdvisoryPublished" }
func (SecurityAdvisoryPublished) SchemaVersion() int { return 1 }

func (e SecurityAdvisoryPublished) Validate() error {
	var p problems
	p.nonEmpty("advisory_id", e.AdvisoryID)
	p.require(e.Revision >= 1, "revision must be at least 1")
	p.nonEmpty("source", e.Source)
	p.require(e.Severity.Valid(), "severity %q is not a normalised severity", e.Severity)
	p.require(notZero(e.Modified), "modified is required")
	p.require(len(e.Affected) > 0, "affected is empty")
	for i, a := range e.Affected {
		a.validate(&p, i)
	}
	return p.err()
}

// validate checks affected[i]. Every advisory published is checked, most of them
// with dozens of binaries, so a field's name is spelled out only for a problem.
func (a Affected) validate(p *problems, i int) {
	at := func(field string) string { return fmt.Sprintf("affected[%d]%s", i, field) }
	switch a.Ecosystem {
	case EcosystemDebian, EcosystemUbuntu:
	case EcosystemRubyGems:
		if strings.TrimSpace(a.Package) == "" {
			p.nonEmpty(at(".package"), a.Package)
		}
		return
	default:
		p.oneOf(at(".ecosystem"), a.Ecosystem, EcosystemDebian, EcosystemUbuntu, EcosystemRubyGems)
	}
	if strings.TrimSpace(a.Release) == "" {
		p.nonEmpty(at(".release"), a.Release)
	}
	if err := deb.ValidPackageName(a.Package); err != nil {
		p.check(at(".package"), err)
	}
	version := func(v string) {
		if v == "" {
			return
		}
		if err := deb.ValidVersion(v); err != nil {
			p.check(at(" version"), err)
		}
	}
	version(a.FixedVersion)
	for _, v := range a.Versions {
		version(v)
	}
	for _, r := range a.Ranges {
		version(r.Fixed)
		version(r.LastAffected)
		if r.Introduced != "0" {
			version(r.Introduced)
		}
	}
	for j, b := range a.Binaries {
		if err := deb.ValidPackageName(b.Name); err != nil {
			p.check(at(fmt.Sprintf(".binaries[%d].name", j)), err)
		}
		if b.Version != "" {
			if err := deb.ValidVersion(b.Version); err != nil {
				p.check(at(fmt.Sprintf(".binaries[%d].version", j)), err)
			}
		}
	}
}

// AdvisoryWithdrawn says an advisory was withdrawn by its publisher: plans stop using it.
type AdvisoryWithdrawn struct {
	AdvisoryID string    `json:"advisory_id"`
	Revision   int       `json:"revision"`
	Withdrawn  time.Time `json:"withdrawn"`
	Reason     string    `json:"reason,omitempty"`
}

func (AdvisoryWithdrawn) EventType() string  { return "AdvisoryWithdrawn" }
func (AdvisoryWithdrawn) SchemaVersion() int { return 1 }

func (e AdvisoryWithdrawn) Validate() error {
	var p problems
	p.nonEmpty("advisory_id", e.AdvisoryID)
	p.require(e.Revision >= 1, "revision must be at least 1")
	p.require(notZero(e.Withdrawn), "withdrawn is required")
	return p.err()
}

// AdvisorySubmitted is how an external feed publisher hands a normalised advisory to
// advisory-ingest (tools/feedpub, or a publisher in another language following the JSON
// Schema). Ingest stores it, decides whether it is new or changed, and publishes
// SecurityAdvisoryPublished once per revision; resubmitting an unchanged advisory publishes
// nothing.
type AdvisorySubmitted struct {
	AdvisoryID     string     `json:"advisory_id"`
	Source         string     `json:"source"`           // the feed: osv, debian-tracker, ubuntu-notices, or the publisher's name
	Origin         string     `json:"origin,omitempty"` // where in the feed: a file, zip entry or URL
	Aliases        []string   `json:"aliases,omitempty"`
	Title          string     `json:"title,omitempty"`
	Summary        string     `json:"summary,omitempty"`
	Published      time.Time  `json:"published"`
	Modified       time.Time  `json:"modified"`
	Withdrawn      *time.Time `json:"withdrawn,omitempty"`
	Severity       Severity   `json:"severity"`
	SourceSeverity string     `json:"source_severity,omitempty"`
	KnownExploited bool       `json:"known_exploited,omitempty"`
	Affected       []Affected `json:"affected"`
	References     []string   `json:"references,omitempty"`
}

func (AdvisorySubmitted) EventType() string  { return "AdvisorySubmitted" }
func (AdvisorySubmitted) SchemaVersion() int { return 1 }

func (e AdvisorySubmitted) Validate() error {
	var p problems
	p.nonEmpty("advisory_id", e.AdvisoryID)
	p.nonEmpty("source", e.Source)
	p.require(e.Severity.Valid(), "severity %q is not a normalised severity", e.Severity)
	p.require(notZero(e.Modified), "modified is required")
	p.require(len(e.Affected) > 0 || e.Withdrawn != nil, "affected is empty")
	for i, a := range e.Affected {
		a.validate(&p, i)
	}
	return p.err()
}
