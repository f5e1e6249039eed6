// Package plan turns exposure and fleet policy into rollout plans: which hosts, exactly which
// binary packages at which minimum versions, in which waves, under which rules — and the plan
// hash that an approval names. It takes values and returns values; the planner's IO feeds it.
package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/budget"
	"github.com/patchfleet/patchfleet/services/planner/internal/manifest"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
	"github.com/patchfleet/patchfleet/services/planner/internal/waves"
)

// Advisory is what planning needs to know about an advisory.
type Advisory struct {
	ID             string
	Severity       events.Severity
	KnownExploited bool
	Published      time.Time
}

// Host is an exposed (or selected) host: where it belongs and what makes it exposed.
type Host struct {
	ID       string
	Fleet    string // inventory fleet
	Tags     map[string]string
	New      bool
	Packages []query.ExposedPackage // for security plans from advisories
}

// HostPlan is one host's job.
type HostPlan struct {
	HostID string
	*Job
}

// Job is what a host's job does. The hosts planned alike share one (a fleet's hosts are
// mostly planned alike), so it is never changed once planned.
type Job struct {
	Packages   []events.PackageTarget // empty: what the kind implies (all security updates, full…)
	Advisories []string
	Components []events.Component // docker: the pins the host needs
}

// Fleet is the plan of one fleet.
type Fleet struct {
	Policy              *policy.Fleet
	Kind                string
	Advisories          []string
	Severity            events.Severity
	RequestID           string
	Hosts               []HostPlan // by host id
	Waves               [][]string
	Strategy            string
	Reboot              string
	NeedsApproval       bool
	NotBefore           time.Time // approval delay; zero: at once
	IgnoreWindows       bool      // a new host is not serving yet: no window to wait for
	MaxFailures         int
	MaxUnavailable      int
	HealthCheck         string
	ConfigureUnattended bool
	Hash                string
	// Skipped says why nothing rolls out for this fleet (below min_severity, nothing to fix).
	Skipped string
}

// NotifyOnly reports whether the plan is only announced.
func (f *Fleet) NotifyOnly() bool { return f.Strategy == events.StrategyNotifyOnly }

// HostCount is the number of hosts in the plan.
func (f *Fleet) HostCount() int { return len(f.Hosts) }

// Result is every fleet's plan and the hosts no policy covers.
type Result struct {
	Fleets    []*Fleet
	Unmatched []string
}

// Covered lists, per host, the packages open jobs already upgrade: planning leaves them out
// so a host is never given the same fix twice.
type Covered map[string][]events.PackageTarget

