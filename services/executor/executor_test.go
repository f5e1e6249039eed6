package executor_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/services/executor/internal/joblog"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

const fixed = "3.0.19-1~deb12u3"

func TestSecurityUpgradeIsInstalledVerifiedAnnouncedAndLogged(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	host := e.fleet.Hosts()[1]
	var live atomic.Int64
	sub, err := e.bus.Conn.Subscribe(joblog.Subject(host.Name), func(m *nats.Msg) { live.Add(int64(len(m.Data))) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e.run("a", nil)

	req := e.job(1, nil)
	c := e.mustComplete(req.JobID, 60*time.Second)
	if got := host.PackageVersion("openssl"); got != fixed {
		t.Errorf("openssl on the host is %s, want %s", got, fixed)
	}
	want := map[string][2]string{"openssl": {"3.0.17-1~deb12u2", fixed}, "libssl3": {"3.0.17-1~deb12u2", fixed}}
	if len(c.Packages) != 2 {
		t.Fatalf("packages %+v, want openssl and libssl3", c.Packages)
	}
	for _, p := range c.Packages {
		if w := want[p.Name]; p.Before != w[0] || p.After != w[1] {
			t.Errorf("package %s: %s -> %s, want %s -> %s", p.Name, p.Before, p.After, w[0], w[1])
		}
	}
	if c.Rebooted || c.RebootPending || c.Duration <= 0 || c.Kind != events.KindSecurity {
		t.Errorf("completed %+v: want no reboot, a duration, the job's kind", c)
	}
	started := e.envelopes(events.StreamUpgrades, "UpgradeStarted", req.JobID)
	if len(started) != 1 || started[0].CorrelationID != req.RolloutID {
		t.Errorf("UpgradeStarted %+v: want one, correlated with the rollout", started)
	}
	outcomes := e.envelopes(events.StreamUpgrades, "UpgradeCompleted", req.JobID)
	if outcomes[0].CorrelationID != req.RolloutID || outcomes[0].CausationID == "" {
		t.Errorf("UpgradeCompleted correlation %q causation %q", outcomes[0].CorrelationID, outcomes[0].CausationID)
	}
	log := e.jobLog(req.JobID)
	for _, s := range []string{"==> patchfleet:op install", "==> patchfleet:section after", "step complete"} {
		if !strings.Contains(log, s) {
			t.Errorf("job log lacks %q:\n%s", s, log)
		}
	}
	if live.Load() == 0 {
		t.Error("nothing was published live on " + joblog.Subject(host.Name))
	}
	// One look at the host, before apt-get update: the update changes nothing the job
	// reads, and the install reports the packages it left.
	if n := strings.Count(log, "==> patchfleet:op state "); n != 1 {
		t.Errorf("the job looked at the host %d times, want 1:\n%s", n, log)
	}

	// The same job delivered again (a planner retry) is not run again: the same outcome
	// is announced with the same id, which the stream stores once.
	e.publish(req)
	waitFor(t, func() bool { return e.deliveredAndAcked() })
	if n := len(e.envelopes(events.StreamUpgrades, "UpgradeStarted", req.JobID)); n != 1 {
		t.Errorf("UpgradeStarted %d times, want 1", n)
	}
	if n := len(e.envelopes(events.StreamUpgrades, "UpgradeCompleted", req.JobID)); n != 1 {
		t.Errorf("UpgradeCompleted %d times, want 1", n)
	}
}

func (e *env) jobLog(jobID string) string {
	e.t.Helper()
	b, err := joblog.Read(context.Background(), e.db, jobID)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// deliveredAndAcked reports whether the JOBS work queue is empty (every job acknowledged).
func (e *env) deliveredAndAcked() bool {
	s, err := e.bus.JS.Stream(context.Background(), events.StreamJobs)
	if err != nil {
		return false
	}
	info, err := s.Info(context.Background())
	return err == nil && info.State.Msgs == 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRebootIfRequiredRebootsAndWaitsForANewBootID(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	host := e.fleet.Hosts()[0]
	e.run("a", nil)
	boot := host.BootID()
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "libc6", MinVersion: "2.36-9+deb12u15"}}
		r.Reboot = events.RebootIfRequired
		r.HealthCheck = "true"
	})
	c := e.mustComplete(req.JobID, 60*time.Second)
	if !c.Rebooted || c.RebootPending || c.Downtime <= 0 {
		t.Errorf("completed %+v: want rebooted, nothing pending, a downtime", c)
	}
	if host.BootID() == boot || host.Boots() != 2 {
		t.Errorf("host booted %d times (boot id %s, was %s), want exactly one reboot", host.Boots(), host.BootID(), boot)
	}
	rb := e.envelopes(events.StreamHosts, "HostRebooted", req.JobID)
	if len(rb) != 1 {
		t.Fatalf("HostRebooted %d times, want 1", len(rb))
	}
	var ev events.HostRebooted
	if err := events.DecodeData(rb[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.OldBootID != boot || ev.NewBootID != host.BootID() || !ev.HealthChecked {
		t.Errorf("HostRebooted %+v: want %s -> %s, health checked", ev, boot, host.BootID())
	}
}

func TestRebootNeverAnnouncesThePendingReboot(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	host := e.fleet.Hosts()[0]
	e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "libc6", MinVersion: "2.36-9+deb12u15"}}
	})
	c := e.mustComplete(req.JobID, 60*time.Second)
	if c.Rebooted || !c.RebootPending || !c.RebootRequired {
		t.Errorf("completed %+v: want a pending reboot and no reboot", c)
	}
	if host.Boots() != 1 {
		t.Errorf("host rebooted under reboot: never")
	}
	rr := e.envelopes(events.StreamHosts, "RebootRequired", req.JobID)
	if len(rr) != 1 {
		t.Fatalf("RebootRequired %d times, want 1", len(rr))
	}
	var ev events.RebootRequired
	if err := events.DecodeData(rr[0], &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Packages) == 0 || ev.Packages[0] != "libc6" {
		t.Errorf("RebootRequired packages %v, want libc6", ev.Packages)
	}
}

