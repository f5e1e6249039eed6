// Package upgrade performs upgrade jobs: it takes the host's lease, records the attempt, and
// then loops — observe the host (op state), let job.Next decide, perform that one step over
// SSH, save the progress — until the job completes or fails. Everything it announces goes
// through the outbox with ids derived from the job, so a job taken over after a crash
// announces nothing twice.
package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
	"github.com/patchfleet/patchfleet/services/executor/internal/joblog"
	"github.com/patchfleet/patchfleet/services/executor/internal/lease"
	"github.com/patchfleet/patchfleet/services/executor/internal/reboot"
	"github.com/patchfleet/patchfleet/services/executor/internal/remote"
	"github.com/patchfleet/patchfleet/services/executor/internal/store"
)

// Config tunes how jobs run.
type Config struct {
	Executor string // this instance's id: lease holder, UpgradeStarted.Executor
	Producer string // the service name on events
	Rules    job.Rules
	Timeouts remote.Timeouts
	// RebootDelay is how long after the reboot op returns the host reboots.
	RebootDelay   time.Duration
	RebootBackoff reboot.Backoff
	// TransportRetries is how many times in a row an op may fail for transport reasons
	// (refused, dropped, timed out) within one attempt before the attempt gives up.
	TransportRetries int
	// MaxAttempts is how many attempts may give up that way before the job fails with
	// reason unreachable.
	MaxAttempts int
	LogLimit    int64 // bytes of log kept per job
	// NoAuth, when set, says why no job can authenticate to a host: jobs fail with it.
	NoAuth string
}

// Runner runs jobs. Handle is its events.HandlerFunc.
type Runner struct {
	Cfg     Config
	Store   *store.Store
	Leases  *lease.Leases
	Targets *remote.Targets
	Pool    *sshx.Pool // shared connections, one per host
	DB      *pgxpool.Pool
	NC      *nats.Conn // live logs; nil for none
	Replace Replacer   // nil: replace jobs fail
	Logger  *slog.Logger
	Now     func() time.Time

	mu      sync.Mutex
	running map[string]bool
}

// Replacer performs a job of strategy replace.
type Replacer interface {
	Replace(ctx context.Context, x *Exec) error
}

// ErrBusy is the error of a job delivered again to the instance that is running it.
var ErrBusy = errors.New("job is running on this executor")

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) claim(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		r.running = map[string]bool{}
	}
	if r.running[id] {
		return false
	}
	r.running[id] = true
	return true
}

func (r *Runner) unclaim(id string) {
	r.mu.Lock()
	delete(r.running, id)
	r.mu.Unlock()
}

var errLeaseLost = errors.New("host lease lost")