// Security plans the security fixes for advisories on the exposed hosts. Several advisories
// for one host merge into one job; a package already at its fixed version, a package without
// a fix and a package an open job already covers drop out, and so does a host left with
// nothing to do.
func Security(p *policy.Policy, advisories map[string]Advisory, hosts []Host, covered Covered, now time.Time) Result {
	var res Result
	vc := versionCache{}
	// Each host's fleet, then per fleet the hosts' indices: a fleet can hold every host of a
	// large exposure, so nothing is copied or grown host by host.
	fleetOf := make([]*policy.Fleet, len(hosts))
	count := map[*policy.Fleet]int{}
	for i, h := range hosts {
		f := p.For(h.Fleet, h.Tags)
		if f == nil {
			res.Unmatched = append(res.Unmatched, h.ID)
			continue
		}
		fleetOf[i] = f
		count[f]++
	}
	for _, f := range p.Fleets {
		n, ok := count[f]
		if !ok {
			continue
		}
		fp := &Fleet{Policy: f, Kind: events.KindSecurity, Hosts: make([]HostPlan, 0, n)}
		// Advisories below the fleet's threshold are reported, not rolled out.
		eligible := map[string]Advisory{}
		for id, a := range advisories {
			if a.Severity.Rank() >= f.MinSeverity.Rank() {
				eligible[id] = a
			}
		}
		if f.OtherUpdates == policy.Auto {
			fp.Kind = events.KindFull // everything pending goes with the fixes
		}
		used := map[string]bool{}
		// The hosts of an exposure group come one after the other and share one exposed list:
		// their jobs are the same unless an open job covers part of one, so the last list's
		// job is kept and shared.
		var last *query.ExposedPackage
		var lastLen int
		var lastJob, counted *Job
		for i, h := range hosts {
			if fleetOf[i] != f {
				continue
			}
			var job *Job
			c := covered[h.ID]
			switch {
			case len(c) > 0 || len(h.Packages) == 0:
				job = merge(h, eligible, c, vc)
			case &h.Packages[0] == last && len(h.Packages) == lastLen:
				job = lastJob
			default:
				job = merge(h, eligible, nil, vc)
				last, lastLen, lastJob = &h.Packages[0], len(h.Packages), job
			}
			if len(job.Packages) == 0 {
				continue
			}
			if job != counted {
				for _, a := range job.Advisories {
					used[a] = true
				}
				counted = job
			}
			fp.Hosts = append(fp.Hosts, HostPlan{HostID: h.ID, Job: job})
		}
		fp.Advisories = slices.Sorted(maps.Keys(used))
		if len(fp.Advisories) == 0 {
			fp.Advisories = slices.Sorted(maps.Keys(advisories))
		}
		for _, id := range fp.Advisories {
			if s := advisories[id].Severity; s.Rank() > fp.Severity.Rank() || fp.Severity == "" {
				fp.Severity = s
			}
		}
		switch {
		case len(eligible) == 0:
			fp.Skipped = fmt.Sprintf("below min_severity %s", f.MinSeverity)
		case len(fp.Hosts) == 0:
			fp.Skipped = "nothing to upgrade: fixed, covered by an open rollout, or no fix yet"
		}
		fp.NeedsApproval = f.SecurityUpdates == policy.Approve
		fp.NotBefore = notBefore(f, eligible, used)
		finish(fp, f, "", false)
		res.Fleets = append(res.Fleets, fp)
	}
	return res
}

// merge computes one host's job: per binary package the highest fixed version any eligible
// advisory asks for.
func merge(h Host, eligible map[string]Advisory, covered []events.PackageTarget, vc versionCache) *Job {
	// A host has a few exposed packages: slices, not maps, keep this cheap across a fleet.
	var targets []events.PackageTarget
	var advs []string
	for _, p := range h.Packages {
		if _, ok := eligible[p.AdvisoryID]; !ok {
			continue // below the fleet's min_severity (callers attribute every package)
		}
		if p.Fixed == "" {
			continue // no fix yet: nothing to install
		}
		if c, ok := vc.compare(p.Installed, p.Fixed); ok && c >= 0 {
			continue // already satisfied
		}
		i := slices.IndexFunc(targets, func(t events.PackageTarget) bool { return t.Name == p.Name })
		switch {
		case i < 0:
			targets = append(targets, events.PackageTarget{Name: p.Name, MinVersion: p.Fixed})
		case vc.newer(p.Fixed, targets[i].MinVersion):
			targets[i].MinVersion = p.Fixed
		}
		if !slices.Contains(advs, p.AdvisoryID) {
			advs = append(advs, p.AdvisoryID)
		}
	}
	targets = slices.DeleteFunc(targets, func(t events.PackageTarget) bool {
		return slices.ContainsFunc(covered, func(c events.PackageTarget) bool {
			return c.Name == t.Name && (c.MinVersion == "" || !vc.newer(t.MinVersion, c.MinVersion))
		})
	})
	if len(targets) == 0 {
		return &Job{}
	}
	slices.SortFunc(targets, func(a, b events.PackageTarget) int { return cmp.Compare(a.Name, b.Name) })
	slices.Sort(advs)
	return &Job{Packages: targets, Advisories: advs}
}

