package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
	"github.com/patchfleet/patchfleet/services/executor/internal/reboot"
	"github.com/patchfleet/patchfleet/services/executor/internal/remote"
)

// maxSteps bounds the loop: a job has at most a dozen steps; more means a decision loops.
const maxSteps = 40

// InPlace upgrades hostID in place. It returns nil once the job has its outcome, or an error
// for a delivery that should be retried later.
func (x *Exec) InPlace(ctx context.Context, hostID string) error {
	h, err := x.host(ctx, hostID)
	if err != nil {
		return x.unresolved(ctx, hostID, err)
	}
	names := job.RequestedNames(x.Req)
	failures := 0
	// o is the host as last seen. step zeroes it after anything that changes what the
	// decisions read, and the next decision looks again; where a step knows the host
	// afterwards it leaves o, sparing an SSH command.
	var o job.Observation
	for range maxSteps {
		if err := context.Cause(ctx); err != nil {
			return fmt.Errorf("job %s host %s: %w", x.Job.ID, hostID, err)
		}
		if o.BootID == "" {
			st, err := h.State(ctx, names)
			if err == nil {
				o = job.Observe(st)
			} else {
				if m, ok := remote.KeyMismatch(err); ok {
					return x.keyMismatch(ctx, hostID, m)
				}
				if !x.Progress.Rebooting() {
					if retry, rerr := x.retryable(ctx, &failures, "state", err); !retry {
						return rerr
					}
					continue
				}
				// Rebooting: unreachable is expected; the decision waits for the new boot id.
			}
		}
		first := x.Progress.BootID == ""
		if first {
			x.Progress.BootID = o.BootID
			x.Progress.Before = versions(o, names)
		}
		d := job.Next(x.Req, x.Progress, o, x.r.Cfg.Rules, x.now())
		// The first look must be stored before anything changes a package.
		if first {
			if err := x.Save(ctx); err != nil {
				return err
			}
		}
		x.Log.Info("step", "action", d.Action.String(), "attempt", x.Attempt)
		x.Out.Printf("step %s", d.Action)
		if done, err := x.step(ctx, h, d, &o, &failures); done || err != nil {
			return err
		}
	}
	return x.Fail(ctx, events.FailAptError, fmt.Sprintf("job did not finish within %d steps", maxSteps), "")
}

// retryable counts a transport failure. It says whether to try again now; when not, err is
// the delivery's outcome: nil after failing the job as unreachable, or an error to redeliver.
func (x *Exec) retryable(ctx context.Context, failures *int, op string, err error) (bool, error) {
	if cause := context.Cause(ctx); cause != nil {
		return false, fmt.Errorf("job %s %s: %w", x.Job.ID, op, cause)
	}
	*failures++
	if *failures <= x.r.Cfg.TransportRetries {
		wait := time.Duration(1<<min(*failures-1, 5)) * 500 * time.Millisecond
		x.Log.Info("transport failure; observing the host again", "op", op, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("job %s %s: %w", x.Job.ID, op, context.Cause(ctx))
		case <-time.After(wait):
		}
		return true, nil
	}
	return false, x.transport(ctx, op, err, "")
}

// transport gives up this attempt: redeliver, or fail as unreachable once MaxAttempts
// attempts have given up this way.
func (x *Exec) transport(ctx context.Context, op string, err error, output string) error {
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("job %s %s: %w", x.Job.ID, op, cause)
	}
	if retry := x.retryLater(ctx, op, err); retry != nil {
		return retry
	}
	return x.Fail(ctx, events.FailUnreachable, fmt.Sprintf("%s: %v (%d attempts)", op, err, x.Progress.Unreachable), output)
}

// retryLater records an attempt given up because the host could not be reached. It returns
// the error that has the job delivered again, or nil when MaxAttempts attempts have given up
// this way and the caller is to fail what it was doing.
func (x *Exec) retryLater(ctx context.Context, op string, err error) error {
	x.Progress.Unreachable++
	if x.Progress.Unreachable >= x.r.Cfg.MaxAttempts {
		return nil
	}
	if serr := x.Save(ctx); serr != nil {
		return fmt.Errorf("job %s %s: %w (%v)", x.Job.ID, op, err, serr)
	}
	return fmt.Errorf("job %s %s (attempt %d, unreachable %d of %d): %w", x.Job.ID, op, x.Attempt, x.Progress.Unreachable, x.r.Cfg.MaxAttempts, err)
}

// unresolved handles a host the inventory could not name a target for. The inventory being
// away (restarting, no responders, a timeout) says nothing about the host: the job is
// delivered again later without counting against it. A host the inventory retired or does
// not know fails the job.
func (x *Exec) unresolved(ctx context.Context, hostID string, err error) error {
	if remote.Gone(err) {
		return x.Fail(ctx, events.FailUnreachable, err.Error(), "")
	}
	return fmt.Errorf("job %s host %s: %w", x.Job.ID, hostID, err)
}

