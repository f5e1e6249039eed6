// Package remote runs the hostops operations on one host over the sshx pool: it resolves the
// host's SSH target from the inventory (with its pinned key), sends each op's script, copies
// the output to the job log and parses the report. It decides nothing.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/events/sshx"
)

// Inventory looks up hosts' SSH targets; query.Client does it over NATS.
type Inventory interface {
	Host(ctx context.Context, req query.HostRequest) (query.HostDetail, error)
}

// Targets resolves host ids to SSH targets, caching answers briefly: a job asks several
// times, and the pinned key changes rarely (Forget drops a host after a key mismatch).
type Targets struct {
	Inventory Inventory
	TTL       time.Duration

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	target sshx.Target
	ssh    events.SSHTarget
	at     time.Time
}

// ErrRetired means the inventory says the host is retired or refused until re-pinned.
var ErrRetired = errors.New("host is retired")

// Gone reports whether a host lookup failed because the inventory answered that the host is
// retired or unknown, as opposed to the inventory not answering at all.
func Gone(err error) bool {
	var re *query.RemoteError
	return errors.Is(err, ErrRetired) || errors.As(err, &re) && re.Code == http.StatusNotFound
}

// Resolve returns the host's target.
func (ts *Targets) Resolve(ctx context.Context, hostID string) (sshx.Target, error) {
	ts.mu.Lock()
	c, ok := ts.cache[hostID]
	ts.mu.Unlock()
	if ok && time.Since(c.at) < ts.TTL {
		return c.target, nil
	}
	h, err := ts.Inventory.Host(ctx, query.HostRequest{ID: hostID})
	if err != nil {
		return sshx.Target{}, fmt.Errorf("look up host %s: %w", hostID, err)
	}
	if h.Retired {
		return sshx.Target{}, fmt.Errorf("look up host %s: %w", hostID, ErrRetired)
	}
	name := h.Name
	if name == "" {
		name = hostID
	}
	t, err := sshx.TargetFrom(h.SSH, name)
	if err != nil {
		return sshx.Target{}, fmt.Errorf("look up host %s: %w", hostID, err)
	}
	ts.mu.Lock()
	if ts.cache == nil {
		ts.cache = map[string]cached{}
	}
	ts.cache[hostID] = cached{target: t, ssh: h.SSH, at: time.Now()}
	ts.mu.Unlock()
	return t, nil
}

// Forget drops a host from the cache.
func (ts *Targets) Forget(hostID string) {
	ts.mu.Lock()
	delete(ts.cache, hostID)
	ts.mu.Unlock()
}

// Timeouts bound each kind of command.
type Timeouts struct {
	Command time.Duration // state, repair, health, reboot
	Apt     time.Duration // apt-get update, install, full-upgrade, docker, unattended
	Lock    time.Duration // DPkg::Lock::Timeout: how long apt waits for the dpkg lock
	Health  time.Duration // the health check command itself
}

// Host runs ops on one host for one job.
type Host struct {
	Pool     *sshx.Pool
	Target   sshx.Target
	Log      io.Writer // the job log; every op's output is copied there as it arrives
	Timeouts Timeouts
}

// OpError is a transport failure: the op did not report to its end (connection refused or
// dropped, timeout). The host's state is unknown; the job observes it again before going on.
type OpError struct {
	Op  string
	Err error
}

func (e *OpError) Error() string { return fmt.Sprintf("op %s: %v", e.Op, e.Err) }
func (e *OpError) Unwrap() error { return e.Err }

func (h *Host) run(ctx context.Context, op, script string, timeout time.Duration, noSudo bool) ([]byte, error) {
	fmt.Fprintf(h.Log, "==> %s %s\n", time.Now().UTC().Format(time.RFC3339), op)
	res, err := h.Pool.Run(ctx, h.Target, sshx.Command{Script: script, Timeout: timeout, Output: h.Log, NoSudo: noSudo, MaxOutput: 1 << 20})
	if err != nil {
		fmt.Fprintf(h.Log, "==> %s failed: %v\n", op, err)
		return res.Stdout, &OpError{Op: op, Err: err}
	}
	fmt.Fprintf(h.Log, "==> %s exit %d (%s)\n", op, res.ExitStatus, res.Duration.Round(time.Millisecond))
	return res.Stdout, nil
}

// incomplete turns a report cut short into an OpError.
func incomplete(op string, r hostops.Report) error {
	if r.Complete {
		return nil
	}
	return &OpError{Op: op, Err: errors.New("report cut short (connection dropped)")}
}

// State runs op state for the given packages.
func (h *Host) State(ctx context.Context, pkgs []string) (hostops.State, error) {
	script, err := hostops.StateScript(pkgs...)
	if err != nil {
		return hostops.State{}, err
	}
	out, err := h.run(ctx, hostops.OpState, script, h.Timeouts.Command, true)
	if err != nil {
		return hostops.State{}, err
	}
	s, err := hostops.ParseState(out)
	if err != nil {
		return s, &OpError{Op: hostops.OpState, Err: err}
	}
	return s, incomplete(hostops.OpState, s.Report)
}

