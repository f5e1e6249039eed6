package executor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

func TestTwoExecutorsNeverRunTwoJobsOnOneHostAtOnce(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2, AptLatency: 400 * time.Millisecond})
	e.run("a", nil)
	e.run("b", nil)
	var jobs []string
	for range 3 {
		jobs = append(jobs, e.job(0, nil).JobID)
	}
	other := e.job(1, nil).JobID
	for _, id := range append(jobs, other) {
		e.mustComplete(id, 90*time.Second)
	}
	type span struct{ start, end time.Time }
	var spans []span
	for _, id := range jobs {
		var s span
		if err := e.db.QueryRow(context.Background(), "select started_at, finished_at from jobs where job_id = $1", id).Scan(&s.start, &s.end); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, s)
	}
	for i := range spans {
		for j := range spans {
			if i != j && spans[i].start.Before(spans[j].end) && spans[j].start.Before(spans[i].end) {
				t.Errorf("jobs %s and %s ran on one host at once: %v and %v", jobs[i], jobs[j], spans[i], spans[j])
			}
		}
	}
	var leases int
	if err := e.db.QueryRow(context.Background(), "select count(*) from host_leases").Scan(&leases); err != nil {
		t.Fatal(err)
	}
	if leases != 0 {
		t.Errorf("%d host leases left after every job finished", leases)
	}
}

func TestAJobStoppedMidInstallIsResumedElsewhereAndFinishesOnce(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1, AptLatency: 3 * time.Second})
	stopA := e.run("a", nil)
	req := e.job(0, nil)
	// Stop executor a while apt runs: its handler is cancelled and the job handed back
	// without an outcome.
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "step install") })
	stopA()
	if n := len(e.envelopes(events.StreamUpgrades, "UpgradeCompleted", req.JobID)); n != 0 {
		t.Fatalf("job completed before its executor stopped; the test stopped nothing")
	}
	e.run("b", nil)
	c := e.mustComplete(req.JobID, 90*time.Second)
	for _, p := range c.Packages {
		if p.Before != "3.0.19-1~deb12u2" || p.After != fixed {
			t.Errorf("package %+v: want the versions from before the first attempt and after the upgrade", p)
		}
	}
	waitFor(t, e.deliveredAndAcked)
	if n := len(e.envelopes(events.StreamUpgrades, "UpgradeCompleted", req.JobID)); n != 1 {
		t.Errorf("UpgradeCompleted %d times, want 1", n)
	}
	started := e.envelopes(events.StreamUpgrades, "UpgradeStarted", req.JobID)
	if len(started) != 2 {
		t.Errorf("UpgradeStarted %d times, want one per attempt (2)", len(started))
	}
	log := e.jobLog(req.JobID)
	if n := strings.Count(log, "==> patchfleet:op install"); n != 1 {
		t.Errorf("install ran %d times, want once: the second attempt must see the packages fixed", n)
	}
	if !strings.Contains(log, "step already-fixed") {
		t.Errorf("second attempt did not check the host's state first:\n%s", log)
	}
}

func TestAJobStoppedWhileTheHostRebootsIsNotRebootedTwice(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1, RebootDelay: 3 * time.Second})
	host := e.fleet.Hosts()[0]
	stopA := e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "libc6", MinVersion: "2.36-9+deb12u15"}}
		r.Reboot = events.RebootIfRequired
	})
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "waiting for host to come back") })
	stopA()
	e.run("b", nil)
	c := e.mustComplete(req.JobID, 90*time.Second)
	if !c.Rebooted {
		t.Errorf("completed %+v: want rebooted", c)
	}
	if host.Boots() != 2 {
		t.Errorf("host booted %d times, want 2 (one reboot)", host.Boots())
	}
	if n := len(e.envelopes(events.StreamHosts, "HostRebooted", req.JobID)); n != 1 {
		t.Errorf("HostRebooted %d times, want 1", n)
	}
}

