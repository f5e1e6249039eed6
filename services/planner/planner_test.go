package planner_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
)

const autoPolicy = `
fleets:
  - name: web
    fleet: web
    security_updates: auto
    canary: 1
    waves: ["50%", "100%"]
    max_unavailable: 2
    max_failures: 1
    reboot: if-required
    health_check: "true"
    unattended_upgrades: security
  - name: legacy
    fleet: legacy
    strategy: notify-only
    security_updates: notify-only
  - name: db
    fleet: db
    security_updates: approve
    approvers: [alice]
`

func TestAdvisoryRollsOutWaveByWave(t *testing.T) {
	e := newEnv(t, autoPolicy)
	hosts := e.inv.expose("web", nil, 5, "DSA-1")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-1", events.SeverityHigh), "DSA-1")

	done := e.drive(nil)
	if done.Outcome != "completed" || done.Succeeded != 5 || done.Failed != 0 {
		t.Fatalf("completed = %+v", done)
	}
	jobs := e.exec.snapshot()
	if len(jobs) != len(hosts) || len(e.exec.duplicates()) > 0 {
		t.Fatalf("%d jobs (duplicates %v) for %d hosts", len(jobs), e.exec.duplicates(), len(hosts))
	}
	if e.exec.maxInFlight() > 2 {
		t.Errorf("%d hosts in flight at once, max_unavailable is 2", e.exec.maxInFlight())
	}
	// The canary goes first and alone.
	if jobs[0].Wave != 0 || jobs[0].HostID != hosts[0] {
		t.Errorf("first job %+v is not the canary", jobs[0])
	}
	j := jobs[1]
	if j.Kind != events.KindSecurity || j.Reboot != events.RebootIfRequired || !j.ConfigureUnattended || j.HealthCheck != "true" ||
		len(j.Packages) != 1 || j.Packages[0] != (events.PackageTarget{Name: "libssl3", MinVersion: "3.0.13-1~deb12u1"}) {
		t.Errorf("job = %+v", j)
	}
	planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
	if planned.HostCount != 5 || len(planned.Waves) != 3 || len(e.rolloutEvents("WaveCompleted")) != 3 {
		t.Errorf("planned %+v, %d waves completed", planned, len(e.rolloutEvents("WaveCompleted")))
	}
	// The compliance view shows each host exposed, then patched.
	ctx := context.Background()
	c, err := e.client.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Records) != 5 || c.Records[0].PatchedAt.IsZero() || c.Records[0].RolloutID != planned.RolloutID {
		t.Errorf("compliance = %+v", c.Records)
	}
	open, err := e.client.Compliance(ctx, query.ComplianceRequest{Open: true})
	if err != nil || len(open.Records) != 0 {
		t.Errorf("open exposures = %+v, %v", open.Records, err)
	}
	list, err := e.client.Rollouts(ctx, query.RolloutsRequest{Fleet: "web"})
	if err != nil || len(list.Rollouts) != 1 || list.Rollouts[0].State != query.RolloutCompleted || list.Rollouts[0].Succeeded != 5 {
		t.Errorf("rollouts = %+v, %v", list.Rollouts, err)
	}
}

// TestResultsDriveTheRolloutWithoutTicks: successes are recorded without the rollout's lock
// and the rollout is advanced after them, not by the periodic tick (an hour here): every
// wave is dispatched and completed as results come in, within max_unavailable, once per host.
func TestResultsDriveTheRolloutWithoutTicks(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.tick = time.Hour
	hosts := e.inv.expose("web", nil, 12, "DSA-12")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-12", events.SeverityHigh), "DSA-12")
	done := e.drive(nil)
	if done.Outcome != "completed" || done.Succeeded != len(hosts) || done.Failed != 0 {
		t.Fatalf("completed = %+v", done)
	}
	if n, d := e.exec.count(), e.exec.duplicates(); n != len(hosts) || len(d) > 0 {
		t.Fatalf("%d jobs for %d hosts, duplicates %v", n, len(hosts), d)
	}
	if e.exec.maxInFlight() > 2 {
		t.Errorf("%d hosts in flight at once, max_unavailable is 2", e.exec.maxInFlight())
	}
	if n := len(e.rolloutEvents("WaveCompleted")); n != 3 {
		t.Errorf("%d waves completed, want 3", n)
	}
}

func TestCanaryFailureHalts(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("web", nil, 4, "DSA-2")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-2", events.SeverityHigh), "DSA-2")
	canary := e.waitJobs(1)[0]
	e.exec.report(t, canary, false)
	halted := decode[events.RolloutHalted](t, e.waitEvent("RolloutHalted", 1)[0])
	if !strings.Contains(halted.Reason, "canary") || halted.Failed != 1 {
		t.Fatalf("halted = %+v", halted)
	}
	if d := e.rollout(halted.RolloutID); d.State != query.RolloutHalted || d.Failed != 1 || d.Pending != 3 {
		t.Fatalf("rollout = %+v", d.RolloutSummary)
	}
	if n := e.exec.count(); n != 1 {
		t.Fatalf("%d jobs after a failed canary, want 1", n)
	}
	// A person cancels: the rest is skipped.
	e.bus.Publish(t, events.RolloutCancelled{Decision: events.Decision{RolloutID: halted.RolloutID, By: "alice"}}, halted.RolloutID)
	done := decode[events.RolloutCompleted](t, e.waitEvent("RolloutCompleted", 1)[0])
	if done.Outcome != "cancelled" || done.Failed != 1 || done.Skipped != 3 {
		t.Fatalf("completed = %+v", done)
	}
}