// step performs one decision. done is true when the job has its outcome. It leaves *obs
// describing the host after the step where it knows it, and zero otherwise.
func (x *Exec) step(ctx context.Context, h *remote.Host, d job.Decision, obs *job.Observation, failures *int) (done bool, err error) {
	p, o := &x.Progress, *obs
	*obs = job.Observation{}
	// opErr handles an op's error: a transport failure is retried (the next observation
	// tells what happened), anything else is returned.
	opErr := func(op string, err error) (bool, error) {
		var oe *remote.OpError
		if m, ok := remote.KeyMismatch(err); ok {
			return true, x.keyMismatch(ctx, x.Job.HostID, m)
		}
		if errors.As(err, &oe) {
			retry, rerr := x.retryable(ctx, failures, op, err)
			return !retry, rerr
		}
		return true, fmt.Errorf("job %s %s: %w", x.Job.ID, op, err)
	}
	switch d.Action {
	case job.Fail:
		return true, x.Fail(ctx, d.Reason, d.Message, "")

	case job.Repair:
		res, err := h.Repair(ctx)
		if err != nil {
			return opErr("repair", err)
		}
		p.Repaired = true
		if res.Interrupted {
			return true, x.Fail(ctx, events.FailAptError, "dpkg --configure -a did not finish the interrupted dpkg run: "+aptSummary(res.Configure), res.Configure.Output())
		}
		return false, x.Save(ctx)

	case job.Install:
		var targets []hostops.Target
		for _, t := range x.Req.Packages {
			targets = append(targets, hostops.Target{Name: t.Name})
		}
		res, err := h.Install(ctx, targets, d.Update)
		if err != nil {
			return opErr("install", err)
		}
		if done, err := x.updated(ctx, res.Update); done {
			return true, err
		}
		done, err := x.installed(ctx, res, "apt-get install")
		// apt-get update changes nothing the decisions read: the look before the op, with
		// what op install read after apt-get, stands.
		if after, ok := o.AfterInstall(res, job.RequestedNames(x.Req)); ok && p.Installed {
			*obs = after
		}
		return done, err

	case job.FullUpgrade:
		res, err := h.FullUpgrade(ctx, d.Update)
		if err != nil {
			return opErr("full-upgrade", err)
		}
		if done, err := x.updated(ctx, res.Update); done {
			return true, err
		}
		for _, c := range res.Apt.Changes {
			p.Changes = append(p.Changes, events.PackageResult{Name: c.Name, Before: c.From, After: c.To})
		}
		return x.installed(ctx, res, "apt-get dist-upgrade")

	case job.SecurityUpgrade:
		res, err := h.SecurityUpgrade(ctx, d.Update)
		if err != nil {
			return opErr("security-upgrade", err)
		}
		if done, err := x.updated(ctx, res.Update); done {
			return true, err
		}
		if res.List.Status != 0 {
			return true, x.Fail(ctx, events.FailAptError, "listing the upgrades from the security origins failed: "+aptSummary(res.List), res.List.Output())
		}
		var names []string
		for _, u := range res.Selected {
			names = append(names, u.Name+" "+u.To)
		}
		x.Out.Printf("security upgrades selected: %d %s", len(names), strings.Join(names, ", "))
		for _, c := range res.Apt.Changes {
			p.Changes = append(p.Changes, events.PackageResult{Name: c.Name, Before: c.From, After: c.To})
		}
		return x.installed(ctx, res.InstallResult, "apt-get install (security upgrades)")

	case job.Docker:
		pins, weave := job.DockerPins(x.Req)
		start := x.now()
		res, err := h.Docker(ctx, pins, weave, d.Update)
		if err != nil {
			return opErr("docker", err)
		}
		if done, err := x.updated(ctx, res.Update); done {
			return true, err
		}
		if res.Failed() {
			out := res.Upgrade.Output() + res.WeaveUpgrade.Output()
			return true, x.Fail(ctx, aptReason(res.Upgrade), "docker upgrade failed: "+aptSummary(res.Upgrade)+aptSummary(res.WeaveUpgrade), out)
		}
		// Containers restart with the daemon: the op's duration is the downtime.
		p.Downtime = x.now().Sub(start)
		if pin, got, off := job.OffPin(pins, res.After); off {
			return true, x.Fail(ctx, events.FailNotFixed, fmt.Sprintf("%s is %s after the upgrade, pinned %s", pin.Name, got, pin.Version), res.Upgrade.Output())
		}
		before, after := stateVersions(res.Before), stateVersions(res.After)
		for _, pin := range pins {
			p.Changes = append(p.Changes, events.PackageResult{Name: pin.Name, Before: before[pin.Name], After: after[pin.Name]})
		}
		if weave != "" && res.WeaveBefore != "" && res.WeaveBefore != "absent" {
			p.Changes = append(p.Changes, events.PackageResult{Name: "weave", Before: res.WeaveBefore, After: res.WeaveAfter})
		}
		p.Installed = true
		return false, x.Save(ctx)

	case job.Unattended:
		res, err := h.Unattended(ctx, x.Req.AutoReboot)
		if err != nil {
			return opErr("unattended", err)
		}
		if res.Install.Ran && res.Install.Status != 0 {
			return true, x.Fail(ctx, aptReason(res.Install), "install unattended-upgrades: "+aptSummary(res.Install), res.Install.Output())
		}
		if err := res.Settings.Check(x.Req.AutoReboot); err != nil {
			return true, x.Fail(ctx, events.FailAptError, "unattended-upgrades settings did not read back as written: "+err.Error(), "")
		}
		p.Unattended = true
		if x.Req.Kind == events.KindUnattended {
			p.Installed = true
		}
		return false, x.Save(ctx)

	case job.AlreadyFixed:
		x.Out.Printf("every requested package is already at or above its fixed version; nothing to install")
		p.After = versions(o, job.RequestedNames(x.Req))
		p.Installed = true
		return false, x.Save(ctx)

	case job.Health:
		res, err := h.Health(ctx, x.Req.HealthCheck)
		if err != nil {
			return opErr("health", err)
		}
		if !res.Healthy() {
			when := "after the upgrade"
			if p.RebootedTo != "" {
				when = "after the reboot"
			}
			msg := fmt.Sprintf("health check failed %s: exit status %d", when, res.Status)
			if res.TimedOut {
				msg = fmt.Sprintf("health check timed out %s", when)
			}
			var more []events.Message
			if p.RebootedTo != "" {
				ev, err := x.rebootedEvent(false)
				if err != nil {
					return true, err
				}
				more = append(more, ev)
			}
			return true, x.Fail(ctx, events.FailHealthCheck, msg, res.Stdout+res.Stderr, more...)
		}
		if p.RebootedTo == "" {
			p.HealthUpgrade = true
			return false, x.Save(ctx)
		}
		p.HealthReboot = true
		ev, err := x.rebootedEvent(true)
		if err != nil {
			return true, err
		}
		return false, x.Save(ctx, ev)

	case job.Reboot:
		// Recorded before the reboot is asked for, so that whatever happens next — the
		// answer lost, this executor killed — the job waits for a new boot id and never
		// reboots the host a second time. The reboot op leaves a marker on the host that
		// the reboot clears; a resumed job that finds neither a new boot id nor the
		// marker knows the op never ran, and Next asks for it again (p.Rebooting()).
		if p.Rebooting() {
			x.Log.Info("the reboot was recorded but never reached the host; asking for it now", "boot_id", o.BootID)
		} else {
			p.RebootRequired, p.RebootPackages = o.RebootRequired || p.RebootRequired, append(p.RebootPackages, o.RebootPackages...)
		}
		p.RebootFrom, p.RebootAt = o.BootID, x.now()
		if err := x.Save(ctx); err != nil {
			return true, err
		}
		res, err := h.Reboot(ctx, x.r.Cfg.RebootDelay)
		if err != nil {
			if m, ok := remote.KeyMismatch(err); ok {
				return true, x.keyMismatch(ctx, x.Job.HostID, m)
			}
			x.Log.Info("reboot op did not answer; waiting for a new boot id", "err", err)
		} else if !res.Scheduled {
			return true, x.Fail(ctx, events.FailRebootTimeout, "the reboot could not be scheduled: "+res.Message+strings.Join(res.Problems, "; "), "")
		}
		return false, x.waitReboot(ctx, h)

	case job.WaitReboot:
		if o.BootID != "" && o.BootID != p.RebootFrom {
			return false, x.rebooted(ctx, o.BootID)
		}
		return false, x.waitReboot(ctx, h)

	case job.Complete:
		return true, x.Complete(ctx, o)
	}
	return true, fmt.Errorf("job %s: unknown action %v", x.Job.ID, d.Action)
}

