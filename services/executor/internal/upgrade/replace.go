package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
	"github.com/patchfleet/patchfleet/services/executor/internal/lease"
	"github.com/patchfleet/patchfleet/services/executor/internal/provider"
	"github.com/patchfleet/patchfleet/services/executor/internal/remote"
)

// Replace performs strategy replace with provider hooks: provision a new host, register it,
// give it a full upgrade, check its health, switch the failover address to it, decommission
// and retire the old one. A new host that fails is retired and the old one keeps serving.
type Replace struct {
	Hooks provider.Set // by the old host's fleet, recorded when the job provisions
}

// Replace runs the job's next stages until it has its outcome (see job.NextReplace).
func (rp *Replace) Replace(ctx context.Context, x *Exec) error {
	p := &x.Progress.Replace
	oldID := x.Job.HostID
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var held *lease.Lease // the new host's
	defer func() {
		if held != nil {
			if err := held.Release(context.WithoutCancel(ctx)); err != nil {
				x.Log.Warn("release the new host's lease", "host_id", p.New.ID, "err", err)
			}
		}
	}()
	for range maxSteps {
		if err := context.Cause(ctx); err != nil {
			return fmt.Errorf("job %s replace: %w", x.Job.ID, err)
		}
		if p.New != nil && held == nil {
			// The new host is this job's until the job ends, as the old one is: a job planned
			// for it meanwhile (from a scan taken before its upgrade finished) waits, and
			// then finds nothing to do.
			l, err := x.r.Leases.Acquire(ctx, p.New.ID, x.Job.ID)
			if err != nil {
				return fmt.Errorf("job %s new host %s: %w", x.Job.ID, p.New.ID, err)
			}
			held = l
			go func() {
				select {
				case <-l.Lost():
					cancel(errLeaseLost)
				case <-ctx.Done():
				}
			}()
		}
		step := job.NextReplace(*p, x.Req.Reboot)
		x.Out.Printf("replace stage %s", step)
		x.Log.Info("replace stage", "stage", step.String(), "attempt", x.Attempt)
		switch step {
		case job.ProvisionNew:
			if done, err := x.satisfied(ctx, oldID); done || err != nil {
				return err
			}
			old, err := x.r.Targets.Inventory.Host(ctx, query.HostRequest{ID: oldID})
			if err != nil {
				return x.unresolved(ctx, oldID, err)
			}
			hooks, ok := rp.Hooks.For(old.Fleet)
			if !ok {
				return x.Fail(ctx, events.FailReplace, fmt.Sprintf("no provider hooks for fleet %s (PATCHFLEET_EXECUTOR_PROVIDERS_FILE, or the PATCHFLEET_EXECUTOR_PROVIDER_* defaults)", old.Fleet), "")
			}
			p.Fleet, p.Provisioning = old.Fleet, true
			if err := x.Save(ctx); err != nil {
				return err
			}
			n, err := hooks.ProvisionHost(ctx, oldID, x.Out)
			if err != nil {
				if cause := context.Cause(ctx); cause != nil {
					return fmt.Errorf("job %s provision: %w", x.Job.ID, cause)
				}
				return x.Fail(ctx, events.FailReplace, "stage provision: "+err.Error(), "")
			}
			p.New = &n
			x.Out.Printf("provisioned %s (%s:%d)", n.ID, n.Address, n.Port)
			if err := x.Save(ctx); err != nil {
				return err
			}

		case job.ProvisionInterrupted:
			return x.Fail(ctx, events.FailReplace, "stage provision: a provision hook run was interrupted before it reported its host; "+
				"not provisioning again: check the provider for a host made for "+oldID, "")

		case job.RegisterNew:
			old, err := x.r.Targets.Inventory.Host(ctx, query.HostRequest{ID: oldID})
			if err != nil {
				return x.unresolved(ctx, oldID, err)
			}
			n := p.New
			reg := events.HostRegistered{HostID: n.ID, Name: n.Name, Fleet: old.Fleet, Tags: old.Tags, New: true, Replaces: oldID, AppPath: old.AppPath,
				SSH: events.SSHTarget{Address: n.Address, Port: n.Port, User: cmpOr(n.User, old.SSH.User), Bastion: old.SSH.Bastion,
					Sudo: old.SSH.Sudo, HostKey: n.HostKey}}
			msg, err := events.NewDerived(reg, x.Origin, x.now(), x.Job.ID, n.ID)
			if err != nil {
				if err := x.newHostFailed(ctx, "register", err); err != nil {
					return err
				}
				continue
			}
			p.Registered = true
			if err := x.Save(ctx, msg); err != nil {
				return err
			}

		case job.UpgradeNew, job.RebootNew, job.WaitRebootNew, job.CheckNew:
			h, err := x.newHost(ctx)
			if err == nil {
				switch step {
				case job.UpgradeNew:
					err = x.upgradeNew(ctx, h)
				case job.RebootNew:
					err = x.rebootNew(ctx, h)
				case job.WaitRebootNew:
					err = x.waitRebootNew(ctx, h, true)
				default:
					err = x.checkNew(ctx, h)
				}
			}
			if err != nil {
				if cause := context.Cause(ctx); cause != nil {
					return fmt.Errorf("job %s replace %s: %w", x.Job.ID, step, cause)
				}
				// A host that could not be reached is tried again later; one that presents
				// another key than it was provisioned with is not the host to switch to.
				var oe *remote.OpError
				if _, mismatch := remote.KeyMismatch(err); !mismatch && errors.As(err, &oe) {
					if retry := x.retryLater(ctx, "replace "+step.String(), err); retry != nil {
						return retry
					}
				}
				if err := x.newHostFailed(ctx, step.String(), err); err != nil {
					return err
				}
				continue
			}

		case job.SwitchToNew:
			if err := rp.hooks(x).SwitchTo(ctx, oldID, p.New.ID, x.Out); err != nil {
				if cause := context.Cause(ctx); cause != nil {
					return fmt.Errorf("job %s switch: %w", x.Job.ID, cause)
				}
				if err := x.newHostFailed(ctx, "switch", err); err != nil {
					return err
				}
				continue
			}
			p.Switched = true
			if err := x.Save(ctx); err != nil {
				return err
			}

		case job.DecommissionOld:
			msg, err := events.NewDerived(events.HostDecommissioned{HostID: oldID, Reason: "replaced by " + p.New.ID},
				x.Origin, x.now(), x.Job.ID, oldID)
			if err != nil {
				return fmt.Errorf("job %s: %w", x.Job.ID, err)
			}
			p.Decommissioned = true
			if err := x.Save(ctx, msg); err != nil {
				return err
			}

		case job.RetireOld:
			if err := rp.hooks(x).RetireHost(ctx, oldID, x.Out); err != nil {
				if cause := context.Cause(ctx); cause != nil {
					return fmt.Errorf("job %s retire: %w", x.Job.ID, cause)
				}
				return x.Fail(ctx, events.FailReplace, fmt.Sprintf("stage retire: %s serves, but the old host was not retired: %v", p.New.ID, err), "")
			}
			p.Retired = true
			x.r.Targets.Forget(oldID)
			if err := x.Save(ctx); err != nil {
				return err
			}

		case job.RetireNew:
			var more []events.Message
			if err := rp.hooks(x).RetireHost(ctx, p.New.ID, x.Out); err != nil {
				if cause := context.Cause(ctx); cause != nil {
					return fmt.Errorf("job %s retire new host: %w", x.Job.ID, cause)
				}
				p.FailedMessage += fmt.Sprintf("; retiring the new host %s failed too: %v", p.New.ID, err)
			} else if p.Registered {
				msg, err := events.NewDerived(events.HostDecommissioned{HostID: p.New.ID, Reason: "replace failed at stage " + p.FailedStage},
					x.Origin, x.now(), x.Job.ID, p.New.ID)
				if err != nil {
					return fmt.Errorf("job %s: %w", x.Job.ID, err)
				}
				more = append(more, msg)
			}
			p.NewRetired = true
			if err := x.Save(ctx, more...); err != nil {
				return err
			}

		case job.FailReplaced:
			return x.Fail(ctx, events.FailReplace, fmt.Sprintf("stage %s: %s; %s keeps serving", p.FailedStage, p.FailedMessage, oldID), "")

		case job.ReplaceDone:
			var more []events.Message
			if p.NewRebootRequired && p.NewRebootedTo == "" {
				// Policy never: the new host serves with the reboot its upgrade asked for.
				rr, err := events.NewDerived(events.RebootRequired{HostID: p.New.ID, Packages: p.NewRebootPackages, Since: x.now().UTC(),
					RolloutID: x.Job.RolloutID, JobID: x.Job.ID}, x.Origin, x.now(), x.Job.ID, p.New.ID)
				if err != nil {
					return fmt.Errorf("job %s: %w", x.Job.ID, err)
				}
				more = append(more, rr)
				x.Out.Printf("the new host %s needs a reboot (%s); reboot policy %s: not rebooted", p.New.ID, strings.Join(p.NewRebootPackages, ", "), x.Req.Reboot)
			}
			return x.Complete(ctx, job.Observation{}, more...)
		}
	}
	return x.Fail(ctx, events.FailReplace, fmt.Sprintf("replace did not finish within %d steps", maxSteps), "")
}