func TestFaultsFailJobsWithTheirReason(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 6})
	hs := e.fleet.Hosts()
	hs[0].SetFaults(fleetsim.FaultAptFail)
	hs[1].SetFaults(fleetsim.FaultRebootHang)
	hs[2].HoldLock(time.Hour)
	hs[3].Hold("openssl")
	hs[4].SetFaults(fleetsim.FaultHealthFail)
	e.inv.pin(hs[5].Name, hs[0].HostKey()) // as if the host's key had changed
	e.run("a", func(c *executor.Config) { c.LockTimeout = time.Second; c.RebootTimeout = 3 * time.Second })

	apt := e.job(0, nil)
	hang := e.job(1, func(r *events.UpgradeRequested) { r.Reboot = events.RebootAlways })
	locked := e.job(2, nil)
	held := e.job(3, nil)
	health := e.job(4, func(r *events.UpgradeRequested) { r.HealthCheck = "curl -fsS http://127.0.0.1/healthz" })
	key := e.job(5, nil)

	f := e.mustFail(apt.JobID, events.FailAptError, 60*time.Second)
	if f.OutputTail == "" || !strings.Contains(f.Message, "exited 100") {
		t.Errorf("apt failure %q without apt's exit status or output tail %q", f.Message, f.OutputTail)
	}
	e.mustFail(hang.JobID, events.FailRebootTimeout, 60*time.Second)
	if f := e.mustFail(locked.JobID, events.FailDpkgLocked, 60*time.Second); !strings.Contains(f.Message, "held by process 4242 (unattended-upgr)") {
		t.Errorf("lock failure %q does not name the holder", f.Message)
	}
	f = e.mustFail(held.JobID, events.FailHeldPackage, 60*time.Second)
	if !strings.Contains(f.Message, "openssl") {
		t.Errorf("held failure %q does not name openssl", f.Message)
	}
	e.mustFail(health.JobID, events.FailHealthCheck, 60*time.Second)
	e.mustFail(key.JobID, events.FailHostKeyMismatch, 60*time.Second)
	km := e.envelopes(events.StreamHosts, "HostKeyMismatch", key.JobID)
	if len(km) != 1 {
		t.Fatalf("HostKeyMismatch %d times, want 1", len(km))
	}
	if hs[3].PackageVersion("openssl") == fixed {
		t.Error("held openssl was upgraded")
	}
}

// apt upgrades to what the repository has and exits 0; when that is still below the fix,
// the job fails instead of calling the host fixed.
func TestAnInstallThatLeavesTheHostBelowTheFixFails(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "openssl", MinVersion: "3.0.20-1~deb12u1"}}
	})
	f := e.mustFail(req.JobID, events.FailNotFixed, 60*time.Second)
	if want := "openssl " + fixed + " < 3.0.20-1~deb12u1"; !strings.Contains(f.Message, want) {
		t.Errorf("failure %q does not say %q", f.Message, want)
	}
	if got := e.fleet.Hosts()[0].PackageVersion("openssl"); got != fixed {
		t.Errorf("openssl on the host is %s, want %s (the repository's newest)", got, fixed)
	}
}

func TestLockHeldThenReleasedWaitsAndProceeds(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	e.fleet.Hosts()[0].HoldLock(2 * time.Second)
	e.run("a", func(c *executor.Config) { c.LockTimeout = 20 * time.Second })
	req := e.job(0, nil)
	e.mustComplete(req.JobID, 60*time.Second)
}

func TestSlowHostCompletes(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1, Latency: 20 * time.Millisecond, AptLatency: 50 * time.Millisecond})
	e.fleet.Hosts()[0].SetFaults(fleetsim.FaultSlow)
	e.run("a", nil)
	req := e.job(0, nil)
	e.mustComplete(req.JobID, 90*time.Second)
}

func TestDroppedConnectionsEndUnreachableAfterRetries(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	e.fleet.Hosts()[0].SetFaults(fleetsim.FaultDrop)
	e.run("a", func(c *executor.Config) { c.TransportRetries = 1; c.MaxAttempts = 2 })
	req := e.job(0, nil)
	e.mustFail(req.JobID, events.FailUnreachable, 90*time.Second)
}