// updated records the apt-get update an op ran first (hostops.Apt Update); every op that
// changes packages reads it before anything else of its result. done is true when it
// failed: nothing else ran, and the job has failed with it.
func (x *Exec) updated(ctx context.Context, u hostops.AptOutcome) (done bool, err error) {
	if !u.Ran {
		return false, nil
	}
	if u.Status != 0 {
		return true, x.Fail(ctx, events.FailAptError, "apt-get update failed: "+aptSummary(u), u.Output())
	}
	x.Progress.Updated = true
	return false, nil
}

// installed records a successful upgrade op, or fails the job with apt's reason.
func (x *Exec) installed(ctx context.Context, res hostops.InstallResult, what string) (bool, error) {
	p := &x.Progress
	if res.Apt.Status != 0 {
		if res.Apt.DpkgInterrupted && !p.Repaired {
			return false, nil // the next observation sees dpkg interrupted and repairs it
		}
		return true, x.Fail(ctx, aptReason(res.Apt), fmt.Sprintf("%s exited %d: %s", what, res.Apt.Status, aptSummary(res.Apt)), res.Apt.Output())
	}
	if len(res.After) > 0 {
		p.After = stateVersions(res.After)
	}
	p.RebootRequired, p.RebootPackages = res.RebootRequired, res.RebootPackages
	p.Installed = true
	return false, x.Save(ctx)
}

