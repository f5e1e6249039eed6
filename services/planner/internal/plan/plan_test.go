package plan

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/manifest"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
)

const policyYAML = `
fleets:
  - name: web
    match: {role: web}
    security_updates: auto
    min_severity: medium
    approval_delay: 24h
    canary: 1
    waves: ["50%", "100%"]
    max_failures: 1
    reboot: if-required
  - name: db
    fleet: db
    security_updates: approve
    other_updates: approve
    unattended_upgrades: security
  - name: legacy
    fleet: legacy
    strategy: notify-only
    security_updates: notify-only
  - name: lab
    fleet: lab
    other_updates: auto
`

func mustPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var published = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func advisories() map[string]Advisory {
	return map[string]Advisory{
		"DSA-1": {ID: "DSA-1", Severity: events.SeverityHigh, Published: published},
		"DSA-2": {ID: "DSA-2", Severity: events.SeverityHigh, Published: published.Add(time.Hour)},
		"DSA-3": {ID: "DSA-3", Severity: events.SeverityLow, Published: published},
	}
}

func pkg(adv, name, installed, fixed string) query.ExposedPackage {
	return query.ExposedPackage{Name: name, Installed: installed, Fixed: fixed, AdvisoryID: adv, SourceName: name}
}

func web(id string, pkgs ...query.ExposedPackage) Host {
	return Host{ID: id, Fleet: "frontend", Tags: map[string]string{"role": "web"}, Packages: pkgs}
}

func TestSecurityMergesAndDrops(t *testing.T) {
	p := mustPolicy(t)
	hosts := []Host{
		// Two advisories on one package: the higher fix wins; one job per host.
		web("w1", pkg("DSA-1", "libssl3", "3.0.1-1", "3.0.2-1"), pkg("DSA-2", "libssl3", "3.0.1-1", "3.0.3-1"), pkg("DSA-2", "openssl", "3.0.1-1", "3.0.3-1")),
		// Already at the fixed version (upgraded by hand): drops out.
		web("w2", pkg("DSA-1", "libssl3", "3.0.2-1", "3.0.2-1")),
		// No fix yet: nothing to install.
		web("w3", pkg("DSA-1", "libssl3", "3.0.1-1", "")),
		// Below min_severity only.
		web("w4", pkg("DSA-3", "curl", "7.0-1", "7.1-1")),
		// Covered by an open job at a version at least as high.
		web("w5", pkg("DSA-1", "libssl3", "3.0.1-1", "3.0.2-1")),
		// Covered at a lower version: still planned.
		web("w6", pkg("DSA-2", "libssl3", "3.0.1-1", "3.0.3-1")),
		{ID: "x1", Fleet: "unknown", Packages: []query.ExposedPackage{pkg("DSA-1", "libssl3", "3.0.1-1", "3.0.2-1")}},
	}
	covered := Covered{
		"w5": {{Name: "libssl3", MinVersion: "3.0.2-1"}},
		"w6": {{Name: "libssl3", MinVersion: "3.0.2-1"}},
	}
	res := Security(p, advisories(), hosts, covered, published)
	if !reflect.DeepEqual(res.Unmatched, []string{"x1"}) {
		t.Errorf("unmatched = %v", res.Unmatched)
	}
	if len(res.Fleets) != 1 {
		t.Fatalf("fleets = %d, want 1", len(res.Fleets))
	}
	f := res.Fleets[0]
	var ids []string
	for _, h := range f.Hosts {
		ids = append(ids, h.HostID)
	}
	if !reflect.DeepEqual(ids, []string{"w1", "w6"}) {
		t.Fatalf("hosts = %v, want [w1 w6]", ids)
	}
	w1 := f.Hosts[0]
	want := []events.PackageTarget{{Name: "libssl3", MinVersion: "3.0.3-1"}, {Name: "openssl", MinVersion: "3.0.3-1"}}
	if !reflect.DeepEqual(w1.Packages, want) || !reflect.DeepEqual(w1.Advisories, []string{"DSA-1", "DSA-2"}) {
		t.Errorf("w1 = %+v", w1)
	}
	if f.Kind != events.KindSecurity || f.NeedsApproval || f.Reboot != events.RebootIfRequired || f.MaxFailures != 1 || f.Severity != events.SeverityHigh {
		t.Errorf("plan = %+v", f)
	}
	// The delay runs from the earliest publication of the advisories in the plan.
	if !f.NotBefore.Equal(published.Add(24 * time.Hour)) {
		t.Errorf("not before = %v", f.NotBefore)
	}
	if len(f.Waves) != 2 || f.Waves[0][0] != "w1" {
		t.Errorf("waves = %v", f.Waves)
	}
}