// Handle runs one job delivery. nil acknowledges it (the job has its outcome); an error
// redelivers it later (host busy, executor shutting down, host unreachable for now).
func (r *Runner) Handle(ctx context.Context, m events.Meta, req events.UpgradeRequested) error {
	log := r.Logger.With("job_id", req.JobID, "host_id", req.HostID, "correlation_id", req.RolloutID)
	if !r.claim(req.JobID) {
		return fmt.Errorf("job %s: %w", req.JobID, ErrBusy)
	}
	defer r.unclaim(req.JobID)

	j, err := r.Store.Receive(ctx, req, m)
	if err != nil {
		return err
	}
	origin := events.Origin{Producer: r.Cfg.Producer, CorrelationID: req.RolloutID, CausationID: m.ID}
	if j.Finished() {
		log.Info("job already finished; result re-announced", "status", j.Status, "reason", j.Reason)
		return r.Store.Reannounce(ctx, j)
	}
	x := &Exec{r: r, Job: j, Req: j.Request, Origin: origin, Log: log, Progress: j.Progress}
	if err := job.Check(j.Request); err != nil {
		// The security boundary: nothing was sent to the host.
		return x.Fail(ctx, events.FailInvalidJob, err.Error(), "")
	}

	if r.Cfg.NoAuth != "" {
		return x.Fail(ctx, events.FailUnreachable, r.Cfg.NoAuth, "")
	}

	l, err := r.Leases.Acquire(ctx, req.HostID, req.JobID)
	if err != nil {
		return err // Busy: redelivered after the runner's backoff
	}
	defer func() {
		if err := l.Release(ctx); err != nil {
			log.Warn("release host lease", "err", err)
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-l.Lost():
			cancel(errLeaseLost)
		case <-ctx.Done():
		}
	}()

	x.Attempt, x.Started, err = r.Store.Start(ctx, j, r.Cfg.Executor, origin, r.now())
	if err != nil {
		return err
	}
	x.Out, err = joblog.Open(ctx, r.DB, r.NC, j.ID, j.HostID, r.Cfg.LogLimit, x.Attempt > 1, log)
	if err != nil {
		return err
	}
	defer x.Out.Close(ctx)
	x.Out.Printf("job %s attempt %d: %s upgrade of host %s (strategy %s, reboot %s) by %s", j.ID, x.Attempt, req.Kind, req.HostID, req.Strategy, req.Reboot, r.Cfg.Executor)
	log.Info("job started", "attempt", x.Attempt, "kind", req.Kind, "strategy", req.Strategy, "step", j.Step)

	if j.Request.Strategy == events.StrategyReplace {
		if r.Replace == nil {
			return x.Fail(ctx, events.FailReplace, "strategy replace is not supported by this executor yet (no provider hooks)", "")
		}
		err = r.Replace.Replace(ctx, x)
	} else {
		err = x.InPlace(ctx, j.HostID)
	}
	if err != nil && context.Cause(ctx) != nil && !errors.Is(err, context.Cause(ctx)) {
		err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	return err
}

// Exec is one attempt at one job.
type Exec struct {
	r        *Runner
	Job      store.Job
	Req      events.UpgradeRequested
	Origin   events.Origin
	Log      *slog.Logger
	Out      *joblog.Writer
	Attempt  int
	Started  time.Time
	Progress job.Progress
}

func (x *Exec) now() time.Time { return x.r.now() }

// host returns the ops runner for a host.
func (x *Exec) host(ctx context.Context, hostID string) (*remote.Host, error) {
	t, err := x.r.Targets.Resolve(ctx, hostID)
	if err != nil {
		return nil, err
	}
	if x.Progress.Rebooting() {
		// A connection from before the reboot may still look alive.
		x.r.Pool.Forget(t)
	}
	return &remote.Host{Pool: x.r.Pool, Target: t, Log: x.Out, Timeouts: x.r.Cfg.Timeouts}, nil
}

// Save records progress (and events announcing it).
func (x *Exec) Save(ctx context.Context, msgs ...events.Message) error {
	return x.r.Store.Save(ctx, x.Job.ID, x.Progress, msgs...)
}

// Fail ends the job with an UpgradeFailed. It returns nil: the delivery is done.
func (x *Exec) Fail(ctx context.Context, reason, message, output string, more ...events.Message) error {
	x.Log.Warn("job failed", "reason", reason, "message", message)
	if x.Out != nil {
		x.Out.Printf("job failed: %s: %s", reason, message)
	}
	e := events.UpgradeFailed{JobID: x.Job.ID, RolloutID: x.Job.RolloutID, HostID: x.Job.HostID, Reason: reason,
		Message: message, OutputTail: Tail(output, 4096), Packages: x.changed()}
	msg, err := events.NewDerived(e, x.Origin, x.now(), x.Job.ID)
	if err != nil {
		return fmt.Errorf("job %s: %w", x.Job.ID, err)
	}
	if x.Out != nil {
		x.Out.Flush(ctx) // the whole log is stored before the outcome is announced
	}
	if _, err := x.r.Store.Finish(context.WithoutCancel(ctx), x.Job.ID, x.Progress, reason, msg, more...); err != nil {
		return err
	}
	return nil
}

// Complete ends the job with an UpgradeCompleted (and RebootRequired when a reboot is left
// pending by policy), stored with more.
func (x *Exec) Complete(ctx context.Context, o job.Observation, more ...events.Message) error {
	p := x.Progress
	pending := job.RebootPending(x.Req, p, o)
	e := events.UpgradeCompleted{JobID: x.Job.ID, RolloutID: x.Job.RolloutID, HostID: x.Job.HostID, Kind: x.Req.Kind,
		Packages: x.results(o), RebootRequired: pending, Rebooted: p.RebootedTo != "", RebootPending: pending,
		Downtime: p.Downtime, Duration: x.now().Sub(x.Started)}
	msg, err := events.NewDerived(e, x.Origin, x.now(), x.Job.ID)
	if err != nil {
		return fmt.Errorf("job %s: %w", x.Job.ID, err)
	}
	if pending {
		pkgs := o.RebootPackages
		if len(pkgs) == 0 {
			pkgs = p.RebootPackages
		}
		rr, err := events.NewDerived(events.RebootRequired{HostID: x.Job.HostID, Packages: pkgs, Since: x.now().UTC(),
			RolloutID: x.Job.RolloutID, JobID: x.Job.ID}, x.Origin, x.now(), x.Job.ID)
		if err != nil {
			return fmt.Errorf("job %s: %w", x.Job.ID, err)
		}
		more = append(more, rr)
	}
	x.Out.Printf("job completed (rebooted %t, reboot pending %t)", p.RebootedTo != "", pending)
	x.Out.Flush(ctx) // the whole log is stored before the outcome is announced
	finished, err := x.r.Store.Finish(context.WithoutCancel(ctx), x.Job.ID, p, "", msg, more...)
	if err != nil {
		return err
	}
	x.Log.Info("job completed", "rebooted", p.RebootedTo != "", "reboot_pending", pending, "finished_now", finished,
		"duration", e.Duration.Round(time.Millisecond))
	return nil
}

// results lists the requested packages before and after (or what a full upgrade changed).
func (x *Exec) results(o job.Observation) []events.PackageResult {
	if len(x.Progress.Changes) > 0 {
		return x.Progress.Changes
	}
	var out []events.PackageResult
	for _, n := range job.RequestedNames(x.Req) {
		after := x.Progress.After[n]
		if p, ok := o.Packages[n]; ok && p.Present {
			after = p.Version
		}
		out = append(out, events.PackageResult{Name: n, Before: x.Progress.Before[n], After: after})
	}
	return out
}

// changed lists what changed before a failure.
func (x *Exec) changed() []events.PackageResult {
	if len(x.Progress.Changes) > 0 {
		return x.Progress.Changes
	}
	var out []events.PackageResult
	for n, after := range x.Progress.After {
		if before := x.Progress.Before[n]; before != after {
			out = append(out, events.PackageResult{Name: n, Before: before, After: after})
		}
	}
	return out
}

// Tail returns the last n bytes of s, starting at a line when it can.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return strings.ToValidUTF8(s, "")
}

// keyMismatch fails the job and announces the mismatch.
func (x *Exec) keyMismatch(ctx context.Context, hostID string, m *sshx.HostKeyMismatchError) error {
	x.r.Targets.Forget(hostID)
	ev, err := events.NewDerived(events.HostKeyMismatch{HostID: hostID, Expected: m.Expected, Presented: m.Presented,
		DetectedBy: x.r.Cfg.Producer, JobID: x.Job.ID, Description: m.Error()}, x.Origin, x.now(), x.Job.ID, hostID, m.Presented)
	if err != nil {
		return fmt.Errorf("job %s: %w", x.Job.ID, err)
	}
	return x.Fail(ctx, events.FailHostKeyMismatch, m.Error(), "", ev)
}

func versions(o job.Observation, names []string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if p, ok := o.Packages[n]; ok && p.Present {
			out[n] = p.Version
		} else {
			out[n] = ""
		}
	}
	return out
}

func stateVersions(ps []hostops.PackageState) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		out[p.Name] = p.Version
	}
	return out
}