// The job records "rebooting" before it sends the reboot op. An executor stopped in between
// leaves a job waiting for a reboot the host never heard of: the executor that resumes it sees
// the old boot id and no reboot marker on the host, and asks for the reboot once.
func TestAJobStoppedAfterRecordingTheRebootBeforeSendingItRebootsOnce(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	host := e.fleet.Hosts()[0]
	host.SetFaults(fleetsim.FaultRebootLost) // the reboot op of executor a never reaches the host
	stopA := e.run("a", nil)
	req := e.job(0, func(r *events.UpgradeRequested) {
		r.Packages = []events.PackageTarget{{Name: "libc6", MinVersion: "2.36-9+deb12u15"}}
		r.Reboot = events.RebootIfRequired
	})
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "waiting for host to come back") })
	stopA()
	if host.Boots() != 1 {
		t.Fatalf("host booted %d times before executor a stopped; the test lost no reboot", host.Boots())
	}
	host.SetFaults(0)
	e.run("b", nil)
	c := e.mustComplete(req.JobID, 90*time.Second)
	if !c.Rebooted {
		t.Errorf("completed %+v: want rebooted", c)
	}
	if host.Boots() != 2 {
		t.Errorf("host booted %d times, want 2 (one reboot)", host.Boots())
	}
	if n := len(e.envelopes(events.StreamHosts, "HostRebooted", req.JobID)); n != 1 {
		t.Errorf("HostRebooted %d times, want 1", n)
	}
	if n := strings.Count(e.jobLog(req.JobID), "==> patchfleet:op reboot"); n != 1 {
		t.Errorf("the host answered op reboot %d times, want once", n)
	}
}

// stopMidInstall runs a job on executor a and stops a while apt runs: attempt 1 ends cut
// short, not for anything the host did.
func stopMidInstall(t *testing.T, e *env) events.UpgradeRequested {
	t.Helper()
	stopA := e.run("a", nil)
	req := e.job(0, nil)
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "step install") })
	stopA()
	return req
}

// The job's second attempt is its last (MaxAttempts 2) if executor stops counted. The
// inventory being away when it resumes says nothing about the host: the job waits for it
// and completes.
func TestAResumedJobWaitsForTheInventoryInsteadOfFailing(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1, AptLatency: 2 * time.Second})
	req := stopMidInstall(t, e)
	e.inv.setAway(true)
	calls := e.inv.callCount()
	e.run("b", nil)
	waitFor(t, func() bool { return e.inv.callCount() > calls })
	e.inv.setAway(false)
	e.mustComplete(req.JobID, 90*time.Second)
}

// Attempts cut short by an executor stopping are not counted as the host being unreachable:
// with MaxAttempts 2, a job stopped once and then meeting a dropped connection is tried
// again, and completes once the host answers.
func TestExecutorStopsDoNotCountAsUnreachableAttempts(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1, AptLatency: 2 * time.Second})
	host := e.fleet.Hosts()[0]
	req := stopMidInstall(t, e)
	host.SetFaults(fleetsim.FaultDrop)
	e.run("b", func(c *executor.Config) { c.TransportRetries = 1 })
	waitFor(t, func() bool {
		var n int
		err := e.db.QueryRow(context.Background(), "select coalesce((progress->>'unreachable')::int, 0) from jobs where job_id = $1", req.JobID).Scan(&n)
		// A job failed already ends the wait; mustComplete then says why.
		return err == nil && n == 1 || len(e.envelopes(events.StreamUpgrades, "UpgradeFailed", req.JobID)) > 0
	})
	host.SetFaults(0)
	e.mustComplete(req.JobID, 90*time.Second)
}

// An executor restarted after a crash keeps its instance name, but not its leases: the
// commands its predecessor started may still run on the host, so the job waits until the
// dead process's lease has expired before it touches the host again.
func TestARestartedInstanceWaitsOutTheLeaseOfTheProcessBeforeIt(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 1})
	ctx := context.Background()
	req := e.job(0, nil) // published before any executor runs
	// What a process named "a" that died while running this job leaves behind.
	var expires time.Time
	if err := e.db.QueryRow(ctx, `insert into host_leases (host_id, holder, job_id, expires_at)
		values ($1, 'a', $2, now() + interval '2 seconds') returning expires_at`, req.HostID, req.JobID).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	e.run("a", nil)
	e.mustComplete(req.JobID, 60*time.Second)
	var started time.Time
	if err := e.db.QueryRow(ctx, "select started_at from jobs where job_id = $1", req.JobID).Scan(&started); err != nil {
		t.Fatal(err)
	}
	if started.Before(expires) {
		t.Errorf("job started at %s, before the dead process's lease expired at %s", started, expires)
	}
}