// satisfied completes a security job whose host already has every fix it names (patched
// since the job was planned, or a replacement its own replace job upgraded): there is
// nothing to replace it for. done is true when the job has its outcome.
func (x *Exec) satisfied(ctx context.Context, hostID string) (done bool, err error) {
	names := job.RequestedNames(x.Req)
	if x.Req.Kind != events.KindSecurity || len(names) == 0 {
		return false, nil
	}
	h, err := x.host(ctx, hostID)
	if err != nil {
		return true, x.unresolved(ctx, hostID, err)
	}
	st, err := h.State(ctx, names)
	if err != nil {
		if m, ok := remote.KeyMismatch(err); ok {
			return true, x.keyMismatch(ctx, hostID, m)
		}
		return true, x.transport(ctx, "state", err, "")
	}
	o := job.Observe(st)
	if !job.Satisfied(x.Req, o) {
		return false, nil
	}
	x.Out.Printf("every requested package is already at or above its fixed version; nothing to replace")
	x.Progress.Before = versions(o, names)
	x.Progress.After = x.Progress.Before
	return true, x.Complete(ctx, o)
}

// hooks are the provider hooks of the job's fleet. A job provisioned by an executor that did
// not record the fleet uses the default hooks; a fleet whose hooks were removed since gets
// hooks that are not configured, which fail saying so.
func (rp *Replace) hooks(x *Exec) provider.Hooks {
	h, _ := rp.Hooks.For(x.Progress.Replace.Fleet)
	return h
}

