package events

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events/deb"
)

// Stream names. Event logs keep every event for a while (limits retention); FEEDS holds
// advisories submitted by external feed publishers for advisory-ingest; JOBS is the
// executor's work queue (an upgrade job is removed once acknowledged); DLQ keeps what a
// consumer could not process, with the reason.
const (
	StreamAdvisories = "ADVISORIES"
	StreamHosts      = "HOSTS"
	StreamRollouts   = "ROLLOUTS"
	StreamUpgrades   = "UPGRADES"
	StreamJobs       = "JOBS"
	StreamDLQ        = "DLQ"
	StreamFeeds      = "FEEDS"
)

type specKey struct {
	Type    string
	Version int
}

// Spec describes one event type of the catalog.
type Spec struct {
	Type    string
	Version int
	Stream  string
	Subject string
	New     func() Event // a pointer to a zero value, for decoding and schemas
}

var (
	catalog []Spec
	specs   = map[specKey]Spec{}
)

func register[E Event](stream, domain string) {
	var zero E
	s := Spec{
		Type:    zero.EventType(),
		Version: zero.SchemaVersion(),
		Stream:  stream,
		Subject: fmt.Sprintf("pf.%s.%s.v%d", domain, zero.EventType(), zero.SchemaVersion()),
		New:     func() Event { return any(new(E)).(Event) },
	}
	catalog = append(catalog, s)
	specs[specKey{s.Type, s.Version}] = s
}

func init() {
	register[AdvisorySubmitted](StreamFeeds, "feeds")
	register[SecurityAdvisoryPublished](StreamAdvisories, "advisories")
	register[AdvisoryWithdrawn](StreamAdvisories, "advisories")
	register[HostRegistered](StreamHosts, "hosts")
	register[HostDecommissioned](StreamHosts, "hosts")
	register[HostInventoryReported](StreamHosts, "hosts")
	register[HostDriftDetected](StreamHosts, "hosts")
	register[HostKeyMismatch](StreamHosts, "hosts")
	register[RebootRequired](StreamHosts, "hosts")
	register[HostRebooted](StreamHosts, "hosts")
	register[RolloutRequested](StreamRollouts, "rollouts")
	register[RolloutPlanned](StreamRollouts, "rollouts")
	register[RolloutApprovalRequested](StreamRollouts, "rollouts")
	register[RolloutApproved](StreamRollouts, "rollouts")
	register[RolloutRejected](StreamRollouts, "rollouts")
	register[RolloutPaused](StreamRollouts, "rollouts")
	register[RolloutResumed](StreamRollouts, "rollouts")
	register[RolloutCancelled](StreamRollouts, "rollouts")
	register[WaveStarted](StreamRollouts, "rollouts")
	register[WaveCompleted](StreamRollouts, "rollouts")
	register[RolloutHalted](StreamRollouts, "rollouts")
	register[RolloutCompleted](StreamRollouts, "rollouts")
	register[UpgradeRequested](StreamJobs, "jobs")
	register[UpgradeStarted](StreamUpgrades, "upgrades")
	register[UpgradeCompleted](StreamUpgrades, "upgrades")
	register[UpgradeFailed](StreamUpgrades, "upgrades")
}

// Catalog returns every event type, in a stable order.
func Catalog() []Spec { return append([]Spec(nil), catalog...) }

// Lookup returns the spec of an event type and version.
func Lookup(typ string, version int) (Spec, bool) {
	s, ok := specs[specKey{typ, version}]
	return s, ok
}

// SpecOf returns the spec of E.
func SpecOf[E Event]() Spec {
	var zero E
	s, ok := specs[specKey{zero.EventType(), zero.SchemaVersion()}]
	if !ok {
		panic(fmt.Sprintf("events: %s v%d is not in the catalog", zero.EventType(), zero.SchemaVersion()))
	}
	return s
}

// ---- shared value types ----

// Severity is normalised across feeds.
type Severity string

const (
	SeverityUnknown    Severity = "unknown"
	SeverityNegligible Severity = "negligible"
	SeverityLow        Severity = "low"
	SeverityMedium     Severity = "medium"
	SeverityHigh       Severity = "high"
	SeverityCritical   Severity = "critical"
)

var severityRank = map[Severity]int{SeverityUnknown: 0, SeverityNegligible: 1, SeverityLow: 2, SeverityMedium: 3, SeverityHigh: 4, SeverityCritical: 5}

// Rank orders severities: unknown < negligible < low < medium < high < critical.
func (s Severity) Rank() int { return severityRank[s] }

