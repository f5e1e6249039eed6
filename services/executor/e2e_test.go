//go:build e2e

package executor_test

// Real-host tests: testfleet's Debian 12 hosts (real sshd, apt, dpkg, a local security
// repository with pf-demo 1.0 -> 1.1 whose postinst asks for a reboot, pf-libdemo's two
// binaries, pf-broken with a failing postinst). Run with `make e2e` (root).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/tools/testfleet"
)

type realEnv struct {
	*env
	fleet *testfleet.Fleet
}

func newRealEnv(t *testing.T, n int) *realEnv {
	t.Helper()
	e := newBase(t)
	fleet := testfleet.New(t, n)
	hosts := map[string]query.HostDetail{}
	for _, h := range fleet.Hosts() {
		e.names = append(e.names, h.Name())
		hosts[h.Name()] = query.HostDetail{Host: query.Host{ID: h.Name(), Name: h.Name(), Fleet: "e2e",
			SSH: events.SSHTarget{Address: "127.0.0.1", Port: h.Port(), User: "root", HostKey: authorizedKey(h.HostKey())}}}
	}
	e.keyFile = fleet.ClientKeyPath()
	e.inv = startInventory(t, e.bus.Conn, hosts)
	return &realEnv{env: e, fleet: fleet}
}

func version(t *testing.T, h *testfleet.Host, pkg string) string {
	t.Helper()
	out, err := h.MustRun(context.Background(), "dpkg-query -W -f='${Version}' "+pkg)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func demo(r *events.UpgradeRequested) {
	r.Packages = []events.PackageTarget{{Name: "pf-demo", MinVersion: "1.1"}, {Name: "libpfdemo1", MinVersion: "1.1"}, {Name: "pf-libdemo-bin", MinVersion: "1.1"}}
}

func TestE2ESecurityFixIsUpgradedAndVerified(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	e.run("a", nil)
	req := e.job(0, demo)
	c := e.mustComplete(req.JobID, 3*time.Minute)
	for _, p := range []string{"pf-demo", "libpfdemo1", "pf-libdemo-bin"} {
		if v := version(t, h, p); v != "1.1" {
			t.Errorf("%s is %s on the host, want 1.1", p, v)
		}
	}
	for _, p := range c.Packages {
		if p.Before != "1.0" || p.After != "1.1" {
			t.Errorf("result %+v, want 1.0 -> 1.1", p)
		}
	}
	if !c.RebootPending || c.Rebooted {
		t.Errorf("pf-demo 1.1 asks for a reboot and the job says never: want pending, got %+v", c)
	}
	if len(e.envelopes(events.StreamHosts, "RebootRequired", req.JobID)) != 1 {
		t.Error("RebootRequired not announced")
	}
}

// The advisory names a fix the repository does not have yet: apt upgrades to what it has
// and exits 0, and the job fails rather than call the host fixed.
func TestE2EAFixTheRepositoryLacksFailsAsNotFixed(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "pf-demo", MinVersion: "1.2"}}
	})
	f := e.mustFail(req.JobID, events.FailNotFixed, 3*time.Minute)
	if !strings.Contains(f.Message, "pf-demo 1.1 < 1.2") {
		t.Errorf("failure %q does not name pf-demo 1.1 < 1.2", f.Message)
	}
	if v := version(t, h, "pf-demo"); v != "1.1" {
		t.Errorf("pf-demo is %s on the host, want 1.1 (the repository's newest)", v)
	}
}

func TestE2ERebootIfRequiredRebootsTheHost(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	boot := h.BootID()
	e.run("a", func(c *executor.Config) { c.RebootTimeout = time.Minute })
	req := e.job(0, func(r *events.UpgradeRequested) {
		demo(r)
		r.Reboot = events.RebootIfRequired
		r.HealthCheck = "test -x /bin/sh"
	})
	c := e.mustComplete(req.JobID, 3*time.Minute)
	if !c.Rebooted || h.BootID() == boot {
		t.Errorf("completed %+v, boot id %s (was %s): want a reboot", c, h.BootID(), boot)
	}
	if len(e.envelopes(events.StreamHosts, "HostRebooted", req.JobID)) != 1 {
		t.Error("HostRebooted not announced once")
	}
}