// newHostFailed records that the new host failed at stage; the next stage retires it. The
// caller goes on with the next stage.
func (x *Exec) newHostFailed(ctx context.Context, stage string, err error) error {
	p := &x.Progress.Replace
	p.FailedStage, p.FailedMessage = stage, err.Error()
	x.Out.Printf("new host failed at stage %s: %v", stage, err)
	return x.Save(ctx)
}

// newHost is the ops runner for the provisioned host, pinned to the key it printed.
func (x *Exec) newHost(ctx context.Context) (*remote.Host, error) {
	n := x.Progress.Replace.New
	key, err := sshx.ParseHostKey(n.HostKey)
	if err != nil {
		return nil, fmt.Errorf("new host %s key: %w", n.ID, err)
	}
	t := sshx.Target{Name: n.ID, Address: n.Address, Port: n.Port, User: n.User, HostKey: key}
	if old, err := x.r.Targets.Resolve(ctx, x.Job.HostID); err == nil {
		t.Sudo, t.Bastion = old.Sudo, old.Bastion
		if t.User == "" {
			t.User = old.User
		}
	}
	return &remote.Host{Pool: x.r.Pool, Target: t, Log: x.Out, Timeouts: x.r.Cfg.Timeouts}, nil
}

// upgradeNew gives the new host every pending update (a new host gets everything).
func (x *Exec) upgradeNew(ctx context.Context, h *remote.Host) error {
	st, err := h.State(ctx, nil)
	if err != nil {
		return err
	}
	if st.DpkgInterrupted {
		res, err := h.Repair(ctx)
		if err != nil {
			return err
		}
		if res.Interrupted {
			return fmt.Errorf("dpkg --configure -a did not finish: %s", aptSummary(res.Configure))
		}
	}
	res, err := h.FullUpgrade(ctx, true)
	if err != nil {
		return err
	}
	if res.Update.Status != 0 {
		return fmt.Errorf("apt-get update failed: %s", aptSummary(res.Update))
	}
	if res.Apt.Status != 0 {
		return fmt.Errorf("apt-get dist-upgrade exited %d: %s", res.Apt.Status, aptSummary(res.Apt))
	}
	// A security job names the fixes: a new host that did not get them (its repositories lag
	// behind the advisory) is not one to switch to, and replacing it again would not help.
	if names := job.RequestedNames(x.Req); x.Req.Kind == events.KindSecurity && len(names) > 0 {
		st, err := h.State(ctx, names)
		if err != nil {
			return err
		}
		if bad := job.Unfixed(x.Req.Packages, job.Observe(st)); len(bad) > 0 {
			return fmt.Errorf("the fix is not installed on the new host after its full upgrade: %s", strings.Join(bad, ", "))
		}
	}
	var weave []events.PackageResult
	if x.Req.Kind == events.KindDocker {
		if weave, err = x.dockerNew(ctx, h); err != nil {
			return err
		}
	}
	p := &x.Progress
	p.Changes = nil
	for _, c := range res.Apt.Changes {
		p.Changes = append(p.Changes, events.PackageResult{Name: c.Name, Before: c.From, After: c.To})
	}
	p.Changes = append(p.Changes, weave...)
	p.Replace.Upgraded = true
	p.Replace.NewRebootRequired, p.Replace.NewRebootPackages = res.RebootRequired, res.RebootPackages
	return x.Save(ctx)
}