// versionCache remembers Debian version comparisons: across a fleet the same installed and
// fixed versions recur on almost every host.
type versionCache map[[2]string]int

const invalidVersion = 2 // no comparison: a version does not parse

func (vc versionCache) compare(a, b string) (int, bool) {
	k := [2]string{a, b}
	c, ok := vc[k]
	if !ok {
		var err error
		if c, err = deb.Compare(a, b); err != nil {
			c = invalidVersion
		}
		vc[k] = c
	}
	return c, c != invalidVersion
}

func (vc versionCache) newer(a, b string) bool {
	c, ok := vc.compare(a, b)
	return ok && c > 0
}

// notBefore applies the approval delay: the soak after publication, skipped by critical and
// known-exploited advisories when the express lane is on. The most urgent advisory decides.
func notBefore(f *policy.Fleet, eligible map[string]Advisory, used map[string]bool) time.Time {
	if f.ApprovalDelay <= 0 {
		return time.Time{}
	}
	var nb time.Time
	first := true
	for id := range used {
		a := eligible[id]
		t := a.Published.Add(f.ApprovalDelay)
		if f.ExpressLane && (a.Severity == events.SeverityCritical || a.KnownExploited) || a.Published.IsZero() {
			t = time.Time{}
		}
		if first || t.Before(nb) {
			nb, first = t, false
		}
	}
	return nb
}

// Selected is a host picked by an on-demand request or registered as new.
type Selected struct {
	ID         string
	Fleet      string
	Tags       map[string]string
	Components []events.Component // detected versions (docker, weave…)
}

// OnDemand plans a person's request (apply security upgrades now, a full upgrade, Docker
// upgrades) for the selected hosts. Packages are left empty: the executor upgrades what apt
// lists (from the security origins for kind security). Approval follows the fleet's policy
// for the kind: security_updates for security, docker and unattended, other_updates for full.
// A docker request takes only the hosts whose detected Docker or Weave differs from the
// manifest, each job carrying the pins its host needs.
func OnDemand(p *policy.Policy, req events.RolloutRequested, hosts []Selected, m *manifest.Manifest) Result {
	var res Result
	byFleet := map[string][]Selected{}
	for _, h := range hosts {
		f := p.For(h.Fleet, h.Tags)
		if f == nil {
			res.Unmatched = append(res.Unmatched, h.ID)
			continue
		}
		byFleet[f.Name] = append(byFleet[f.Name], h)
	}
	for _, f := range p.Fleets {
		sel, ok := byFleet[f.Name]
		if !ok {
			continue
		}
		fp := &Fleet{Policy: f, Kind: req.Kind, RequestID: req.RequestID}
		slices.SortFunc(sel, func(a, b Selected) int { return cmp.Compare(a.ID, b.ID) })
		all := &Job{} // what the kind implies, for every host
		for _, h := range slices.CompactFunc(sel, func(a, b Selected) bool { return a.ID == b.ID }) {
			job := all
			if req.Kind == events.KindDocker {
				if job = (&Job{Components: m.Pins(h.Components)}); len(job.Components) == 0 {
					continue // already at the manifest's versions
				}
			}
			fp.Hosts = append(fp.Hosts, HostPlan{HostID: h.ID, Job: job})
		}
		if len(fp.Hosts) == 0 {
			fp.Skipped = "every selected host runs the manifest's Docker and Weave versions"
		}
		if req.Kind == events.KindFull {
			fp.NeedsApproval = f.OtherUpdates == policy.Approve
		} else {
			fp.NeedsApproval = f.SecurityUpdates == policy.Approve
		}
		finish(fp, f, req.Reboot, req.ConfigureUnattended)
		res.Fleets = append(res.Fleets, fp)
	}
	return res
}