// Valid reports whether s is one of the normalised severities.
func (s Severity) Valid() bool { _, ok := severityRank[s]; return ok }

// Ecosystems an advisory can apply to.
const (
	EcosystemDebian   = "debian"
	EcosystemUbuntu   = "ubuntu"
	EcosystemRubyGems = "rubygems"
)

// VersionRange is an affected range in the ecosystem's own version ordering: versions at or
// above Introduced and below Fixed (or at or below LastAffected) are affected. An empty
// Introduced means "from the beginning".
type VersionRange struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
}

// BinaryPackage is a binary package built from an affected source package, at the version
// that carries the fix.
type BinaryPackage struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Affected says how one (distribution release, source package) is affected.
type Affected struct {
	Ecosystem string `json:"ecosystem"`         // debian | ubuntu | rubygems
	Release   string `json:"release,omitempty"` // os-release VERSION_ID: "12", "22.04"; empty for gems
	Pro       bool   `json:"pro,omitempty"`     // Ubuntu Pro (ESM) only
	Package   string `json:"package"`           // the source package (or gem)
	// FixedVersion is the first version that carries the fix; empty means no fix yet.
	FixedVersion string          `json:"fixed_version,omitempty"`
	Ranges       []VersionRange  `json:"ranges,omitempty"`
	Versions     []string        `json:"versions,omitempty"` // explicitly listed affected versions
	Binaries     []BinaryPackage `json:"binaries,omitempty"`
}

// PackageTarget is a binary package to upgrade to at least MinVersion (empty: the newest).
type PackageTarget struct {
	Name       string `json:"name"`
	MinVersion string `json:"min_version,omitempty"`
}

// PackageChange is a package whose installed version changed between two observations.
// An empty From means installed; an empty To means removed.
type PackageChange struct {
	Name          string `json:"name"`
	Arch          string `json:"arch,omitempty"`
	From          string `json:"from,omitempty"`
	To            string `json:"to,omitempty"`
	SourceName    string `json:"source_name,omitempty"`
	SourceVersion string `json:"source_version,omitempty"`
}

// PackageResult records one package of an upgrade job.
type PackageResult struct {
	Name   string `json:"name"`
	Before string `json:"before,omitempty"`
	After  string `json:"after"`
}

// Component is a detected component version (ruby, rails, passenger, docker, weave, nginx…).
type Component struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// OSRelease identifies a host's distribution.
type OSRelease struct {
	ID        string `json:"id"`         // debian | ubuntu
	VersionID string `json:"version_id"` // "12", "22.04"
	Codename  string `json:"codename,omitempty"`
}

// Rollout kinds, strategies and reboot policies.
const (
	KindSecurity   = "security"   // security fixes (from advisories, or every pending one on demand)
	KindFull       = "full"       // every pending update: new hosts, or on request
	KindDocker     = "docker"     // Docker/Weave to the manifest's pinned versions
	KindUnattended = "unattended" // only configure unattended-upgrades

	StrategyInPlace    = "in-place"
	StrategyReplace    = "replace"
	StrategyNotifyOnly = "notify-only"

	RebootNever      = "never"
	RebootIfRequired = "if-required"
	RebootAlways     = "always"
)

// HostSelector picks hosts for a rollout.
type HostSelector struct {
	Fleet string            `json:"fleet,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	Hosts []string          `json:"hosts,omitempty"`
}

// ---- validation helpers ----

type problems []string

func (p *problems) require(ok bool, format string, args ...any) {
	if !ok {
		*p = append(*p, fmt.Sprintf(format, args...))
	}
}

func (p *problems) nonEmpty(field, v string) {
	p.require(strings.TrimSpace(v) != "", "%s is required", field)
}

func (p *problems) check(field string, err error) {
	if err != nil {
		*p = append(*p, fmt.Sprintf("%s: %v", field, err))
	}
}

func (p *problems) packages(field string, ts []PackageTarget) {
	for i, t := range ts {
		p.check(fmt.Sprintf("%s[%d].name", field, i), deb.ValidPackageName(t.Name))
		if t.MinVersion != "" {
			p.check(fmt.Sprintf("%s[%d].min_version", field, i), deb.ValidVersion(t.MinVersion))
		}
	}
}

func (p *problems) oneOf(field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	*p = append(*p, fmt.Sprintf("%s %q is not one of %s", field, v, strings.Join(allowed, ", ")))
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "; "))
}

func notZero(t time.Time) bool { return !t.IsZero() }