// Hosts of one exposure group share its package list and get one job, planned once; a host
// of the group an open job covers still gets its own. Hosts come in the inventory's order
// and are listed twice at most once.
func TestSecurityHostsSharingAList(t *testing.T) {
	p := mustPolicy(t)
	list := []query.ExposedPackage{pkg("DSA-1", "libssl3", "3.0.1-1", "3.0.2-1"), pkg("DSA-2", "openssl", "3.0.1-1", "3.0.3-1")}
	other := []query.ExposedPackage{pkg("DSA-1", "libssl3", "3.0.1-1", "3.0.2-1")}
	hosts := []Host{web("g3", list...), web("g1", list...), web("o1", other...), web("g2", list...), web("g1", list...)}
	for _, i := range []int{0, 1, 3, 4} {
		hosts[i].Packages = list // the very same list, as the inventory's groups give it
	}
	covered := Covered{"g2": {{Name: "libssl3", MinVersion: "3.0.2-1"}}}
	res := Security(p, advisories(), hosts, covered, published)
	if len(res.Fleets) != 1 {
		t.Fatalf("fleets = %d, want 1", len(res.Fleets))
	}
	got := map[string][]events.PackageTarget{}
	var ids []string
	for _, h := range res.Fleets[0].Hosts {
		got[h.HostID] = h.Packages
		ids = append(ids, h.HostID)
	}
	both := []events.PackageTarget{{Name: "libssl3", MinVersion: "3.0.2-1"}, {Name: "openssl", MinVersion: "3.0.3-1"}}
	want := map[string][]events.PackageTarget{
		"g1": both, "g3": both,
		"g2": {{Name: "openssl", MinVersion: "3.0.3-1"}}, // libssl3 is an open job's
		"o1": {{Name: "libssl3", MinVersion: "3.0.2-1"}},
	}
	if !reflect.DeepEqual(got, want) || !slices.Equal(ids, []string{"g1", "g2", "g3", "o1"}) {
		t.Errorf("jobs %v of hosts %v, want %v", got, ids, want)
	}
}

func TestSecurityPolicies(t *testing.T) {
	p := mustPolicy(t)
	exposed := func(fleet string) Host {
		return Host{ID: fleet + "-1", Fleet: fleet, Packages: []query.ExposedPackage{pkg("DSA-1", "bash", "5.0-1", "5.0-2")}}
	}
	tests := []struct {
		name       string
		advisory   Advisory
		host       Host
		kind       string
		strategy   string
		approval   bool
		notBefore  time.Time
		unattended bool
		skipped    bool
	}{
		{"approve fleet", Advisory{ID: "DSA-1", Severity: events.SeverityLow}, exposed("db"), events.KindSecurity, events.StrategyInPlace, true, time.Time{}, true, false},
		{"notify-only", Advisory{ID: "DSA-1", Severity: events.SeverityLow}, exposed("legacy"), events.KindSecurity, events.StrategyNotifyOnly, false, time.Time{}, false, false},
		{"other updates auto: full", Advisory{ID: "DSA-1", Severity: events.SeverityLow}, exposed("lab"), events.KindFull, events.StrategyInPlace, false, time.Time{}, false, false},
		{"express lane: critical", Advisory{ID: "DSA-1", Severity: events.SeverityCritical, Published: published}, web("w1", pkg("DSA-1", "bash", "5.0-1", "5.0-2")), events.KindSecurity, events.StrategyInPlace, false, time.Time{}, false, false},
		{"express lane: known exploited", Advisory{ID: "DSA-1", Severity: events.SeverityMedium, KnownExploited: true, Published: published}, web("w1", pkg("DSA-1", "bash", "5.0-1", "5.0-2")), events.KindSecurity, events.StrategyInPlace, false, time.Time{}, false, false},
		{"soak", Advisory{ID: "DSA-1", Severity: events.SeverityMedium, Published: published}, web("w1", pkg("DSA-1", "bash", "5.0-1", "5.0-2")), events.KindSecurity, events.StrategyInPlace, false, published.Add(24 * time.Hour), false, false},
		{"below min severity", Advisory{ID: "DSA-1", Severity: events.SeverityLow, Published: published}, web("w1", pkg("DSA-1", "bash", "5.0-1", "5.0-2")), events.KindSecurity, events.StrategyInPlace, false, time.Time{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Security(p, map[string]Advisory{"DSA-1": tt.advisory}, []Host{tt.host}, nil, published)
			if len(res.Fleets) != 1 {
				t.Fatalf("fleets = %d", len(res.Fleets))
			}
			f := res.Fleets[0]
			if (f.Skipped != "") != tt.skipped || tt.skipped && len(f.Hosts) != 0 {
				t.Fatalf("skipped = %q, hosts %d", f.Skipped, len(f.Hosts))
			}
			if tt.skipped {
				return
			}
			if f.Kind != tt.kind || f.Strategy != tt.strategy || f.NeedsApproval != tt.approval || !f.NotBefore.Equal(tt.notBefore) || f.ConfigureUnattended != tt.unattended {
				t.Errorf("plan kind %s strategy %s approval %v not before %v unattended %v", f.Kind, f.Strategy, f.NeedsApproval, f.NotBefore, f.ConfigureUnattended)
			}
		})
	}
}

