// Package policy reads fleet policies from YAML (gopkg.in/yaml.v3) and validates them. A
// policy says, per fleet, which hosts it covers and how their updates roll out: automatically
// or after approval, within which windows, in which waves, with which failure budget.
//
// Every error names the fleet, the field and the line, so an operator can fix the file
// without guessing.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/quantity"
	"github.com/patchfleet/patchfleet/services/planner/internal/window"
)

// What to do with security updates and with other updates.
const (
	Auto       = "auto"
	Approve    = "approve"
	NotifyOnly = "notify-only"
	Hold       = "hold"

	UnattendedSecurity = "security"
	UnattendedOff      = "off"
)

// AnyFleet as a fleet selector matches hosts of every inventory fleet.
const AnyFleet = "*"

// Fleet is the policy of one fleet.
type Fleet struct {
	Name string
	Line int // where the fleet starts in the file; 0 for built-in policies

	// Selector: hosts whose inventory fleet is FleetName ("*": any) and that carry every tag
	// of Match. With neither given, the inventory fleet must equal Name.
	FleetName string
	Match     map[string]string

	SecurityUpdates string          // auto | approve | notify-only
	MinSeverity     events.Severity // advisories below it are reported, not rolled out
	ApprovalDelay   time.Duration   // soak after publication
	// ExpressLane lets critical and known-exploited advisories skip ApprovalDelay.
	ExpressLane        bool
	OtherUpdates       string // hold | approve | auto
	Strategy           string // in-place | replace | notify-only
	Reboot             string // never | if-required | always
	Windows            window.Set
	Canary             int
	Waves              []quantity.Q // cumulative: "50%" means half the hosts are done after that wave
	MaxUnavailable     int
	MaxFailures        quantity.Q
	HealthCheck        string
	Bake               time.Duration // wait between a healthy wave and the next
	UnattendedUpgrades string        // security | off
	Approvers          []string
}

// NotifyOnly reports whether hosts of the fleet are told, never touched.
func (f *Fleet) NotifyOnly() bool {
	return f.Strategy == events.StrategyNotifyOnly || f.SecurityUpdates == NotifyOnly
}

// Matches reports whether a host of inventory fleet hostFleet with tags belongs to f.
func (f *Fleet) Matches(hostFleet string, tags map[string]string) bool {
	switch {
	case f.FleetName == "" && len(f.Match) == 0:
		if hostFleet != f.Name {
			return false
		}
	case f.FleetName != "" && f.FleetName != AnyFleet && hostFleet != f.FleetName:
		return false
	}
	for k, v := range f.Match {
		if tags[k] != v {
			return false
		}
	}
	return true
}

// MayApprove reports whether who may approve the fleet's rollouts: anyone when no approvers
// are listed.
func (f *Fleet) MayApprove(who string) bool {
	return len(f.Approvers) == 0 || slices.Contains(f.Approvers, who)
}

// Policy is the ordered list of fleet policies; a host belongs to the first that matches.
type Policy struct {
	Fleets []*Fleet
}

// For returns the policy of a host, or nil when no fleet policy covers it.
func (p *Policy) For(hostFleet string, tags map[string]string) *Fleet {
	for _, f := range p.Fleets {
		if f.Matches(hostFleet, tags) {
			return f
		}
	}
	return nil
}