// Strategy replace on real hosts: the provider hands out a second test host, whose full
// upgrade (pf-demo 1.1 asks for a reboot) is followed by its reboot and its health check, and
// only then does the failover address move to it.
func TestE2EReplaceRebootsTheNewHostBeforeTheSwitch(t *testing.T) {
	e := newRealEnv(t, 2)
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	// pf-broken's update fails by design; a held package is left alone by the full upgrade.
	if err := nw.HoldPackage(context.Background(), "pf-broken"); err != nil {
		t.Fatal(err)
	}
	oldBoot, newBoot := old.BootID(), nw.BootID()
	p := providerOf(t, poolHost{nw.Name(), nw.Port(), nw.HostKey()})
	e.run("a", func(c *executor.Config) { p.configure(c); c.RebootTimeout = time.Minute })
	req := e.job(0, func(r *events.UpgradeRequested) {
		replaceJob(r)
		r.Reboot = events.RebootIfRequired
		r.HealthCheck = "test -x /bin/sh"
	})
	e.mustComplete(req.JobID, 4*time.Minute)
	if v := version(t, nw, "pf-demo"); v != "1.1" {
		t.Errorf("pf-demo is %s on the new host, want 1.1", v)
	}
	if v := version(t, old, "pf-demo"); v != "1.0" {
		t.Errorf("pf-demo is %s on the old host, want 1.0 (it is replaced, not upgraded)", v)
	}
	if nw.BootID() == newBoot || nw.Boots() != 2 || old.BootID() != oldBoot {
		t.Errorf("new host booted %d times (boot id %s, was %s), old host boot id %s (was %s): want only the new host rebooted, once",
			nw.Boots(), nw.BootID(), newBoot, old.BootID(), oldBoot)
	}
	if n := len(e.hostEvents("HostRebooted", nw.Name())); n != 1 {
		t.Errorf("HostRebooted for the new host %d times, want 1", n)
	}
	log := e.jobLog(req.JobID)
	back, health, sw := strings.Index(log, "the new host is back with boot id"), strings.Index(log, "replace stage health"), strings.Index(log, "replace stage switch")
	if back < 0 || health < back || sw < health {
		t.Errorf("want the reboot, then the health check, then the switch; job log:\n%s", log)
	}
	want := []string{"provision " + old.Name(), "switch " + old.Name() + " " + nw.Name(), "retire " + old.Name()}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q", got, want)
	}
}

func TestE2EFailingPostinstIsReportedWithItsOutput(t *testing.T) {
	e := newRealEnv(t, 1)
	e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "pf-broken", MinVersion: "1.1"}}
	})
	f := e.mustFail(req.JobID, events.FailAptError, 3*time.Minute)
	if !strings.Contains(f.Message, "pf-broken") || !strings.Contains(f.OutputTail, "pf-broken") {
		t.Errorf("failure %q / tail %q does not name pf-broken", f.Message, f.OutputTail)
	}
}

// The job's install runs apt-get update first, in the same command: when the update fails
// (a source apt cannot read), the job fails saying so and nothing is installed.
func TestE2EAFailingAptUpdateFailsTheJobBeforeAnyInstall(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	if _, err := h.MustRun(context.Background(), "echo 'deb [trusted=yes] file:/srv/pf-missing ./' >/etc/apt/sources.list.d/pf-missing.list"); err != nil {
		t.Fatal(err)
	}
	e.run("a", nil)
	req := e.job(0, demo)
	f := e.mustFail(req.JobID, events.FailAptError, 3*time.Minute)
	if !strings.HasPrefix(f.Message, "apt-get update failed: ") || !strings.Contains(f.OutputTail, "pf-missing") {
		t.Errorf("failure %q / tail %q, want apt-get update's error about pf-missing", f.Message, f.OutputTail)
	}
	if v := version(t, h, "pf-demo"); v != "1.0" {
		t.Errorf("pf-demo %s after a failed update, want 1.0", v)
	}
	if log := e.jobLog(req.JobID); strings.Contains(log, "==> patchfleet:section install") {
		t.Errorf("install ran after the failed update:\n%s", log)
	}
}