// Repair runs op repair.
func (h *Host) Repair(ctx context.Context) (hostops.RepairResult, error) {
	out, err := h.run(ctx, hostops.OpRepair, hostops.RepairScript(), h.Timeouts.Apt, false)
	if err != nil {
		return hostops.RepairResult{}, err
	}
	r, err := hostops.ParseRepair(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpRepair, Err: err}
	}
	return r, incomplete(hostops.OpRepair, r.Report)
}

// aptTimeout leaves apt its whole lock wait on top of the command's own time, and the
// update's own time when the op runs apt-get update first.
func (h *Host) aptTimeout(update bool) time.Duration {
	t := h.Timeouts.Apt + h.Timeouts.Lock
	if update {
		t += h.Timeouts.Apt
	}
	return t
}

// apt is how an op runs apt-get: the host's lock wait, and apt-get update first or not.
func (h *Host) apt(update bool) hostops.Apt {
	return hostops.Apt{LockTimeout: h.Timeouts.Lock, Update: update}
}

// Install runs op install; with update, apt-get update first (hostops.Apt), as for every op
// that changes packages.
func (h *Host) Install(ctx context.Context, targets []hostops.Target, update bool) (hostops.InstallResult, error) {
	script, err := hostops.InstallScript(targets, h.apt(update))
	if err != nil {
		return hostops.InstallResult{}, err
	}
	out, err := h.run(ctx, hostops.OpInstall, script, h.aptTimeout(update), false)
	if err != nil {
		return hostops.InstallResult{}, err
	}
	r, err := hostops.ParseInstall(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpInstall, Err: err}
	}
	return r, incomplete(hostops.OpInstall, r.Report)
}

// FullUpgrade runs op full-upgrade.
func (h *Host) FullUpgrade(ctx context.Context, update bool) (hostops.InstallResult, error) {
	out, err := h.run(ctx, hostops.OpFullUpgrade, hostops.FullUpgradeScript(h.apt(update)), h.aptTimeout(update), false)
	if err != nil {
		return hostops.InstallResult{}, err
	}
	r, err := hostops.ParseFullUpgrade(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpFullUpgrade, Err: err}
	}
	return r, incomplete(hostops.OpFullUpgrade, r.Report)
}

// SecurityUpgrade runs op security-upgrade.
func (h *Host) SecurityUpgrade(ctx context.Context, update bool) (hostops.SecurityUpgradeResult, error) {
	out, err := h.run(ctx, hostops.OpSecurityUpgrade, hostops.SecurityUpgradeScript(h.apt(update)), h.aptTimeout(update), false)
	if err != nil {
		return hostops.SecurityUpgradeResult{}, err
	}
	r, err := hostops.ParseSecurityUpgrade(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpSecurityUpgrade, Err: err}
	}
	return r, incomplete(hostops.OpSecurityUpgrade, r.Report)
}

// Unattended runs op unattended.
func (h *Host) Unattended(ctx context.Context, autoReboot bool) (hostops.UnattendedResult, error) {
	out, err := h.run(ctx, hostops.OpUnattended, hostops.UnattendedScript(autoReboot, h.Timeouts.Lock), h.aptTimeout(false), false)
	if err != nil {
		return hostops.UnattendedResult{}, err
	}
	r, err := hostops.ParseUnattended(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpUnattended, Err: err}
	}
	return r, incomplete(hostops.OpUnattended, r.Report)
}

// Docker runs op docker.
func (h *Host) Docker(ctx context.Context, pins []hostops.Target, weave string, update bool) (hostops.DockerResult, error) {
	script, err := hostops.DockerScript(pins, weave, h.apt(update))
	if err != nil {
		return hostops.DockerResult{}, err
	}
	out, err := h.run(ctx, hostops.OpDocker, script, h.aptTimeout(update), false)
	if err != nil {
		return hostops.DockerResult{}, err
	}
	r, err := hostops.ParseDocker(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpDocker, Err: err}
	}
	return r, incomplete(hostops.OpDocker, r.Report)
}

// Reboot runs op reboot: the host reboots delay after the command returned.
func (h *Host) Reboot(ctx context.Context, delay time.Duration) (hostops.RebootResult, error) {
	out, err := h.run(ctx, hostops.OpReboot, hostops.RebootScript(delay), h.Timeouts.Command, false)
	if err != nil {
		return hostops.RebootResult{}, err
	}
	r, err := hostops.ParseReboot(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpReboot, Err: err}
	}
	return r, incomplete(hostops.OpReboot, r.Report)
}

// Health runs the fleet's health check (as the login user: it is a probe).
func (h *Host) Health(ctx context.Context, command string) (hostops.HealthResult, error) {
	script, err := hostops.HealthScript(command, h.Timeouts.Health)
	if err != nil {
		return hostops.HealthResult{}, err
	}
	out, err := h.run(ctx, hostops.OpHealth, script, h.Timeouts.Health+h.Timeouts.Command, true)
	if err != nil {
		return hostops.HealthResult{}, err
	}
	r, err := hostops.ParseHealth(out)
	if err != nil {
		return r, &OpError{Op: hostops.OpHealth, Err: err}
	}
	return r, incomplete(hostops.OpHealth, r.Report)
}

// KeyMismatch returns the host-key mismatch behind err, if any.
func KeyMismatch(err error) (*sshx.HostKeyMismatchError, bool) {
	var m *sshx.HostKeyMismatchError
	return m, errors.As(err, &m)
}