// NewHost plans the full upgrade a newly built host gets before it takes traffic: no
// approval, no waves, no window (it serves nothing yet). A notify-only fleet is only told.
func NewHost(p *policy.Policy, h Selected) Result {
	f := p.For(h.Fleet, h.Tags)
	if f == nil {
		return Result{Unmatched: []string{h.ID}}
	}
	fp := &Fleet{Policy: f, Kind: events.KindFull, Hosts: []HostPlan{{HostID: h.ID, Job: &Job{}}}, IgnoreWindows: true}
	finish(fp, f, "", false)
	if fp.Strategy == events.StrategyReplace {
		// A new host serves nothing yet: replacing it would only provision another new host.
		fp.Strategy = events.StrategyInPlace
		fp.Hash = Hash(fp)
	}
	return Result{Fleets: []*Fleet{fp}}
}

// finish fills in what every plan derives from its fleet policy, then the waves and the hash.
func finish(fp *Fleet, f *policy.Fleet, rebootOverride string, configureUnattended bool) {
	fp.Strategy = f.Strategy
	if f.NotifyOnly() {
		fp.Strategy = events.StrategyNotifyOnly
		fp.NeedsApproval = false
	}
	fp.Reboot = budget.Reboot(f.Reboot, rebootOverride)
	fp.MaxUnavailable = max(1, f.MaxUnavailable)
	fp.HealthCheck = f.HealthCheck
	fp.ConfigureUnattended = configureUnattended || f.UnattendedUpgrades == policy.UnattendedSecurity
	if !slices.IsSortedFunc(fp.Hosts, byHostID) {
		fp.Hosts = sortedByID(fp.Hosts)
	}
	// A host listed twice gets one job.
	fp.Hosts = slices.CompactFunc(fp.Hosts, func(a, b HostPlan) bool { return a.HostID == b.HostID })
	ids := make([]string, len(fp.Hosts))
	for i, h := range fp.Hosts {
		ids[i] = h.HostID
	}
	if fp.IgnoreWindows {
		fp.Waves = waves.Split(ids, 0, nil)
	} else {
		fp.Waves = waves.Split(ids, f.Canary, f.Waves)
	}
	fp.MaxFailures = budget.Failures(f.MaxFailures, len(ids))
	fp.Hash = Hash(fp)
}

func byHostID(a, b HostPlan) int { return strings.Compare(a.HostID, b.HostID) }

// sortedByID orders host plans by host id. Pairs of id and index are sorted, not the plans
// (several times larger, and their ids one pointer further), and each plan is then moved once:
// half the time for a large fleet.
func sortedByID(hosts []HostPlan) []HostPlan {
	type key struct {
		id string
		i  int32
	}
	keys := make([]key, len(hosts))
	for i := range hosts {
		keys[i] = key{hosts[i].HostID, int32(i)}
	}
	slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.id, b.id) })
	out := make([]HostPlan, len(hosts))
	for i, k := range keys {
		out[i] = hosts[k.i]
	}
	return out
}