// dockerNew brings a Docker job's new host to the manifest's pins, as an in-place job leaves
// its host: op docker (Weave's release replaced, the pinned packages upgraded to their pins),
// then every pinned package checked. Docker packages the full upgrade took past their pins
// are not taken back: the new host is not switched to. The change it returns is Weave's, the
// one the full upgrade did not make.
func (x *Exec) dockerNew(ctx context.Context, h *remote.Host) ([]events.PackageResult, error) {
	pins, weave := job.DockerPins(x.Req)
	res, err := h.Docker(ctx, pins, weave, false)
	if err != nil {
		return nil, err
	}
	if res.Failed() {
		return nil, fmt.Errorf("docker upgrade of the new host failed: %s", aptSummary(res.Upgrade)+aptSummary(res.WeaveUpgrade))
	}
	if pin, got, off := job.OffPin(pins, res.After); off {
		return nil, fmt.Errorf("%s is %s on the new host after its upgrades, pinned %s", pin.Name, got, pin.Version)
	}
	if weave != "" && res.WeaveBefore != "" && res.WeaveBefore != "absent" && res.WeaveBefore != res.WeaveAfter {
		return []events.PackageResult{{Name: "weave", Before: res.WeaveBefore, After: res.WeaveAfter}}, nil
	}
	return nil, nil
}