// waitReboot waits for the new boot id.
func (x *Exec) waitReboot(ctx context.Context, h *remote.Host) error {
	p := &x.Progress
	deadline := p.RebootAt.Add(x.r.Cfg.Rules.RebootTimeout)
	x.Out.Printf("waiting for host to come back with a boot id other than %s (until %s)", p.RebootFrom, deadline.UTC().Format(time.RFC3339))
	id, err := x.newBootID(ctx, h, p.RebootFrom, deadline)
	switch {
	case errors.Is(err, reboot.ErrTimeout):
		return x.Fail(ctx, events.FailRebootTimeout, err.Error(), "")
	case err != nil:
		if m, ok := remote.KeyMismatch(err); ok {
			return x.keyMismatch(ctx, x.Job.HostID, m)
		}
		return fmt.Errorf("job %s wait for reboot: %w", x.Job.ID, err)
	}
	return x.rebooted(ctx, id)
}

// newBootID waits until h answers with a boot id other than old (reboot.Wait). Every probe
// dials afresh: the connection from before the reboot died with the host, though it may not
// look dead yet. A host key mismatch ends the wait.
func (x *Exec) newBootID(ctx context.Context, h *remote.Host, old string, deadline time.Time) (string, error) {
	probe := func(ctx context.Context) (string, error) {
		h.Pool.Forget(h.Target)
		st, err := h.State(ctx, nil)
		return st.BootID, err
	}
	isMismatch := func(err error) bool { _, ok := remote.KeyMismatch(err); return ok }
	return reboot.Wait(ctx, probe, old, deadline, x.r.Cfg.RebootBackoff, isMismatch)
}

// rebooted records the new boot id. HostRebooted is announced now when there is no health
// check to run, else once the check after the reboot has run.
func (x *Exec) rebooted(ctx context.Context, newID string) error {
	p := &x.Progress
	p.RebootedTo = newID
	p.Downtime = x.now().Sub(p.RebootAt)
	x.Out.Printf("host is back with boot id %s after %s", newID, p.Downtime.Round(time.Millisecond))
	if x.Req.HealthCheck != "" {
		return x.Save(ctx)
	}
	msg, err := x.rebootedEvent(false)
	if err != nil {
		return err
	}
	return x.Save(ctx, msg)
}

func (x *Exec) rebootedEvent(healthy bool) (events.Message, error) {
	p := x.Progress
	msg, err := events.NewDerived(events.HostRebooted{HostID: x.Job.HostID, JobID: x.Job.ID, RolloutID: x.Job.RolloutID,
		OldBootID: p.RebootFrom, NewBootID: p.RebootedTo, Downtime: p.Downtime, HealthChecked: healthy},
		x.Origin, x.now(), x.Job.ID, p.RebootedTo)
	if err != nil {
		return events.Message{}, fmt.Errorf("job %s: %w", x.Job.ID, err)
	}
	return msg, nil
}

// aptReason maps apt's outcome to a failure reason.
func aptReason(a hostops.AptOutcome) string {
	switch {
	case a.LockTimeout:
		return events.FailDpkgLocked
	case a.HeldPackages:
		return events.FailHeldPackage
	}
	return events.FailAptError
}

func aptSummary(a hostops.AptOutcome) string {
	if !a.Ran {
		return ""
	}
	var parts []string
	if len(a.Errors) > 0 {
		parts = append(parts, strings.Join(a.Errors, "; "))
	}
	if len(a.Failed) > 0 {
		parts = append(parts, "failed packages: "+strings.Join(a.Failed, ", "))
	}
	if a.LockTimeout && a.LockHolder != "" {
		parts = append(parts, "the lock was held by "+a.LockHolder)
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("exit status %d", a.Status))
	}
	return strings.Join(parts, "; ")
}