func TestApprovalMustNameThePlanHash(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("db", nil, 2, "DSA-3")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-3", events.SeverityHigh), "DSA-3")
	ask := decode[events.RolloutApprovalRequested](t, e.waitEvent("RolloutApprovalRequested", 1)[0])
	if len(ask.Approvers) != 1 || ask.Approvers[0] != "alice" {
		t.Errorf("approval request = %+v", ask)
	}

	// A wrong hash and a person who is not an approver are refused and dead-lettered.
	e.bus.Publish(t, events.RolloutApproved{Decision: events.Decision{RolloutID: ask.RolloutID, By: "alice"}, PlanHash: strings.Repeat("0", 64)}, ask.RolloutID)
	e.bus.Publish(t, events.RolloutApproved{Decision: events.Decision{RolloutID: ask.RolloutID, By: "mallory"}, PlanHash: ask.PlanHash}, ask.RolloutID)
	var dls []events.DeadLetter
	eventstest.WaitFor(t, 30*time.Second, "two dead letters", func() bool { dls = e.deadLetters(); return len(dls) >= 2 })
	reasons := dls[0].Reason + " | " + dls[1].Reason
	if !strings.Contains(reasons, "names plan 0000") || !strings.Contains(reasons, "mallory is not an approver") {
		t.Errorf("dead letter reasons: %s", reasons)
	}
	if d := e.rollout(ask.RolloutID); d.State != query.RolloutAwaitingApproval || e.exec.count() != 0 {
		t.Fatalf("after refused approvals: state %s, %d jobs", d.State, e.exec.count())
	}
	// Rejecting and cancelling take an approver too.
	e.bus.Publish(t, events.RolloutRejected{Decision: events.Decision{RolloutID: ask.RolloutID, By: "mallory"}}, ask.RolloutID)
	e.bus.Publish(t, events.RolloutCancelled{Decision: events.Decision{RolloutID: ask.RolloutID, By: "mallory"}}, ask.RolloutID)
	eventstest.WaitFor(t, 30*time.Second, "four dead letters", func() bool { dls = e.deadLetters(); return len(dls) >= 4 })
	reasons = dls[2].Reason + " | " + dls[3].Reason
	if !strings.Contains(reasons, "reject rollout") || !strings.Contains(reasons, "cancel rollout") || strings.Count(reasons, "mallory is not an approver") != 2 {
		t.Errorf("dead letter reasons: %s", reasons)
	}
	if d := e.rollout(ask.RolloutID); d.State != query.RolloutAwaitingApproval {
		t.Fatalf("after a refused rejection and cancel: state %s", d.State)
	}

	e.bus.Publish(t, events.RolloutApproved{Decision: events.Decision{RolloutID: ask.RolloutID, By: "alice"}, PlanHash: ask.PlanHash}, ask.RolloutID)
	done := e.drive(nil)
	if done.Succeeded != 2 {
		t.Fatalf("completed = %+v", done)
	}
	if d := e.rollout(ask.RolloutID); d.ApprovedBy != "alice" {
		t.Errorf("approved by %q", d.ApprovedBy)
	}
}

func TestNotifyOnlyNeverRequestsUpgrades(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("legacy", nil, 3, "DSA-4")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-4", events.SeverityCritical), "DSA-4")
	planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
	done := decode[events.RolloutCompleted](t, e.waitEvent("RolloutCompleted", 1)[0])
	if planned.Strategy != events.StrategyNotifyOnly || done.Skipped != 3 || done.Succeeded+done.Failed != 0 {
		t.Fatalf("planned %+v, completed %+v", planned, done)
	}
	if n := len(e.bus.Envelopes(t, events.StreamJobs)) + e.exec.count(); n != 0 {
		t.Fatalf("%d upgrade jobs for a notify-only fleet", n)
	}
}

func TestNewHostGetsFullUpgrade(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.run("a")
	e.bus.Publish(t, events.HostRegistered{HostID: "web-new", Name: "web-new", Fleet: "web", New: true, SSH: events.SSHTarget{Address: "10.0.0.9", TOFU: true}}, "web-new")
	job := e.waitJobs(1)[0]
	if job.Kind != events.KindFull || job.HostID != "web-new" || len(job.Packages) != 0 {
		t.Fatalf("job = %+v", job)
	}
	e.exec.report(t, job, true)
	if done := decode[events.RolloutCompleted](t, e.waitEvent("RolloutCompleted", 1)[0]); done.Succeeded != 1 {
		t.Fatalf("completed = %+v", done)
	}
}