// rebootNew reboots the new host after its full upgrade. Its boot id is recorded before the
// reboot is asked for, so a job taken over after a crash waits for a new one instead of
// rebooting the host twice.
func (x *Exec) rebootNew(ctx context.Context, h *remote.Host) error {
	p := &x.Progress.Replace
	st, err := h.State(ctx, nil)
	if err != nil {
		return err
	}
	if st.BootID == "" {
		return errors.New("the new host reports no boot id: a reboot could not be told from none")
	}
	p.NewRebootFrom, p.NewRebootAt = st.BootID, x.now()
	if err := x.Save(ctx); err != nil {
		return err
	}
	res, err := h.Reboot(ctx, x.r.Cfg.RebootDelay)
	switch {
	case err != nil:
		if _, ok := remote.KeyMismatch(err); ok {
			return err
		}
		x.Log.Info("reboot op on the new host did not answer; waiting for a new boot id", "err", err)
	case !res.Scheduled:
		return fmt.Errorf("the reboot could not be scheduled: %s", res.Message+strings.Join(res.Problems, "; "))
	}
	return x.waitRebootNew(ctx, h, false)
}

// waitRebootNew waits for the new host's new boot id and announces the reboot; a host that
// does not come back in time fails the new host. resumed: the reboot was recorded by an
// earlier attempt, which may have stopped before asking for it. A host that answers with the
// boot id it had and without op reboot's marker never got the request: the reboot is
// recorded as not asked for, and the next stage asks for it.
func (x *Exec) waitRebootNew(ctx context.Context, h *remote.Host, resumed bool) error {
	p := &x.Progress.Replace
	if resumed {
		h.Pool.Forget(h.Target) // a connection from before a reboot may not look dead yet
		st, err := h.State(ctx, nil)
		if err == nil && job.RebootLost(p.NewRebootFrom, job.Observe(st)) {
			x.Out.Printf("the reboot recorded for the new host never reached it (boot id %s, no reboot scheduled); asking for it now", st.BootID)
			p.NewRebootFrom, p.NewRebootAt = "", time.Time{}
			return x.Save(ctx)
		}
	}
	deadline := p.NewRebootAt.Add(x.r.Cfg.Rules.RebootTimeout)
	x.Out.Printf("waiting for the new host to come back with a boot id other than %s (until %s)", p.NewRebootFrom, deadline.UTC().Format(time.RFC3339))
	id, err := x.newBootID(ctx, h, p.NewRebootFrom, deadline)
	if err != nil {
		return err
	}
	p.NewRebootedTo = id
	downtime := x.now().Sub(p.NewRebootAt)
	x.Out.Printf("the new host is back with boot id %s after %s", id, downtime.Round(time.Millisecond))
	msg, err := events.NewDerived(events.HostRebooted{HostID: p.New.ID, JobID: x.Job.ID, RolloutID: x.Job.RolloutID,
		OldBootID: p.NewRebootFrom, NewBootID: id, Downtime: downtime}, x.Origin, x.now(), x.Job.ID, p.New.ID, id)
	if err != nil {
		return fmt.Errorf("job %s: %w", x.Job.ID, err)
	}
	return x.Save(ctx, msg)
}

// checkNew runs the fleet's health check on the new host (or, without one, checks that it
// answers with dpkg in a consistent state).
func (x *Exec) checkNew(ctx context.Context, h *remote.Host) error {
	if x.Req.HealthCheck != "" {
		res, err := h.Health(ctx, x.Req.HealthCheck)
		if err != nil {
			return err
		}
		if !res.Healthy() {
			return fmt.Errorf("health check failed on the new host: exit status %d: %s", res.Status, Tail(res.Stdout+res.Stderr, 300))
		}
	} else {
		st, err := h.State(ctx, nil)
		if err != nil {
			return err
		}
		if st.DpkgInterrupted {
			return errors.New("dpkg is interrupted on the new host")
		}
	}
	x.Progress.Replace.Healthy = true
	return x.Save(ctx)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
