package view

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

var now = time.Date(2025, 3, 10, 15, 0, 0, 0, time.UTC)

func rec(host string, sev events.Severity, since, patched time.Time) query.ComplianceRecord {
	return query.ComplianceRecord{AdvisoryID: "DSA-1", HostID: host, Fleet: "web", Severity: sev, ExposedSince: since, PatchedAt: patched}
}

func TestExposedPerDay(t *testing.T) {
	day := func(d int, h int) time.Time { return time.Date(2025, 3, d, h, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name string
		recs []query.ComplianceRecord
		want []int // the last 4 days, oldest first
	}{
		{"nothing", nil, []int{0, 0, 0, 0}},
		{"open since two days", []query.ComplianceRecord{rec("a", "high", day(8, 9), time.Time{})}, []int{0, 1, 1, 1}},
		{"patched the next day", []query.ComplianceRecord{rec("a", "high", day(7, 9), day(8, 9))}, []int{1, 0, 0, 0}},
		{"patched the same day counts not", []query.ComplianceRecord{rec("a", "high", day(9, 1), day(9, 2))}, []int{0, 0, 0, 0}},
		{"two advisories one host", []query.ComplianceRecord{rec("a", "high", day(9, 1), time.Time{}), rec("a", "low", day(9, 2), time.Time{})}, []int{0, 0, 1, 1}},
		{"today counts until now", []query.ComplianceRecord{rec("a", "high", day(10, 14), time.Time{}), rec("b", "high", day(10, 16), time.Time{})}, []int{0, 0, 0, 1}},
	} {
		got := ExposedPerDay(tc.recs, now, 4)
		var n []int
		for _, d := range got {
			n = append(n, d.Hosts)
		}
		if len(got) != 4 || !got[3].Day.Equal(day(10, 0)) || !slices.Equal(n, tc.want) {
			t.Errorf("%s: got %v (last day %v), want %v", tc.name, n, got[len(got)-1].Day, tc.want)
		}
	}
}

func TestBuildOverview(t *testing.T) {
	hosts := []query.Host{
		{ID: "a", Fleet: "web", LastScan: now.Add(-time.Hour)},
		{ID: "b", Fleet: "web", LastScan: now.Add(-48 * time.Hour)},
		{ID: "c", Fleet: "db", LastScan: now.Add(-time.Hour), RebootRequired: true, RebootPackages: []string{"linux-image-amd64"}},
	}
	open := []query.ComplianceRecord{
		rec("a", events.SeverityCritical, now.Add(-time.Hour), time.Time{}),
		rec("a", events.SeverityLow, now.Add(-time.Hour), time.Time{}),
		rec("c", events.SeverityMedium, now.Add(-time.Hour), now), // patched, reboot pending: not exposed
	}
	o := BuildOverview(OverviewInput{Hosts: hosts, Open: open, Now: now, StaleAfter: 24 * time.Hour, Days: 7})
	if o.Hosts != 3 || o.Exposed != 1 || o.Urgent != 1 || o.RebootPending != 1 || o.Stale != 1 {
		t.Errorf("counts %+v", o)
	}
	if o.BySeverity[0].Severity != events.SeverityCritical || o.BySeverity[0].Hosts != 1 || o.BySeverity[3].Hosts != 1 {
		t.Errorf("by severity %+v", o.BySeverity)
	}
	if o.Fleets[0].Fleet != "web" || o.Fleets[0].Exposed != 1 || o.Fleets[0].Worst != events.SeverityCritical || o.Fleets[0].Stale != 1 {
		t.Errorf("fleets %+v", o.Fleets)
	}
	if len(o.Advisories) != 1 || o.Advisories[0].Hosts != 2 {
		t.Errorf("advisories %+v", o.Advisories)
	}
	if len(o.RebootHosts) != 1 || o.RebootHosts[0].Note != "linux-image-amd64" || len(o.StaleHosts) != 1 || o.StaleHosts[0].ID != "b" {
		t.Errorf("lists %+v %+v", o.RebootHosts, o.StaleHosts)
	}
	if len(o.Chart.Bars) != 7 {
		t.Errorf("chart has %d bars", len(o.Chart.Bars))
	}
}

func TestBarChartScales(t *testing.T) {
	c := BarChart([]DayCount{{Day: now, Hosts: 0}, {Day: now, Hosts: 2}, {Day: now, Hosts: 4}}, 300, 100)
	if c.Max != 4 || c.Empty || c.Bars[0].H != 0 || c.Bars[2].H != c.BaseY-c.MaxY || c.Bars[1].H*2 != c.Bars[2].H {
		t.Errorf("chart %+v", c)
	}
	if e := BarChart([]DayCount{{Day: now}}, 300, 100); !e.Empty {
		t.Error("an all-zero chart is not empty")
	}
}

func detail() query.RolloutDetail {
	return query.RolloutDetail{
		RolloutSummary: query.RolloutSummary{ID: "r1", Fleet: "web", State: query.RolloutRunning, PlanHash: "p1", HostCount: 3},
		Waves:          []query.RolloutWave{{Index: 0, State: "completed", Hosts: 1}, {Index: 1, State: "running", Hosts: 2}},
		Hosts: []query.RolloutHost{{HostID: "a", Wave: 0, State: "succeeded"}, {HostID: "b", Wave: 1, State: "dispatched"},
			{HostID: "c", Wave: 1, State: "pending"}},
	}
}

func hostState(v RolloutView, id string) string {
	for _, h := range v.Hosts {
		if h.HostID == id {
			return h.State
		}
	}
	return ""
}

func TestLiveRolloutApply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		events  []events.Event
		changed bool
		check   func(RolloutView) bool
	}{
		{"a host succeeds", []events.Event{events.UpgradeCompleted{JobID: "j", RolloutID: "r1", HostID: "b"}}, true,
			func(v RolloutView) bool {
				return hostState(v, "b") == HostSucceeded && v.Done == 2 && v.Waves[1].Succeeded == 1
			}},
		{"a late start does not undo a result", []events.Event{events.UpgradeCompleted{JobID: "j", RolloutID: "r1", HostID: "b"},
			events.UpgradeStarted{JobID: "j", RolloutID: "r1", HostID: "b", Executor: "x"}}, false,
			func(v RolloutView) bool { return hostState(v, "b") == HostSucceeded }},
		{"another rollout is ignored", []events.Event{events.UpgradeCompleted{JobID: "j", RolloutID: "r2", HostID: "b"}}, false,
			func(v RolloutView) bool { return hostState(v, "b") == HostDispatched }},
		{"a wave start leaves its hosts pending until they start", []events.Event{events.WaveStarted{RolloutID: "r1", Wave: 1, Hosts: []string{"b", "c"}}}, false,
			func(v RolloutView) bool {
				return hostState(v, "c") == HostPending && v.Running == 1 && v.Waves[1].State == "running"
			}},
		{"a started host runs", []events.Event{events.WaveStarted{RolloutID: "r1", Wave: 1, Hosts: []string{"b", "c"}},
			events.UpgradeStarted{JobID: "k", RolloutID: "r1", HostID: "c", Executor: "x"}}, true,
			func(v RolloutView) bool { return hostState(v, "c") == HostRunning && v.Running == 2 }},
		{"failures spend the budget", []events.Event{events.UpgradeFailed{JobID: "j", RolloutID: "r1", HostID: "b", Reason: "apt_error"},
			events.UpgradeFailed{JobID: "k", RolloutID: "r1", HostID: "c", Reason: "apt_error"}}, true,
			func(v RolloutView) bool { return v.Budget.Used == 2 && v.Budget.Spent && v.Failed == 2 }},
		{"a pause changes the allowed decisions", []events.Event{events.RolloutPaused{Decision: events.Decision{RolloutID: "r1", By: "bob"}}}, true,
			func(v RolloutView) bool {
				return v.State == "paused" && v.Actions["resume"] && !v.Actions["pause"] && v.Reason == "paused by bob"
			}},
	} {
		l := NewLiveRollout(detail(), 1)
		changed := false
		for _, e := range tc.events {
			changed = l.Apply(e) || changed
		}
		if tc.changed && !changed {
			t.Errorf("%s: Apply reported no change", tc.name)
		}
		if v := l.View(); !tc.check(v) {
			t.Errorf("%s: view %+v", tc.name, v)
		}
	}
}

