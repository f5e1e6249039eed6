package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"time"

	"github.com/patchfleet/patchfleet/tools/freeport"
)

// Plan is what to break while the rollout runs.
type Plan struct {
	Seed  int64
	Kills int // SIGKILLs of services, each started again at once
	// Victims are the process names killed in turn; empty: every service process.
	Victims []string
	// NATSAt and PGAt: after that many kills, restart NATS (with RestartNATS) or crash and
	// restart PostgreSQL; negative: never.
	NATSAt, PGAt int
	RestartNATS  func(context.Context) error
	// Gaps between kills are drawn uniformly from [MinGap, MaxGap] with the seed.
	MinGap, MaxGap time.Duration
	// Running reports whether the rollout is still running (counted in KillsDuringRollout).
	Running func() bool
	Logf    func(format string, args ...any)
}

// Break carries out the plan and fills in the report's counts of what it broke.
func (s *System) Break(ctx context.Context, plan Plan, r *Report) error {
	rng := rand.New(rand.NewPCG(uint64(plan.Seed), 0x7061746368666c74))
	victims := plan.Victims
	if len(victims) == 0 {
		for _, p := range s.Procs {
			victims = append(victims, p.Name)
		}
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		if plan.Logf != nil {
			plan.Logf("[%6.1fs] "+format, append([]any{time.Since(start).Seconds()}, args...)...)
		}
	}
	for i := range plan.Kills {
		gap := plan.MinGap + time.Duration(rng.Int64N(int64(plan.MaxGap-plan.MinGap)+1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(gap): // the moment of the next kill, not a wait for anything
		}
		if err := s.CheckAlive(); err != nil {
			return err
		}
		p := s.Proc(victims[i%len(victims)])
		if p == nil {
			return fmt.Errorf("no process %q to kill", victims[i%len(victims)])
		}
		running := plan.Running == nil || plan.Running()
		pid := p.Pid()
		if err := p.Kill(); err != nil {
			return err
		}
		r.Kills++
		if running {
			r.KillsDuringRollout++
		}
		logf("kill -9 %s (pid %d), kill %d of %d, rollout running: %v", p.Name, pid, r.Kills, plan.Kills, running)
		if err := p.Start(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := p.WaitReady(rctx)
		cancel()
		if err != nil {
			return err
		}
		logf("%s ready again (pid %d)", p.Name, p.Pid())
		if r.Kills == plan.NATSAt && plan.RestartNATS != nil {
			logf("restarting NATS")
			if err := plan.RestartNATS(ctx); err != nil {
				return fmt.Errorf("restart nats: %w", err)
			}
			r.NATSRestarts++
			logf("NATS back")
		}
		if r.Kills == plan.PGAt {
			logf("crashing PostgreSQL (immediate stop) and starting it again")
			if err := s.CrashPG(ctx); err != nil {
				return err
			}
			r.PGRestarts++
			logf("PostgreSQL back")
		}
	}
	return nil
}

// NATSServer describes a single JetStream server with file storage under dir, on fixed
// ports so that a restart keeps its URL. It returns the process (not started) and its URL.
func NATSServer(bin, dir string) (*Proc, string, error) {
	port, err := freeport.Get()
	if err != nil {
		return nil, "", err
	}
	mon, err := freeport.Get()
	if err != nil {
		return nil, "", err
	}
	args := []string{"-n", "chaos-nats", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mon),
		"-js", "-sd", filepath.Join(dir, "jetstream")}
	p := NewProc("nats", bin, args, nil, fmt.Sprintf("http://127.0.0.1:%d/healthz", mon), filepath.Join(dir, "nats.log"))
	return p, fmt.Sprintf("nats://127.0.0.1:%d", port), nil
}

// RestartProc stops a process gracefully, starts it again and waits until it is ready.
func RestartProc(ctx context.Context, p *Proc) error {
	if err := p.Stop(); err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return p.WaitReady(rctx)
}