// Hash is the sha256 of the plan's canonical form: kind, fleet, strategy, reboot, advisories,
// limits, health check, and every wave with its hosts, each with the sha256 of its job's key
// (its exact package targets, advisories and pins: AppendJobKey), each field length-prefixed
// so no two plans share a form. A job is hashed once however many hosts share it (a glibc
// fix is a dozen targets on each of 100,000 hosts). Times are left out, so a preview and the
// plan it previews hash alike; what was approved is what runs.
func Hash(fp *Fleet) string {
	h := sha256.New()
	// Fields are gathered and hashed a few KB at a time: a plan has several per host.
	var buf []byte
	w := func(s string) {
		buf = appendField(buf, s)
		if len(buf) >= 8<<10 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	w("patchfleet-plan-v2")
	w(fp.Kind)
	w(fp.Policy.Name)
	w(fp.Strategy)
	w(fp.Reboot)
	w(fp.RequestID)
	w(strconv.Itoa(len(fp.Advisories)))
	for _, a := range fp.Advisories {
		w(a)
	}
	w(strconv.Itoa(fp.MaxFailures))
	w(strconv.Itoa(fp.MaxUnavailable))
	w(fp.HealthCheck)
	w(strconv.FormatBool(fp.ConfigureUnattended))
	w(strconv.Itoa(len(fp.Waves)))
	jobs := map[*Job]string{} // a job's digest, by the job the hosts share
	var key []byte
	plans := fp.WaveHostPlans()
	for wi, wave := range fp.Waves {
		w(strconv.Itoa(len(wave)))
		for i, id := range wave {
			w(id)
			job := plans[wi][i].Job
			sum, ok := jobs[job]
			if !ok {
				key = job.AppendJobKey(key[:0])
				d := sha256.Sum256(key)
				sum = string(d[:])
				jobs[job] = sum
			}
			w(sum)
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

// WaveHostPlans returns the plans of each wave's hosts, by wave and position. The waves list
// the hosts in Hosts' order (finish lays them out so), which is walked; a plan whose waves
// were laid out otherwise finds its hosts by id.
func (fp *Fleet) WaveHostPlans() [][]*HostPlan {
	out := make([][]*HostPlan, len(fp.Waves))
	var byHost map[string]*HostPlan
	next := 0
	for wi, wave := range fp.Waves {
		out[wi] = make([]*HostPlan, len(wave))
		for i, id := range wave {
			if byHost == nil && next < len(fp.Hosts) && fp.Hosts[next].HostID == id {
				out[wi][i] = &fp.Hosts[next]
				next++
				continue
			}
			if byHost == nil {
				byHost = make(map[string]*HostPlan, len(fp.Hosts))
				for j := range fp.Hosts {
					byHost[fp.Hosts[j].HostID] = &fp.Hosts[j]
				}
			}
			out[wi][i] = byHost[id]
		}
	}
	return out
}

// AppendJobKey appends what makes the job, its packages, advisories and pins, as fields:
// jobs with equal keys are the same.
func (j *Job) AppendJobKey(b []byte) []byte {
	b = appendField(b, strconv.Itoa(len(j.Packages)))
	for _, p := range j.Packages {
		b = appendField(appendField(b, p.Name), p.MinVersion)
	}
	b = appendField(b, strconv.Itoa(len(j.Advisories)))
	for _, a := range j.Advisories {
		b = appendField(b, a)
	}
	b = appendField(b, strconv.Itoa(len(j.Components)))
	for _, c := range j.Components {
		b = appendField(appendField(b, c.Name), c.Version)
	}
	return b
}

// appendField appends s length-prefixed: no two different lists of such fields share a
// form.
func appendField(b []byte, s string) []byte {
	return append(append(strconv.AppendInt(b, int64(len(s)), 10), ':'), s...)
}

// Preview renders a plan for the query contract.
func (f *Fleet) Preview() query.PlanPreview {
	wave := waves.Flatten(f.Waves)
	out := query.PlanPreview{
		Fleet: f.Policy.Name, Kind: f.Kind, PlanHash: f.Hash, Strategy: f.Strategy, Reboot: f.Reboot,
		NeedsApproval: f.NeedsApproval, NotBefore: f.NotBefore, MaxFailures: f.MaxFailures, Skipped: f.Skipped,
		Waves: f.EventWaves(), Hosts: make([]query.PlannedHost, 0, len(f.Hosts)),
	}
	for _, h := range f.Hosts {
		out.Hosts = append(out.Hosts, query.PlannedHost{HostID: h.HostID, Wave: wave[h.HostID], Packages: h.Packages, Advisories: h.Advisories})
	}
	return out
}

// EventWaves renders the waves for RolloutPlanned.
func (f *Fleet) EventWaves() []events.Wave {
	out := make([]events.Wave, len(f.Waves))
	for i, w := range f.Waves {
		out[i] = events.Wave{Index: i, Hosts: w}
	}
	return out
}