func TestBudgetFromPolicy(t *testing.T) {
	for in, want := range map[string]int{"2": 2, "0": 0, "10%": 5, "": -1, "x": -1, "-1": -1} {
		if got := BudgetFromPolicy(in, 50); got != want {
			t.Errorf("BudgetFromPolicy(%q, 50) = %d, want %d", in, got, want)
		}
	}
}

func TestFilterPackages(t *testing.T) {
	pkgs := []query.Package{{Name: "libssl3", SourceName: "openssl"}, {Name: "nginx", SourceName: "nginx"}, {Name: "bash", SourceName: "bash"}}
	for q, want := range map[string]int{"": 3, "SSL": 1, "openssl": 1, "n": 2, "zzz": 0} {
		if got := len(FilterPackages(pkgs, q)); got != want {
			t.Errorf("FilterPackages(%q) = %d, want %d", q, got, want)
		}
	}
}

func TestComplianceCSV(t *testing.T) {
	var b bytes.Buffer
	recs := []query.ComplianceRecord{
		{AdvisoryID: "DSA-1", HostID: "web-1", Fleet: "web", Severity: "high", ExposedSince: now.Add(-3 * time.Hour), Vulnerable: 3 * time.Hour},
		{AdvisoryID: "@SUM(A1)", HostID: "-web", Fleet: "+x", Severity: "low", ExposedSince: now, PatchedAt: now, RebootPending: true},
		{AdvisoryID: "DSA-2", HostID: "web-2", Fleet: "web", ExposedSince: now.Add(-2 * time.Hour), RetiredAt: now.Add(-time.Hour), Vulnerable: time.Hour},
	}
	if err := WriteComplianceCSV(&b, recs); err != nil {
		t.Fatal(err)
	}
	want := "advisory_id,host_id,fleet,severity,exposed_since,patched_at,retired_at,reboot_pending,rollout_id,vulnerable_hours\n" +
		"DSA-1,web-1,web,high,2025-03-10T12:00:00Z,,,false,,3.0\n" +
		"'@SUM(A1),'-web,'+x,low,2025-03-10T15:00:00Z,2025-03-10T15:00:00Z,,true,,0.0\n" +
		"DSA-2,web-2,web,,2025-03-10T13:00:00Z,,2025-03-10T14:00:00Z,false,,1.0\n"
	if b.String() != want {
		t.Errorf("csv:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestGroupCompliance(t *testing.T) {
	recs := []query.ComplianceRecord{
		{AdvisoryID: "A", HostID: "h1", Severity: "low", Vulnerable: time.Hour},
		{AdvisoryID: "A", HostID: "h2", Severity: "high", Vulnerable: 5 * time.Hour},
		{AdvisoryID: "B", HostID: "h1", Severity: "medium", PatchedAt: now, RebootPending: true, Vulnerable: 2 * time.Hour},
	}
	g := GroupCompliance(recs, false)
	if len(g) != 2 || g[0].Key != "A" || g[0].Open != 2 || g[0].Severity != "high" || g[0].Longest != 5*time.Hour || g[1].Reboot != 1 {
		t.Errorf("per advisory %+v", g)
	}
	g = GroupCompliance(recs, true)
	if len(g) != 2 || g[0].Key != "h2" || g[1].Key != "h1" || g[1].Records != 2 || g[1].Open != 1 || g[1].Reboot != 1 {
		t.Errorf("per host %+v", g)
	}
}