func TestDroppedConnectionRecoversAndTheJobResumes(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	h := e.fleet.Hosts()[0]
	h.SetFaults(fleetsim.FaultDrop)
	e.run("a", nil)
	req := e.job(0, nil)
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "failed") })
	h.SetFaults(0)
	e.mustComplete(req.JobID, 60*time.Second)
}

func TestInvalidJobIsRejectedBeforeAnySSH(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	e.run("a", nil)
	host := e.fleet.Hosts()[0]
	publishRaw(t, e, "job-evil", host.Name, "openssl;reboot")
	f := e.mustFail("job-evil", events.FailInvalidJob, 60*time.Second)
	if !strings.Contains(f.Message, "openssl;reboot") && !strings.Contains(f.Message, "not allowed") {
		t.Errorf("invalid_job message %q does not say what was wrong", f.Message)
	}
	if log := e.jobLog("job-evil"); log != "" {
		t.Errorf("an op ran for an invalid job:\n%s", log)
	}
	if host.Boots() != 1 || host.PackageVersion("openssl") == fixed {
		t.Error("the host was touched")
	}
}

// publishRaw publishes a job with the given package name, built by hand: events.New would
// refuse an invalid one, as the runner does.
func publishRaw(t *testing.T, e *env, jobID, hostID, pkg string) {
	t.Helper()
	data, _ := json.Marshal(map[string]any{"job_id": jobID, "rollout_id": "rollout-1", "host_id": hostID,
		"kind": "security", "strategy": "in-place", "reboot": "never",
		"packages": []map[string]string{{"name": pkg, "min_version": "1.1"}}})
	env := events.Envelope{ID: events.NewID(), Type: "UpgradeRequested", SchemaVersion: 1, Time: time.Now().UTC(),
		Producer: "test", CorrelationID: "rollout-1", Data: data}
	raw, _ := json.Marshal(env)
	if err := events.Publish(context.Background(), e.bus.JS, events.Message{Subject: "pf.jobs.UpgradeRequested.v1", ID: env.ID, Data: raw}); err != nil {
		t.Fatal(err)
	}
}

func TestReplaceJobsFailClearlyWithoutProviderHooks(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Strategy = events.StrategyReplace
		r.Kind = events.KindFull
		r.Packages = nil
	})
	e.mustFail(req.JobID, events.FailReplace, 60*time.Second)
	if e.fleet.Hosts()[0].PackageVersion("openssl") == fixed {
		t.Error("a replace job upgraded the old host in place")
	}
}

func TestNoSSHCredentialsFailJobsWithAClearReason(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	e.run("a", func(c *executor.Config) { c.SSHKeyFiles = nil })
	req := e.job(0, nil)
	f := e.mustFail(req.JobID, events.FailUnreachable, 60*time.Second)
	if !strings.Contains(f.Message, "no SSH key") {
		t.Errorf("message %q does not say that no key is configured", f.Message)
	}
}

func TestSecurityJobWithoutPackagesAppliesEverySecurityUpdateAndNothingElse(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 3})
	host := e.fleet.Hosts()[2] // debian12-docker: docker-ce and base-files have non-security updates
	docker, base := host.PackageVersion("docker-ce"), host.PackageVersion("base-files")
	e.run("a", nil)
	req := e.job(2, func(r *events.UpgradeRequested) { r.Packages = nil; r.ConfigureUnattended = true })
	c := e.mustComplete(req.JobID, 60*time.Second)
	got := map[string]string{}
	for _, p := range c.Packages {
		got[p.Name] = p.Before + " -> " + p.After
	}
	for _, n := range []string{"openssl", "libssl3", "libc6"} {
		if !strings.HasSuffix(got[n], " -> "+host.PackageVersion(n)) || strings.HasPrefix(got[n], host.PackageVersion(n)) {
			t.Errorf("%s: reported %q, host has %s: want a security upgrade", n, got[n], host.PackageVersion(n))
		}
	}
	if host.PackageVersion("openssl") != fixed {
		t.Errorf("openssl is %s, want %s", host.PackageVersion("openssl"), fixed)
	}
	if host.PackageVersion("docker-ce") != docker || host.PackageVersion("base-files") != base {
		t.Errorf("non-security updates applied: docker-ce %s (was %s), base-files %s (was %s)",
			host.PackageVersion("docker-ce"), docker, host.PackageVersion("base-files"), base)
	}
	if _, ok := got["docker-ce"]; ok {
		t.Errorf("docker-ce reported as changed: %+v", c.Packages)
	}
	if !c.RebootPending {
		t.Errorf("libc6 asked for a reboot; completed %+v", c)
	}
	log := e.jobLog(req.JobID)
	for _, s := range []string{"==> patchfleet:op security-upgrade", "security upgrades selected", "==> patchfleet:op unattended"} {
		if !strings.Contains(log, s) {
			t.Errorf("job log lacks %q", s)
		}
	}
}