func TestE2EDpkgLockHeldThenReleasedWaitsAndProceeds(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	release, err := h.HoldDpkgLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.run("a", func(c *executor.Config) { c.LockTimeout = time.Minute })
	req := e.job(0, demo)
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "patchfleet:op install") })
	time.Sleep(2 * time.Second) // keep the lock while apt waits: that is the behaviour under test
	if err := release(); err != nil {
		t.Fatal(err)
	}
	e.mustComplete(req.JobID, 3*time.Minute)
}

func TestE2EHeldPackageIsRefused(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	if err := h.HoldPackage(context.Background(), "pf-demo"); err != nil {
		t.Fatal(err)
	}
	e.run("a", nil)
	req := e.job(0, demo)
	e.mustFail(req.JobID, events.FailHeldPackage, 3*time.Minute)
	if v := version(t, h, "pf-demo"); v != "1.0" {
		t.Errorf("held pf-demo is %s", v)
	}
}

func TestE2EHostKeyMismatchIsRefused(t *testing.T) {
	e := newRealEnv(t, 2)
	hs := e.fleet.Hosts()
	e.inv.pin(hs[0].Name(), hs[1].HostKey())
	e.run("a", nil)
	req := e.job(0, demo)
	e.mustFail(req.JobID, events.FailHostKeyMismatch, 3*time.Minute)
	if len(e.envelopes(events.StreamHosts, "HostKeyMismatch", req.JobID)) != 1 {
		t.Error("HostKeyMismatch not announced")
	}
	if v := version(t, hs[0], "pf-demo"); v != "1.0" {
		t.Errorf("pf-demo is %s on a host that presented the wrong key", v)
	}
}

// TestE2EExecutorKilledMidJobFinishesOnce runs the executor binary, kills it with SIGKILL
// while apt waits for the dpkg lock, and lets a second executor take the job over.
func TestE2EExecutorKilledMidJobFinishesOnce(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	bin := filepath.Join(t.TempDir(), "executor")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/executor").CombinedOutput(); err != nil {
		t.Fatalf("build executor: %v\n%s", err, out)
	}
	release, err := h.HoldDpkgLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PATCHFLEET_NATS_URL="+e.url, "PATCHFLEET_DATABASE_URL="+e.dbURL,
		"PATCHFLEET_HTTP_ADDR=127.0.0.1:0", "PATCHFLEET_EXECUTOR_SSH_KEY="+e.keyFile, "PATCHFLEET_EXECUTOR_ACK_WAIT=3s",
		"PATCHFLEET_EXECUTOR_LEASE_TTL=3s", "PATCHFLEET_EXECUTOR_LOCK_TIMEOUT=2m", "PATCHFLEET_EXECUTOR_INSTANCE=doomed",
		"PATCHFLEET_LOG_FORMAT=text")
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	req := e.job(0, demo)
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "patchfleet:op install") })
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no drain, no ack, no nak
		t.Fatal(err)
	}
	cmd.Wait()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	e.run("b", nil)
	c := e.mustComplete(req.JobID, 3*time.Minute)
	waitFor(t, e.deliveredAndAcked)
	if n := len(e.envelopes(events.StreamUpgrades, "UpgradeCompleted", req.JobID)); n != 1 {
		t.Errorf("UpgradeCompleted %d times, want 1", n)
	}
	if v := version(t, h, "pf-demo"); v != "1.1" {
		t.Errorf("pf-demo is %s, want 1.1", v)
	}
	for _, p := range c.Packages {
		if p.Before != "1.0" || p.After != "1.1" {
			t.Errorf("result %+v, want 1.0 -> 1.1", p)
		}
	}
}

func TestE2EInjectionInAPackageNameNeverReachesTheHost(t *testing.T) {
	e := newRealEnv(t, 1)
	h := e.fleet.Hosts()[0]
	e.run("a", nil)
	publishRaw(t, e.env, "job-evil", h.Name(), "pf-demo;touch /tmp/pwned")
	e.mustFail("job-evil", events.FailInvalidJob, time.Minute)
	if res, _ := h.Run(context.Background(), "test -e /tmp/pwned"); res.ExitStatus == 0 {
		t.Error("the injected command ran on the host")
	}
	if log := e.jobLog("job-evil"); log != "" {
		t.Errorf("an op ran for an invalid job:\n%s", log)
	}
}