func TestOnDemandAndNewHost(t *testing.T) {
	p := mustPolicy(t)
	req := events.RolloutRequested{RequestID: "r1", RequestedBy: "alice", Kind: events.KindFull, Selector: events.HostSelector{Fleet: "db"}, Reboot: events.RebootAlways}
	res := OnDemand(p, req, []Selected{{ID: "d2", Fleet: "db"}, {ID: "d1", Fleet: "db"}, {ID: "z", Fleet: "nowhere"}}, nil)
	if len(res.Fleets) != 1 || !reflect.DeepEqual(res.Unmatched, []string{"z"}) {
		t.Fatalf("res = %+v", res)
	}
	f := res.Fleets[0]
	if f.Kind != events.KindFull || !f.NeedsApproval || f.Reboot != events.RebootAlways || f.Hosts[0].HostID != "d1" || len(f.Hosts[0].Packages) != 0 {
		t.Errorf("on-demand plan = %+v", f)
	}
	nh := NewHost(p, Selected{ID: "w9", Fleet: "frontend", Tags: map[string]string{"role": "web"}})
	g := nh.Fleets[0]
	if g.Kind != events.KindFull || g.NeedsApproval || !g.IgnoreWindows || len(g.Waves) != 1 || !g.NotBefore.IsZero() {
		t.Errorf("new host plan = %+v", g)
	}
	rp, err := policy.Parse([]byte("fleets:\n  - name: web\n    fleet: web\n    strategy: replace\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewHost(rp, Selected{ID: "w9", Fleet: "web"}).Fleets[0]
	if r.Strategy != events.StrategyInPlace || r.Hash != Hash(r) {
		t.Errorf("new host of a replace fleet: strategy %s, hash %s of the plan %s: want in place, the hash of what runs", r.Strategy, r.Hash, Hash(r))
	}
}

func TestOnDemandDocker(t *testing.T) {
	p := mustPolicy(t)
	m, err := manifest.Parse([]byte("components: {docker: 27.3.1, weave: 2.8.1}\npackages: {docker-ce: '5:27.3.1-1~debian.12~bookworm'}"))
	if err != nil {
		t.Fatal(err)
	}
	req := events.RolloutRequested{RequestID: "r2", RequestedBy: "alice", Kind: events.KindDocker, Selector: events.HostSelector{Fleet: "lab"}}
	comps := func(docker, weave string) []events.Component {
		return []events.Component{{Name: "docker", Version: docker}, {Name: "weave", Version: weave}}
	}
	ce := events.Component{Name: "docker-ce", Version: "5:27.3.1-1~debian.12~bookworm"}
	wv := events.Component{Name: "weave", Version: "2.8.1"}
	for _, tt := range []struct {
		name    string
		hosts   []Selected
		want    map[string][]events.Component
		skipped bool
	}{
		{"only hosts that differ", []Selected{
			{ID: "l1", Fleet: "lab", Components: comps("27.3.1", "2.8.1")},
			{ID: "l2", Fleet: "lab", Components: comps("24.0.7", "2.8.1")},
			{ID: "l3", Fleet: "lab", Components: comps("27.3.1", "2.6.0")},
			{ID: "l4", Fleet: "lab", Components: comps("24.0.7", "2.6.0")},
			{ID: "l5", Fleet: "lab"},
		}, map[string][]events.Component{"l2": {ce}, "l3": {wv}, "l4": {ce, wv}}, false},
		{"every host up to date", []Selected{{ID: "l1", Fleet: "lab", Components: comps("27.3.1", "2.8.1")}}, map[string][]events.Component{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := OnDemand(p, req, tt.hosts, m)
			if len(res.Fleets) != 1 {
				t.Fatalf("res = %+v", res)
			}
			f := res.Fleets[0]
			got := map[string][]events.Component{}
			for _, h := range f.Hosts {
				got[h.HostID] = h.Components
			}
			if !reflect.DeepEqual(got, tt.want) || (f.Skipped != "") != tt.skipped || f.Kind != events.KindDocker {
				t.Errorf("hosts %+v skipped %q, want %+v skipped %v", got, f.Skipped, tt.want, tt.skipped)
			}
		})
	}
	// The pins are part of what an approval names.
	a := OnDemand(p, req, []Selected{{ID: "l2", Fleet: "lab", Components: comps("24.0.7", "2.8.1")}}, m).Fleets[0]
	b := OnDemand(p, req, []Selected{{ID: "l2", Fleet: "lab", Components: comps("24.0.7", "2.6.0")}}, m).Fleets[0]
	if a.Hash == b.Hash {
		t.Error("plans with different pins have the same hash")
	}
}

func TestHash(t *testing.T) {
	p := mustPolicy(t)
	hosts := func(fixed string) []Host {
		return []Host{web("w1", pkg("DSA-1", "bash", "5.0-1", fixed)), web("w2", pkg("DSA-1", "bash", "5.0-1", "5.0-2"))}
	}
	adv := map[string]Advisory{"DSA-1": {ID: "DSA-1", Severity: events.SeverityHigh}}
	a := Security(p, adv, hosts("5.0-2"), nil, published).Fleets[0]
	b := Security(p, adv, hosts("5.0-2"), nil, published.Add(time.Hour)).Fleets[0]
	c := Security(p, adv, hosts("5.0-3"), nil, published).Fleets[0]
	if a.Hash != b.Hash {
		t.Error("same plan, different hash")
	}
	if a.Hash == c.Hash {
		t.Error("a different package version has the same hash")
	}
	if len(a.Hash) != 64 {
		t.Errorf("hash %q is not sha256 hex", a.Hash)
	}
	d := Security(p, adv, hosts("5.0-2")[:1], nil, published).Fleets[0]
	if d.Hash == a.Hash {
		t.Error("a plan without w2 has the same hash")
	}
	pv := a.Preview()
	if pv.PlanHash != a.Hash || len(pv.Hosts) != 2 || pv.Hosts[1].Wave != 1 {
		t.Errorf("preview = %+v", pv)
	}

	// Hosts' jobs are hashed by what they hold, whether or not the hosts share one.
	shared := *a
	job := &Job{Packages: []events.PackageTarget{{Name: "bash", MinVersion: "5.0-2"}}}
	shared.Hosts = []HostPlan{{"w1", job}, {"w2", job}}
	own := shared
	own.Hosts = []HostPlan{{"w1", job}, {"w2", &Job{Packages: slices.Clone(job.Packages)}}}
	other := shared
	other.Hosts = []HostPlan{{"w1", job}, {"w2", &Job{Packages: []events.PackageTarget{{Name: "bash", MinVersion: "5.0-3"}}}}}
	if Hash(&shared) != Hash(&own) || Hash(&shared) == Hash(&other) {
		t.Errorf("jobs alike hash %s and %s, jobs that differ %s", Hash(&shared), Hash(&own), Hash(&other))
	}
}