func TestWindowClosingMidRollout(t *testing.T) {
	e := newEnv(t, `
fleets:
  - name: web
    fleet: web
    windows: ["Sat 02:00-03:00 UTC"]
    canary: 0
    waves: ["100%"]
    max_unavailable: 1
    max_failures: 5
`)
	saturday := time.Date(2026, 3, 7, 2, 30, 0, 0, time.UTC)
	e.clock.Set(saturday.Add(-time.Hour)) // Saturday 01:30: closed
	e.inv.expose("web", nil, 3, "DSA-5")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-5", events.SeverityHigh), "DSA-5")
	planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
	quiet(t, e, 0, "before the window opens")
	if d := e.rollout(planned.RolloutID); d.State != query.RolloutScheduled {
		t.Fatalf("state before the window = %s", d.State)
	}

	e.clock.Set(saturday) // the window opens: one job (max_unavailable 1)
	first := e.waitJobs(1)[0]
	e.clock.Set(saturday.Add(45 * time.Minute)) // 03:15: closed, the job in flight finishes
	e.exec.report(t, first, true)
	eventstest.WaitFor(t, 30*time.Second, "result recorded", func() bool { return e.rollout(planned.RolloutID).Succeeded == 1 })
	quiet(t, e, 1, "after the window closed")

	e.clock.Set(saturday.Add(7 * 24 * time.Hour)) // next Saturday
	done := e.drive(nil)
	if done.Succeeded != 3 || len(e.exec.duplicates()) > 0 {
		t.Fatalf("completed = %+v, duplicates %v", done, e.exec.duplicates())
	}
}