// Fleet returns the fleet policy by name.
func (p *Policy) Fleet(name string) *Fleet {
	for _, f := range p.Fleets {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// UsesTags reports whether some fleet selects hosts by tag (then planning needs host tags).
func (p *Policy) UsesTags() bool {
	for _, f := range p.Fleets {
		if len(f.Match) > 0 {
			return true
		}
	}
	return false
}

// Default is the policy used without a policy file: every host in one fleet, security fixes
// automatically, other updates held, reboots left to people, any time, canary then halves.
func Default() *Policy {
	f := defaults("default")
	f.FleetName = AnyFleet
	return &Policy{Fleets: []*Fleet{f}}
}

func defaults(name string) *Fleet {
	return &Fleet{
		Name:               name,
		SecurityUpdates:    Auto,
		MinSeverity:        events.SeverityUnknown,
		ExpressLane:        true,
		OtherUpdates:       Hold,
		Strategy:           events.StrategyInPlace,
		Reboot:             events.RebootNever,
		Canary:             1,
		Waves:              []quantity.Q{{N: 50, Percent: true}, {N: 100, Percent: true}},
		MaxUnavailable:     1,
		UnattendedUpgrades: UnattendedOff,
	}
}

// FieldError is one problem in a policy file.
type FieldError struct {
	Fleet string // empty for file-level problems
	Field string
	Line  int
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Fleet != "" {
		fmt.Fprintf(&b, "fleet %q: ", e.Fleet)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Parse reads and validates a policy file. The error joins one *FieldError per problem.
func Parse(data []byte) (*Policy, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, &FieldError{Msg: fmt.Sprintf("not YAML: %v", err)}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &FieldError{Line: doc.Line, Msg: "want a mapping with a fleets list"}
	}
	p := &Policy{}
	var errs []error
	fail := func(fleet, field string, line int, format string, args ...any) {
		errs = append(errs, &FieldError{Fleet: fleet, Field: field, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	root := doc.Content[0]
	var fleets *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "fleets" {
			fail("", k.Value, k.Line, "unknown top-level key (want fleets)")
			continue
		}
		fleets = v
	}
	if fleets == nil || fleets.Kind != yaml.SequenceNode || len(fleets.Content) == 0 {
		fail("", "fleets", root.Line, "want a non-empty list of fleet policies")
		return nil, errors.Join(errs...)
	}
	seen := map[string]int{}
	for i, n := range fleets.Content {
		f, ferrs := parseFleet(i, n)
		errs = append(errs, ferrs...)
		if f == nil {
			continue
		}
		if prev, dup := seen[f.Name]; dup {
			fail(f.Name, "name", f.Line, "duplicate fleet name (first at line %d)", prev)
			continue
		}
		seen[f.Name] = f.Line
		p.Fleets = append(p.Fleets, f)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

var knownKeys = []string{
	"name", "fleet", "match", "security_updates", "min_severity", "approval_delay", "express_lane",
	"other_updates", "strategy", "reboot", "windows", "canary", "waves", "max_unavailable",
	"max_failures", "health_check", "bake", "unattended_upgrades", "approvers",
}

func parseFleet(i int, n *yaml.Node) (*Fleet, []error) {
	var errs []error
	label := fmt.Sprintf("fleets[%d]", i)
	fail := func(field string, line int, format string, args ...any) {
		errs = append(errs, &FieldError{Fleet: label, Field: field, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if n.Kind != yaml.MappingNode {
		fail("", n.Line, "want a mapping")
		return nil, errs
	}
	fields := map[string]*yaml.Node{}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		switch {
		case !slices.Contains(knownKeys, k.Value):
			fail(k.Value, k.Line, "unknown field")
		case fields[k.Value] != nil:
			fail(k.Value, k.Line, "given twice")
		default:
			fields[k.Value] = v
		}
	}
	name := ""
	if v := fields["name"]; v != nil && v.Kind == yaml.ScalarNode {
		name = strings.TrimSpace(v.Value)
	}
	if name == "" {
		fail("name", n.Line, "is required")
		return nil, errs
	}
	label = name
	f := defaults(name)
	f.Line = n.Line

	str := func(key string, dst *string, allowed ...string) {
		v := fields[key]
		if v == nil {
			return
		}
		if v.Kind != yaml.ScalarNode {
			fail(key, v.Line, "want a string")
			return
		}
		if len(allowed) > 0 && !slices.Contains(allowed, v.Value) {
			fail(key, v.Line, "%q is not one of %s", v.Value, strings.Join(allowed, ", "))
			return
		}
		*dst = v.Value
	}
	dur := func(key string, dst *time.Duration) {
		v := fields[key]
		if v == nil {
			return
		}
		d, err := parseDuration(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			fail(key, v.Line, "%q: want a duration like 0h, 30m, 24h or 2d", v.Value)
			return
		}
		*dst = d
	}
	integer := func(key string, dst *int, least int) {
		v := fields[key]
		if v == nil {
			return
		}
		k, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || k < least {
			fail(key, v.Line, "%q: want a whole number of at least %d", v.Value, least)
			return
		}
		*dst = k
	}
	strs := func(key string) ([]string, int, bool) {
		v := fields[key]
		if v == nil {
			return nil, 0, false
		}
		var out []string
		if err := v.Decode(&out); err != nil || v.Kind != yaml.SequenceNode {
			fail(key, v.Line, "want a list of strings")
			return nil, v.Line, false
		}
		return out, v.Line, true
	}

	str("fleet", &f.FleetName)
	if v := fields["match"]; v != nil {
		if err := v.Decode(&f.Match); err != nil || v.Kind != yaml.MappingNode {
			fail("match", v.Line, "want a mapping of tag: value")
		}
	}
	str("security_updates", &f.SecurityUpdates, Auto, Approve, NotifyOnly)
	var sev string
	str("min_severity", &sev)
	if sev != "" {
		if s := events.Severity(sev); s.Valid() {
			f.MinSeverity = s
		} else {
			fail("min_severity", fields["min_severity"].Line, "%q is not one of unknown, negligible, low, medium, high, critical", sev)
		}
	}
	dur("approval_delay", &f.ApprovalDelay)
	if v := fields["express_lane"]; v != nil {
		if err := v.Decode(&f.ExpressLane); err != nil {
			fail("express_lane", v.Line, "%q: want true or false", v.Value)
		}
	}
	str("other_updates", &f.OtherUpdates, Hold, Approve, Auto)
	str("strategy", &f.Strategy, events.StrategyInPlace, events.StrategyReplace, events.StrategyNotifyOnly)
	str("reboot", &f.Reboot, events.RebootNever, events.RebootIfRequired, events.RebootAlways)
	if ws, line, ok := strs("windows"); ok {
		set, err := window.ParseSet(ws)
		if err != nil {
			fail("windows", line, "%v", err)
		}
		f.Windows = set
	}
	integer("canary", &f.Canary, 0)
	if ws, line, ok := strs("waves"); ok {
		f.Waves = nil
		for j, w := range ws {
			q, err := quantity.Parse(w)
			if err != nil || q.N == 0 {
				if err == nil {
					err = fmt.Errorf("%q: a wave of nothing", w)
				}
				fail(fmt.Sprintf("waves[%d]", j), line, "%v", err)
				continue
			}
			if k := len(f.Waves); k > 0 && f.Waves[k-1].Percent == q.Percent && f.Waves[k-1].N >= q.N {
				fail(fmt.Sprintf("waves[%d]", j), line, "%q does not grow: waves are cumulative (10%%, 50%%, 100%%)", w)
			}
			f.Waves = append(f.Waves, q)
		}
		if len(ws) == 0 {
			fail("waves", line, "want at least one wave")
		}
	}
	integer("max_unavailable", &f.MaxUnavailable, 1)
	if v := fields["max_failures"]; v != nil {
		q, err := quantity.Parse(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			fail("max_failures", v.Line, "want a count (1) or a percentage (5%%)")
		}
		f.MaxFailures = q
	}
	str("health_check", &f.HealthCheck)
	dur("bake", &f.Bake)
	str("unattended_upgrades", &f.UnattendedUpgrades, UnattendedSecurity, UnattendedOff)
	if as, line, ok := strs("approvers"); ok {
		for _, a := range as {
			if strings.TrimSpace(a) == "" {
				fail("approvers", line, "an approver's name is empty")
			}
		}
		f.Approvers = as
	}
	if f.Strategy == events.StrategyNotifyOnly && f.SecurityUpdates != NotifyOnly && fields["security_updates"] != nil {
		fail("security_updates", fields["security_updates"].Line, "%q contradicts strategy notify-only", f.SecurityUpdates)
	}
	for k, v := range f.Match {
		if strings.TrimSpace(k) == "" || v == "" {
			fail("match", fields["match"].Line, "tag %q: want a non-empty tag and value", k)
		}
	}
	return f, errs
}

// parseDuration is time.ParseDuration that also reads days ("2d").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		return 0, errors.New("negative")
	}
	return d, err
}

// Names returns the fleet names, in file order.
func (p *Policy) Names() []string {
	out := make([]string, len(p.Fleets))
	for i, f := range p.Fleets {
		out[i] = f.Name
	}
	return out
}

// Contract renders f as the query contract shows it.
func (f *Fleet) Contract() query.FleetPolicy {
	out := query.FleetPolicy{
		Name: f.Name, Fleet: f.FleetName, Match: f.Match, SecurityUpdates: f.SecurityUpdates,
		MinSeverity: string(f.MinSeverity), ApprovalDelay: f.ApprovalDelay.String(), ExpressLane: f.ExpressLane,
		OtherUpdates: f.OtherUpdates, Strategy: f.Strategy, Reboot: f.Reboot, Canary: f.Canary,
		MaxUnavailable: f.MaxUnavailable, MaxFailures: f.MaxFailures.String(), HealthCheck: f.HealthCheck,
		Bake: f.Bake.String(), UnattendedUpgrades: f.UnattendedUpgrades, Approvers: f.Approvers,
	}
	for _, w := range f.Windows {
		out.Windows = append(out.Windows, w.String())
	}
	for _, w := range f.Waves {
		out.Waves = append(out.Waves, w.String())
	}
	return out
}