// quiet checks that no new job appears for a while (the ticker runs every 20ms). Absence can
// only be observed over time.
func quiet(t *testing.T, e *env, jobs int, when string) {
	t.Helper()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := e.exec.count(); n != jobs {
			t.Fatalf("%d jobs %s, want %d", n, when, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestartMidRolloutFinishesWithoutDuplicates(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("web", nil, 6, "DSA-6")
	stop := e.run("first")
	e.bus.Publish(t, advisory("DSA-6", events.SeverityHigh), "DSA-6")
	canary := e.waitJobs(1)[0]
	e.exec.report(t, canary, true)
	e.waitJobs(2)
	stop() // killed mid-rollout: wave 1 in flight
	for _, j := range e.exec.open() {
		e.exec.report(t, j, true) // results arrive while no planner runs
	}
	e.run("second")
	done := e.drive(nil)
	if done.Succeeded != 6 {
		t.Fatalf("completed = %+v", done)
	}
	if n, d := e.exec.count(), e.exec.duplicates(); n != 6 || len(d) > 0 {
		t.Fatalf("%d jobs for 6 hosts, duplicates %v", n, d)
	}
}

func TestRedeliveredEventsChangeNothingTwice(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("web", nil, 2, "DSA-7")
	e.run("a")
	adv := e.bus.Publish(t, advisory("DSA-7", events.SeverityHigh), "DSA-7")
	canary := e.waitJobs(1)[0]
	result := e.exec.report(t, canary, false) // within the budget of 1, but a canary: halts
	e.waitEvent("RolloutHalted", 1)
	// The same events again (same event ids, as a redelivery carries), under new Nats-Msg-Ids
	// so the stream stores them.
	for _, m := range []events.Message{adv, result} {
		m.ID += "-again"
		if err := events.Publish(context.Background(), e.bus.JS, m); err != nil {
			t.Fatal(err)
		}
	}
	// Then something that must be processed after them on the same consumer.
	e.bus.Publish(t, events.RolloutResumed{Decision: events.Decision{RolloutID: canary.RolloutID, By: "alice"}}, canary.RolloutID)
	done := e.drive(nil)
	if n := len(e.rolloutEvents("RolloutPlanned")); n != 1 {
		t.Errorf("%d RolloutPlanned after a redelivered advisory", n)
	}
	if n := len(e.rolloutEvents("RolloutHalted")); n != 1 {
		t.Errorf("%d RolloutHalted after a redelivered failure", n)
	}
	if done.Failed != 1 || done.Succeeded != 1 || e.exec.count() != 2 {
		t.Errorf("completed = %+v, %d jobs", done, e.exec.count())
	}
}

func TestTwoInstancesPlanOnce(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("web", nil, 4, "DSA-8")
	e.run("a")
	e.run("b")
	// The same advisory twice under different event ids (two feeds, say): one rollout.
	e.bus.Publish(t, advisory("DSA-8", events.SeverityHigh), "DSA-8")
	e.bus.Publish(t, advisory("DSA-8", events.SeverityHigh), "DSA-8")
	done := e.drive(nil)
	if n := len(e.rolloutEvents("RolloutPlanned")); n != 1 {
		t.Fatalf("%d rollouts planned", n)
	}
	if done.Succeeded != 4 || e.exec.count() != 4 || len(e.exec.duplicates()) > 0 {
		t.Fatalf("completed %+v, %d jobs, duplicates %v", done, e.exec.count(), e.exec.duplicates())
	}
	if e.exec.maxInFlight() > 2 {
		t.Errorf("%d in flight with two instances, max_unavailable 2", e.exec.maxInFlight())
	}
}

func TestOnDemandRequestPreviewAndPolicies(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.inv.expose("web", nil, 3, "DSA-9")
	e.run("a")
	ctx := context.Background()
	req := events.RolloutRequested{RequestID: "req-1", RequestedBy: "alice", Kind: events.KindSecurity, Selector: events.HostSelector{Fleet: "web"}, Reboot: events.RebootAlways}
	var pv query.PreviewResponse
	eventstest.WaitFor(t, 30*time.Second, "planner answering", func() bool {
		var err error
		pv, err = e.client.Preview(ctx, query.PreviewRequest{Request: &req})
		return err == nil
	})
	if len(pv.Plans) != 1 || len(pv.Plans[0].Hosts) != 3 || pv.Plans[0].Reboot != events.RebootAlways {
		t.Fatalf("preview = %+v", pv)
	}
	if n := len(e.rolloutEvents("RolloutPlanned")); n != 0 {
		t.Fatalf("preview persisted %d rollouts", n)
	}
	e.bus.Publish(t, req, "req-1")
	planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
	if planned.PlanHash != pv.Plans[0].PlanHash || planned.Kind != events.KindSecurity {
		t.Errorf("planned %s, previewed %s", planned.PlanHash, pv.Plans[0].PlanHash)
	}
	job := e.waitJobs(1)[0]
	if len(job.Packages) != 0 || job.Reboot != events.RebootAlways {
		t.Errorf("on-demand job = %+v", job)
	}
	if done := e.drive(nil); done.Succeeded != 3 {
		t.Fatalf("completed = %+v", done)
	}
	pol, err := e.client.Policies(ctx, query.PoliciesRequest{})
	if err != nil || len(pol.Fleets) != 3 || pol.Fleets[0].Waves[0] != "50%" {
		t.Fatalf("policies = %+v, %v", pol, err)
	}
	if _, err := e.client.Policies(ctx, query.PoliciesRequest{Fleet: "nope"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown fleet: %v", err)
	}
	b, _ := json.Marshal(pol)
	if !strings.Contains(string(b), `"approvers":["alice"]`) {
		t.Errorf("policies JSON lacks approvers: %s", b)
	}
}

// Hosts upgraded outside Patchfleet are re-evaluated after their scans: the first host's
// package list is fetched, the next hosts reporting the same package set are asked for
// without it (the list is kept by set), and a host whose set changed since its report is
// asked for its packages again. Each is skipped in the waiting rollout as already satisfied.
func TestReevaluationKeepsPackageListsBySet(t *testing.T) {
	e := newEnv(t, autoPolicy)
	hosts := e.inv.expose("db", nil, 3, "DSA-11") // approval required: nothing is dispatched
	e.run("a")
	e.bus.Publish(t, advisory("DSA-11", events.SeverityHigh), "DSA-11")
	ask := decode[events.RolloutApprovalRequested](t, e.waitEvent("RolloutApprovalRequested", 1)[0])

	fixed := query.Package{Name: "libssl3", Version: "3.0.13-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.13-1~deb12u1", Status: "install ok installed"}
	for _, id := range hosts {
		e.inv.setPackages(id, "set-fixed", fixed)
	}
	e.inv.setPackages(hosts[2], "set-later", fixed) // scanned again since its report
	for _, id := range hosts {
		e.bus.Publish(t, events.HostInventoryReported{HostID: id, ScanID: "scan-" + id, ScannedAt: time.Now().UTC(),
			OS: events.OSRelease{ID: "debian", VersionID: "12"}, PackageSet: "set-fixed", PackageCount: 1}, id)
		eventstest.WaitFor(t, 30*time.Second, id+" skipped", func() bool {
			for _, h := range e.rollout(ask.RolloutID).Hosts {
				if h.HostID == id {
					return h.State == events.ResultSkipped
				}
			}
			return false
		})
	}
	withPackages := func(rs []query.HostRequest) (n int) {
		for _, r := range rs {
			if r.WithPackages {
				n++
			}
		}
		return n
	}
	if a := e.inv.asked(hosts[0]); len(a) != 1 || withPackages(a) != 1 {
		t.Errorf("first host asked %+v, want once with packages", a)
	}
	if a := e.inv.asked(hosts[1]); len(a) != 1 || withPackages(a) != 0 {
		t.Errorf("second host asked %+v, want once without packages", a)
	}
	if a := e.inv.asked(hosts[2]); len(a) != 2 || withPackages(a) != 1 {
		t.Errorf("host with a newer set asked %+v, want without and then with packages", a)
	}
}

func TestDecommissionedHostIsDropped(t *testing.T) {
	e := newEnv(t, autoPolicy)
	hosts := e.inv.expose("web", nil, 4, "DSA-10")
	e.run("a")
	e.bus.Publish(t, advisory("DSA-10", events.SeverityHigh), "DSA-10")
	canary := e.waitJobs(1)[0]
	// While the canary runs, the last host (in the last wave) and the canary are retired:
	// the pending one is dropped, the dispatched one finishes and is recorded.
	retired := hosts[3]
	e.bus.Publish(t, events.HostDecommissioned{HostID: retired, Reason: "replaced"}, retired)
	e.bus.Publish(t, events.HostDecommissioned{HostID: canary.HostID}, canary.HostID)
	eventstest.WaitFor(t, 30*time.Second, "host dropped", func() bool {
		for _, h := range e.rollout(canary.RolloutID).Hosts {
			if h.HostID == retired {
				return h.State == events.ResultSkipped
			}
		}
		return false
	})
	if d := e.rollout(canary.RolloutID); d.InFlight != 1 || d.Skipped != 1 {
		t.Fatalf("after decommissioning: %+v", d.RolloutSummary)
	}
	done := e.drive(nil)
	if done.Succeeded != 3 || done.Skipped != 1 {
		t.Fatalf("completed = %+v", done)
	}
	for _, r := range done.Results {
		if r.HostID == retired && (r.Status != events.ResultSkipped || !strings.Contains(r.Reason, "decommissioned: replaced")) {
			t.Errorf("result of the retired host = %+v", r)
		}
	}
	for _, j := range e.exec.snapshot() {
		if j.HostID == retired {
			t.Errorf("job for the decommissioned host: %+v", j)
		}
	}
}

func TestDockerRolloutUpgradesHostsOffTheManifest(t *testing.T) {
	e := newEnv(t, autoPolicy)
	e.docker = filepath.Join(t.TempDir(), "docker.yaml")
	manifest := "components:\n  docker: \"27.3.1\"\n  weave: \"2.8.1\"\npackages:\n  docker-ce: \"5:27.3.1-1~debian.12~bookworm\"\n  docker-ce-cli: \"5:27.3.1-1~debian.12~bookworm\"\n"
	if err := os.WriteFile(e.docker, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := e.inv.expose("web", nil, 3, "DSA-11")
	e.inv.setComponents(hosts[0], events.Component{Name: "docker", Version: "27.3.1"}, events.Component{Name: "weave", Version: "2.8.1"})
	e.inv.setComponents(hosts[1], events.Component{Name: "docker", Version: "24.0.7"}, events.Component{Name: "weave", Version: "2.8.1"})
	e.inv.setComponents(hosts[2], events.Component{Name: "docker", Version: "27.3.1"}, events.Component{Name: "weave", Version: "2.6.0"})
	e.run("a")
	req := events.RolloutRequested{RequestID: "docker-1", RequestedBy: "alice", Kind: events.KindDocker, Selector: events.HostSelector{Fleet: "web"}}
	e.bus.Publish(t, req, req.RequestID)
	planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
	if planned.Kind != events.KindDocker || planned.HostCount != 2 {
		t.Fatalf("planned %+v", planned)
	}
	if done := e.drive(nil); done.Succeeded != 2 {
		t.Fatalf("completed = %+v", done)
	}
	want := map[string][]events.Component{
		hosts[1]: {{Name: "docker-ce", Version: "5:27.3.1-1~debian.12~bookworm"}, {Name: "docker-ce-cli", Version: "5:27.3.1-1~debian.12~bookworm"}},
		hosts[2]: {{Name: "weave", Version: "2.8.1"}},
	}
	jobs := e.exec.snapshot()
	if len(jobs) != 2 {
		t.Fatalf("%d jobs: %+v", len(jobs), jobs)
	}
	for _, j := range jobs {
		if j.Kind != events.KindDocker || !reflect.DeepEqual(j.Components, want[j.HostID]) {
			t.Errorf("job of %s = %+v, want components %+v", j.HostID, j, want[j.HostID])
		}
	}
}

// A fleet's exposure is read in grouped pages until the inventory says there is no more:
// 10,001 exposed hosts on a stand-in that puts 10,000 on a page take two pages, and every
// host is planned. An inventory of the version before, which refuses a limit over 10,000,
// is asked again with that limit.
func TestExposureIsReadInGroupedPages(t *testing.T) {
	for _, older := range []bool{false, true} {
		e := newEnv(t, autoPolicy)
		e.inv.expose("db", nil, standInGroupedPage+1, "DSA-13") // approval required: nothing is dispatched
		calls := 2
		if older {
			e.inv.groupedLimit, calls = 10_000, 3 // the refused request, then two pages
		}
		e.run("a")
		e.bus.Publish(t, advisory("DSA-13", events.SeverityHigh), "DSA-13")
		planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
		if planned.HostCount != standInGroupedPage+1 {
			t.Fatalf("older inventory %t: planned %d hosts, want %d", older, planned.HostCount, standInGroupedPage+1)
		}
		e.inv.mu.Lock()
		if e.inv.calls != calls {
			t.Errorf("older inventory %t: %d exposure requests, want %d", older, e.inv.calls, calls)
		}
		e.inv.mu.Unlock()
	}
}

// An advisory's exposures start when it is first planned and keep that start through later
// revisions while the host stays exposed; an exposure that had ended (the host was patched)
// starts again; a host listed for the first time starts at the new revision.
func TestExposuresKeepTheirStartAndReopen(t *testing.T) {
	e := newEnv(t, autoPolicy)
	hosts := e.inv.expose("web", nil, 3, "DSA-E")
	ctx := context.Background()
	t1 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	now := t1
	eng, pool := e.engine(func() time.Time { return now })
	adv := advisory("DSA-E", events.SeverityHigh)
	if err := eng.OnAdvisory(ctx, events.Meta{ID: "rev-1"}, adv); err != nil {
		t.Fatal(err)
	}
	// hosts[0] is patched (its exposure taken out of its set into a row first, as the
	// planner does); a host of another fleet becomes exposed.
	q := plannerdb.New(pool)
	if err := q.TakeExposures(ctx, plannerdb.TakeExposuresParams{HostID: hosts[0], Bucket: plannerdb.ExposureBucket(hosts[0]), Every: true}); err != nil {
		t.Fatal(err)
	}
	if tag, err := pool.Exec(ctx, `update exposures set patched_at = $1 where host_id = $2`, t1.Add(time.Hour), hosts[0]); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("patch %s: %v %v", hosts[0], tag, err)
	}
	added := e.inv.expose("db", nil, 1, "DSA-E")[0]
	t2 := t1.Add(24 * time.Hour)
	now = t2
	adv.Revision = 2
	if err := eng.OnAdvisory(ctx, events.Meta{ID: "rev-2"}, adv); err != nil {
		t.Fatal(err)
	}
	res, err := eng.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-E"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]query.ComplianceRecord{}
	for _, r := range res.Records {
		if _, dup := got[r.HostID]; dup {
			t.Fatalf("host %s recorded twice", r.HostID)
		}
		got[r.HostID] = r
	}
	want := map[string]time.Time{hosts[0]: t2, hosts[1]: t1, hosts[2]: t1, added: t2}
	if len(got) != len(want) {
		t.Fatalf("records %+v, want hosts %v", res.Records, want)
	}
	for id, since := range want {
		r := got[id]
		if !r.ExposedSince.Equal(since) || !r.PatchedAt.IsZero() || r.Fleet == "" || r.Severity != events.SeverityHigh {
			t.Errorf("host %s: %+v, want exposed since %v and not patched", id, r, since)
		}
	}
	open, err := eng.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-E", Open: true})
	if err != nil || len(open.Records) != 4 {
		t.Errorf("open exposures %+v, %v", open.Records, err)
	}
}

// An advisory's exposures are recorded as sets of hosts; taking hosts out of them one by
// one, concurrently and from the same sets, moves each host to a row exactly once, with its
// own fleet and the set's start, and leaves every other host in its set.
func TestExposureSetsGiveUpEachHostOnce(t *testing.T) {
	e := newEnv(t, autoPolicy)
	web := e.inv.expose("web", nil, 12_000, "DSA-S") // about 3 hosts a bucket
	dbHosts := e.inv.expose("db", nil, 4_000, "DSA-S")
	ctx := context.Background()
	since := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	eng, pool := e.engine(func() time.Time { return since })
	if err := eng.OnAdvisory(ctx, events.Meta{ID: "rev-1"}, advisory("DSA-S", events.SeverityHigh)); err != nil {
		t.Fatal(err)
	}
	var sets int
	if err := pool.QueryRow(ctx, `select count(*) from exposure_sets where advisory_id = 'DSA-S'`).Scan(&sets); err != nil || sets > plannerdb.ExposureBuckets {
		t.Fatalf("%d sets (%v), want at most one a bucket", sets, err)
	}
	// Every third host, by 8 takers at once.
	fleetOf := map[string]string{}
	var taken []string
	for i, id := range append(web, dbHosts...) {
		fleetOf[id] = map[bool]string{true: "web", false: "db"}[i < len(web)]
		if i%3 == 0 {
			taken = append(taken, id)
		}
	}
	q := plannerdb.New(pool)
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < len(taken); i += 8 {
				id := taken[i]
				if err := q.TakeExposures(ctx, plannerdb.TakeExposuresParams{HostID: id, Bucket: plannerdb.ExposureBucket(id), Every: true}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, `select host_id, fleet, exposed_since from exposures where advisory_id = 'DSA-S'`)
	if err != nil {
		t.Fatal(err)
	}
	asRows := map[string]bool{}
	for rows.Next() {
		var id, fleet string
		var at time.Time
		if err := rows.Scan(&id, &fleet, &at); err != nil {
			t.Fatal(err)
		}
		if fleet != fleetOf[id] || !at.Equal(since) {
			t.Errorf("row of %s: fleet %q since %v, want %q since %v", id, fleet, at, fleetOf[id], since)
		}
		asRows[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(asRows) != len(taken) {
		t.Errorf("%d hosts moved to rows, want %d", len(asRows), len(taken))
	}
	set, err := pool.Query(ctx, `select unnest(host_ids), unnest(fleets), bucket from exposure_sets where advisory_id = 'DSA-S'`)
	if err != nil {
		t.Fatal(err)
	}
	inSets := 0
	for set.Next() {
		var id, fleet string
		var bucket int32
		if err := set.Scan(&id, &fleet, &bucket); err != nil {
			t.Fatal(err)
		}
		if asRows[id] || fleet != fleetOf[id] || bucket != plannerdb.ExposureBucket(id) {
			t.Errorf("%s in a set (fleet %q, bucket %d) and a row: %v", id, fleet, bucket, asRows[id])
		}
		inSets++
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	if want := len(fleetOf) - len(taken); inSets != want {
		t.Errorf("%d hosts left in sets, want %d", inSets, want)
	}
	// The compliance view lists every host once either way.
	n, req := 0, query.ComplianceRequest{AdvisoryID: "DSA-S", Limit: 1000}
	for {
		page, err := eng.Compliance(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Records)
		if req.Cursor = page.NextCursor; req.Cursor == "" {
			break
		}
	}
	if n != len(fleetOf) {
		t.Errorf("compliance lists %d exposures, want %d", n, len(fleetOf))
	}
	one, err := eng.Compliance(ctx, query.ComplianceRequest{HostID: web[1]})
	if err != nil || len(one.Records) != 1 || one.Records[0].Fleet != "web" || !one.Records[0].ExposedSince.Equal(since) {
		t.Errorf("compliance of %s in a set: %+v %v", web[1], one.Records, err)
	}
}

// The compliance view pages through rows and sets alike, in (advisory, host) order, every
// exposure once, filtered or not.
func TestCompliancePagesThroughRowsAndSets(t *testing.T) {
	e := newEnv(t, autoPolicy)
	web := e.inv.expose("web", nil, 3_000, "DSA-P")
	ctx := context.Background()
	eng, pool := e.engine(nil)
	for _, id := range []string{"DSA-P", "DSA-Q"} {
		if err := eng.OnAdvisory(ctx, events.Meta{ID: id}, advisory(id, events.SeverityHigh)); err != nil {
			t.Fatal(err)
		}
		e.inv.expose("db", nil, 1_000, id) // exposed to DSA-Q only
	}
	// Some of DSA-P's exposures are rows, one of them patched.
	q := plannerdb.New(pool)
	for _, id := range web[:50] {
		if err := q.TakeExposures(ctx, plannerdb.TakeExposuresParams{HostID: id, Bucket: plannerdb.ExposureBucket(id), Every: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `update exposures set patched_at = now() where host_id = $1 and advisory_id = 'DSA-P'`, web[7]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		req  query.ComplianceRequest
		want int
	}{
		{query.ComplianceRequest{}, 3_000 + 4_000},
		{query.ComplianceRequest{Open: true}, 3_000 - 1 + 4_000},
		{query.ComplianceRequest{Fleet: "db"}, 1_000},
		{query.ComplianceRequest{AdvisoryID: "DSA-P"}, 3_000},
	} {
		c.req.Limit = 700
		var last string
		n := 0
		for {
			page, err := eng.Compliance(ctx, c.req)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Records {
				key := r.AdvisoryID + "\x00" + r.HostID
				if key <= last {
					t.Fatalf("%+v: %s/%s after %q", c.req, r.AdvisoryID, r.HostID, last)
				}
				last = key
				n++
			}
			if c.req.Cursor = page.NextCursor; c.req.Cursor == "" {
				break
			}
		}
		if n != c.want {
			t.Errorf("%+v: %d exposures listed, want %d", c.req, n, c.want)
		}
	}
}

// A host re-evaluated against the advisories it was read with ends only exposures to those:
// one to an advisory stored since (its exposures recorded, its plan not yet committed) stays
// open, as does one it is still exposed to; one it is no longer exposed to is patched.
func TestReevaluationEndsOnlyTheExposuresItJudged(t *testing.T) {
	e := newEnv(t, autoPolicy)
	hosts := e.inv.expose("web", nil, 2, "DSA-J")
	e.inv.expose("web", nil, 2, "DSA-K") // the same hosts
	ctx := context.Background()
	eng, pool := e.engine(nil)
	for _, id := range []string{"DSA-J", "DSA-K"} {
		if err := eng.OnAdvisory(ctx, events.Meta{ID: id}, advisory(id, events.SeverityHigh)); err != nil {
			t.Fatal(err)
		}
	}
	// DSA-J as if stored after the re-evaluation read the advisories; the host's libssl3 is
	// now at DSA-K's fixed version, and so past DSA-J's too.
	if _, err := pool.Exec(ctx, `delete from advisories where advisory_id = 'DSA-J'`); err != nil {
		t.Fatal(err)
	}
	e.inv.setPackages(hosts[0], "", query.Package{Name: "libssl3", Version: "3.0.13-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.13-1~deb12u1", Status: "install ok installed"})
	if err := eng.OnInventory(ctx, events.Meta{ID: "scan-1"}, events.HostInventoryReported{HostID: hosts[0]}); err != nil {
		t.Fatal(err)
	}
	got, err := eng.Compliance(ctx, query.ComplianceRequest{HostID: hosts[0]})
	if err != nil || len(got.Records) != 2 {
		t.Fatalf("records of %s: %+v, %v", hosts[0], got.Records, err)
	}
	for _, r := range got.Records {
		if patched := !r.PatchedAt.IsZero(); patched != (r.AdvisoryID == "DSA-K") {
			t.Errorf("%s: patched at %v; want only DSA-K patched", r.AdvisoryID, r.PatchedAt)
		}
	}
	other, err := eng.Compliance(ctx, query.ComplianceRequest{HostID: hosts[1], Open: true})
	if err != nil || len(other.Records) != 2 {
		t.Errorf("open records of %s, not re-evaluated: %+v, %v", hosts[1], other.Records, err)
	}
}

// A rollout waiting for approval has started no wave, so its hosts wait in its plan's
// arrays: they are listed as pending, and they cover the same fix when another advisory
// asks for it, so no second rollout is planned for them.
func TestWaitingRolloutListsAndCoversItsHosts(t *testing.T) {
	e := newEnv(t, autoPolicy)
	hosts := e.inv.expose("db", nil, 3, "DSA-C1") // approval required
	e.run("a")
	e.bus.Publish(t, advisory("DSA-C1", events.SeverityHigh), "DSA-C1")
	planned := decode[events.RolloutPlanned](t, e.waitEvent("RolloutPlanned", 1)[0])
	d := e.rollout(planned.RolloutID)
	if d.HostCount != 3 || d.Pending != 3 || len(d.Hosts) != 3 {
		t.Fatalf("waiting rollout %+v with hosts %+v", d.RolloutSummary, d.Hosts)
	}
	for i, h := range d.Hosts {
		if h.HostID != hosts[i] || h.State != "pending" || len(h.Packages) != 1 || h.Packages[0].Name != "libssl3" {
			t.Errorf("host %d: %+v", i, h)
		}
	}
	e.waitProcessed(e.bus.Publish(t, advisory("DSA-C2", events.SeverityHigh), "DSA-C2"))
	ctx := context.Background()
	if c, err := e.client.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-C2"}); err != nil || len(c.Records) != 3 {
		t.Fatalf("DSA-C2's exposures: %+v, %v; want 3", c.Records, err)
	}
	list, err := e.client.Rollouts(ctx, query.RolloutsRequest{Fleet: "db"})
	if err != nil || len(list.Rollouts) != 1 {
		t.Fatalf("rollouts of db: %+v, %v; want the waiting one only", list.Rollouts, err)
	}
}

// A new host in a replace fleet gets its full upgrade in place: it serves nothing yet, and
// replacing it would provision another new host, and that one another.
func TestNewHostInAReplaceFleetIsUpgradedInPlace(t *testing.T) {
	e := newEnv(t, `
fleets:
  - name: web
    fleet: web
    strategy: replace
    reboot: if-required
`)
	e.run("a")
	e.bus.Publish(t, events.HostRegistered{HostID: "web-new", Name: "web-new", Fleet: "web", New: true, SSH: events.SSHTarget{Address: "10.0.0.9", TOFU: true}}, "web-new")
	job := e.waitJobs(1)[0]
	if job.Kind != events.KindFull || job.HostID != "web-new" || job.Strategy != events.StrategyInPlace || job.Reboot != events.RebootIfRequired {
		t.Fatalf("job = %+v: want a full upgrade in place, the fleet's reboot policy", job)
	}
}

// The new host of a replace job is upgraded (and rebooted) by that job, before it takes
// traffic: its registration plans nothing, or a second job would work on it at once.
func TestHostRegisteredByAReplaceJobGetsNoRolloutOfItsOwn(t *testing.T) {
	e := newEnv(t, autoPolicy)
	id := e.inv.expose("web", nil, 1, "DSA-9")[0] // the inventory knows it
	e.run("a")
	m := e.bus.Publish(t, events.HostRegistered{HostID: id, Name: id, Fleet: "web", New: true, Replaces: "web-7",
		SSH: events.SSHTarget{Address: "10.0.0.8", TOFU: true}}, id)
	e.waitProcessed(m)
	if n, planned := e.exec.count(), len(e.rolloutEvents("RolloutPlanned")); n != 0 || planned != 0 {
		t.Fatalf("%d jobs and %d rollouts for a host its replace job upgrades, want none", n, planned)
	}
}

// A host decommissioned while exposed is no longer exposed: its exposure ends when it is
// retired (not patched), and the open compliance view leaves it out.
func TestADecommissionedHostsExposureEnds(t *testing.T) {
	e := newEnv(t, `
fleets:
  - name: web
    fleet: web
    security_updates: notify-only
`)
	hosts := e.inv.expose("web", nil, 2, "DSA-R")
	e.run("a")
	e.waitProcessed(e.bus.Publish(t, advisory("DSA-R", events.SeverityHigh), "DSA-R"))
	ctx := context.Background()
	if c, err := e.client.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-R", Open: true}); err != nil || len(c.Records) != 2 {
		t.Fatalf("DSA-R's open exposures: %+v, %v; want 2", c.Records, err)
	}
	m := e.bus.Publish(t, events.HostDecommissioned{HostID: hosts[0], Reason: "replaced"}, hosts[0])
	e.waitProcessed(m)
	open, err := e.client.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-R", Open: true})
	if err != nil || len(open.Records) != 1 || open.Records[0].HostID != hosts[1] {
		t.Fatalf("open exposures %+v, %v: want only %s", open.Records, err, hosts[1])
	}
	all, err := e.client.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-R", HostID: hosts[0]})
	if err != nil || len(all.Records) != 1 {
		t.Fatalf("records of %s: %+v, %v", hosts[0], all.Records, err)
	}
	r := all.Records[0]
	if r.RetiredAt.IsZero() || !r.PatchedAt.IsZero() || r.Open() || r.Vulnerable != r.RetiredAt.Sub(r.ExposedSince) {
		t.Errorf("record %+v: want retired, not patched, exposed until the retirement", r)
	}
	// Registered again under the same id and still exposed: the exposure is open again, from now.
	m = e.bus.Publish(t, events.HostRegistered{HostID: hosts[0], Name: hosts[0], Fleet: "web", SSH: events.SSHTarget{Address: "10.0.0.5", TOFU: true}}, hosts[0])
	e.waitProcessed(m)
	again, err := e.client.Compliance(ctx, query.ComplianceRequest{AdvisoryID: "DSA-R", HostID: hosts[0], Open: true})
	if err != nil || len(again.Records) != 1 || !again.Records[0].RetiredAt.IsZero() || again.Records[0].ExposedSince.Before(r.RetiredAt) {
		t.Errorf("records of %s registered again: %+v, %v; want one open exposure since its retirement or later", hosts[0], again.Records, err)
	}
}
