package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/executordb"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
)

// Report is what a chaos run found. Problems explain every duplicate and every loss.
type Report struct {
	Seed               int64
	Kills              int // services killed with SIGKILL and started again
	KillsDuringRollout int // of which while the rollout ran
	NATSRestarts       int
	PGRestarts         int
	Hosts              int
	PatchedOnce        int // hosts whose packages one install changed, no more
	Rebooted           int
	Duplicates         int
	Lost               int
	Rollout            string // completed, halted, or missing
	RolloutID          string
	Succeeded          int
	Problems           []string
}

// Summary is the one line a chaos run prints.
func (r Report) Summary() string {
	return fmt.Sprintf("chaos: kills=%d hosts=%d patched_once=%d duplicates=%d lost=%d rollout=%s seed=%d",
		r.Kills, r.Hosts, r.PatchedOnce, r.Duplicates, r.Lost, r.Rollout, r.Seed)
}

// Details are the other figures.
func (r Report) Details() string {
	return fmt.Sprintf("chaos: rollout=%s succeeded=%d rebooted=%d kills_during_rollout=%d nats_restarts=%d pg_restarts=%d",
		r.RolloutID, r.Succeeded, r.Rebooted, r.KillsDuringRollout, r.NATSRestarts, r.PGRestarts)
}

// OK reports whether the run met every expectation for a fleet of hosts.
func (r Report) OK(hosts int) bool {
	return r.Hosts == hosts && r.PatchedOnce == hosts && r.Duplicates == 0 && r.Lost == 0 &&
		r.Rollout == "completed" && r.Succeeded == hosts && len(r.Problems) == 0
}

func (r *Report) dup(format string, args ...any) {
	r.Duplicates++
	r.Problems = append(r.Problems, "duplicate: "+fmt.Sprintf(format, args...))
}

func (r *Report) lost(format string, args ...any) {
	r.Lost++
	r.Problems = append(r.Problems, "lost: "+fmt.Sprintf(format, args...))
}

// RolloutOutcome polls ROLLOUTS until the advisory's rollout completed or halted.
func (s *System) RolloutOutcome(ctx context.Context, timeout time.Duration) (string, error) {
	var outcome string
	err := poll(ctx, timeout, "the rollout to end", func(ctx context.Context) (bool, error) {
		if err := s.CheckAlive(); err != nil {
			return false, err
		}
		envs, err := Envelopes(ctx, s.JS, events.StreamRollouts)
		if err != nil {
			return false, nil // NATS restarting
		}
		for _, e := range envs {
			switch e.Type {
			case "RolloutCompleted":
				outcome = "completed"
				return true, nil
			case "RolloutHalted":
				outcome = "halted"
				return true, nil
			}
		}
		return false, nil
	})
	return outcome, err
}

// Settle waits until the executors' work queue is empty and every job the planner
// dispatched has an outcome on UPGRADES (or the timeout passes: Check reports what is missing).
func (s *System) Settle(ctx context.Context, timeout time.Duration) {
	_ = poll(ctx, timeout, "the system to settle", func(ctx context.Context) (bool, error) {
		st, err := s.JS.Stream(ctx, events.StreamJobs)
		if err != nil {
			return false, nil
		}
		info, err := st.Info(ctx)
		if err != nil || info.State.Msgs > 0 {
			return false, nil
		}
		conn, err := pgx.Connect(ctx, s.DBURL)
		if err != nil {
			return false, nil
		}
		defer conn.Close(ctx)
		var open int
		err = conn.QueryRow(ctx, `select count(*) from `+executordb.Schema+`.jobs where status not in ('completed', 'failed')`).Scan(&open)
		return err == nil && open == 0, nil
	})
}

// Check compares the event log, the planner's and the executor's tables and the hosts.
func (s *System) Check(ctx context.Context) (Report, error) {
	r := Report{Seed: s.opts.Seed, Hosts: len(s.Fleet.Hosts()), Rollout: "missing"}
	// A read can fail while a killed node's streams elect leaders ("no responders"): it is
	// read again, for up to a minute (see poll).
	stream := func(name string) ([]events.Envelope, error) {
		var envs []events.Envelope
		var last error
		err := poll(ctx, time.Minute, "a read of "+name, func(ctx context.Context) (bool, error) {
			envs, last = Envelopes(ctx, s.JS, name)
			return last == nil, nil
		})
		if err != nil && last != nil {
			err = fmt.Errorf("%w (last: %v)", err, last)
		}
		return envs, err
	}

	advisories, err := stream(events.StreamAdvisories)
	if err != nil {
		return r, err
	}
	published := 0
	for _, e := range advisories {
		var a events.SecurityAdvisoryPublished
		if e.Type == a.EventType() && json.Unmarshal(e.Data, &a) == nil && a.AdvisoryID == AdvisoryID {
			published++
		}
	}
	if published != 1 {
		r.dup("SecurityAdvisoryPublished %s published %d times", AdvisoryID, published)
	}

	rollouts, err := stream(events.StreamRollouts)
	if err != nil {
		return r, err
	}
	var planned []string
	completed := map[string]int{}
	for _, e := range rollouts {
		switch e.Type {
		case "RolloutPlanned":
			var p events.RolloutPlanned
			if err := json.Unmarshal(e.Data, &p); err == nil && p.Fleet == Fleet {
				planned = append(planned, p.RolloutID)
			}
		case "RolloutCompleted":
			var c events.RolloutCompleted
			if err := json.Unmarshal(e.Data, &c); err != nil {
				return r, fmt.Errorf("decode RolloutCompleted %s: %w", e.ID, err)
			}
			completed[c.RolloutID]++
			if completed[c.RolloutID] == 1 {
				r.Rollout, r.RolloutID, r.Succeeded = c.Outcome, c.RolloutID, c.Succeeded
				for _, h := range c.Results {
					if h.Rebooted {
						r.Rebooted++
					}
				}
			}
		case "RolloutHalted":
			var h events.RolloutHalted
			_ = json.Unmarshal(e.Data, &h)
			r.Rollout = "halted"
			r.Problems = append(r.Problems, fmt.Sprintf("rollout %s halted: %s (%d failed)", h.RolloutID, h.Reason, h.Failed))
		}
	}
	if len(planned) != 1 {
		r.dup("%d rollouts planned for fleet %s: %v", len(planned), Fleet, planned)
	}
	for id, n := range completed {
		if n > 1 {
			r.dup("RolloutCompleted %s announced %d times", id, n)
		}
	}
	if len(planned) > 0 && r.RolloutID == "" {
		r.RolloutID = planned[0]
	}

	upgrades, err := stream(events.StreamUpgrades)
	if err != nil {
		return r, err
	}
	type outcome struct {
		typ, rollout, host, reason string
	}
	outcomes := map[string][]outcome{} // by job id
	completedFor := map[[2]string]int{}
	for _, e := range upgrades {
		switch e.Type {
		case "UpgradeCompleted":
			var c events.UpgradeCompleted
			if err := json.Unmarshal(e.Data, &c); err != nil {
				return r, fmt.Errorf("decode UpgradeCompleted %s: %w", e.ID, err)
			}
			outcomes[c.JobID] = append(outcomes[c.JobID], outcome{e.Type, c.RolloutID, c.HostID, ""})
			completedFor[[2]string{c.RolloutID, c.HostID}]++
		case "UpgradeFailed":
			var f events.UpgradeFailed
			if err := json.Unmarshal(e.Data, &f); err != nil {
				return r, fmt.Errorf("decode UpgradeFailed %s: %w", e.ID, err)
			}
			outcomes[f.JobID] = append(outcomes[f.JobID], outcome{e.Type, f.RolloutID, f.HostID, f.Reason})
			r.Problems = append(r.Problems, fmt.Sprintf("job %s on %s failed: %s: %s", f.JobID, f.HostID, f.Reason, f.Message))
		}
	}
	for k, n := range completedFor {
		if n > 1 {
			r.dup("%d UpgradeCompleted for rollout %s host %s", n, k[0], k[1])
		}
	}

	pool, err := db.Connect(ctx, s.DBURL, plannerdb.Schema)
	if err != nil {
		return r, fmt.Errorf("check: %w", err)
	}
	defer pool.Close()
	// The planner's own listing: a host of a wave that never started is in it too.
	hosts, err := plannerdb.New(pool).ListRolloutHosts(ctx, r.RolloutID)
	if err != nil {
		return r, fmt.Errorf("check: planner jobs of %s: %w", r.RolloutID, err)
	}
	type plannerJob struct{ host, job, state string }
	pjobs := make([]plannerJob, len(hosts))
	for i, h := range hosts {
		pjobs[i] = plannerJob{h.HostID, h.JobID, h.State}
	}
	byJob := map[string]plannerJob{}
	for _, j := range pjobs {
		byJob[j.job] = j
		if j.job == "" {
			r.lost("host %s never dispatched (state %s)", j.host, j.state)
			continue
		}
		outs := outcomes[j.job]
		switch {
		case len(outs) == 0:
			r.lost("job %s (host %s, planner state %s) has no outcome event", j.job, j.host, j.state)
		case len(outs) > 1:
			r.dup("job %s (host %s) has %d outcome events", j.job, j.host, len(outs))
		}
		if len(outs) > 0 {
			want := map[string]string{"UpgradeCompleted": "succeeded", "UpgradeFailed": "failed"}[outs[0].typ]
			if j.state != want {
				r.lost("job %s on %s ended %s but the planner's rollout says %s", j.job, j.host, outs[0].typ, j.state)
			}
		}
	}
	if len(pjobs) != r.Hosts {
		r.lost("the planner's rollout has %d hosts, the fleet %d", len(pjobs), r.Hosts)
	}
	for job, outs := range outcomes {
		if _, ok := byJob[job]; !ok && outs[0].rollout == r.RolloutID {
			r.dup("outcome of job %s on %s, a job the planner's rollout does not hold", job, outs[0].host)
		}
	}

	rows, err := pool.Query(ctx, `select job_id, host_id, status from `+executordb.Schema+`.jobs where rollout_id = $1`, r.RolloutID)
	if err != nil {
		return r, fmt.Errorf("check: executor jobs: %w", err)
	}
	defer rows.Close()
	perHost := map[string][]string{}
	for rows.Next() {
		var job, host, status string
		if err := rows.Scan(&job, &host, &status); err != nil {
			return r, fmt.Errorf("check: executor jobs: %w", err)
		}
		perHost[host] = append(perHost[host], job)
		if status != "completed" && status != "failed" {
			r.lost("executor job %s on %s still %s", job, host, status)
		}
		if _, ok := byJob[job]; !ok {
			r.dup("executor ran job %s on %s, which the planner's rollout does not hold", job, host)
		}
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("check: executor jobs: %w", err)
	}
	for host, jobs := range perHost {
		if len(jobs) > 1 {
			r.dup("executor holds %d jobs for %s: %s", len(jobs), host, strings.Join(jobs, ", "))
		}
	}

	for _, h := range s.Fleet.Hosts() {
		switch n := h.Installs(); {
		case n == 1:
			r.PatchedOnce++
		case n == 0:
			r.lost("host %s never patched", h.Name)
		default:
			r.dup("host %s patched by %d installs", h.Name, n)
		}
		if n := h.MaxConcurrentChanges(); n > 1 {
			r.dup("host %s ran %d changing operations at once", h.Name, n)
		}
		if v := h.PackageVersion("openssl"); v != "3.0.19-1~deb12u3" {
			r.Problems = append(r.Problems, fmt.Sprintf("host %s has openssl %s", h.Name, v))
		}
	}
	// Consequences first, causes last: a log's tail then shows why hosts were lost.
	rank := func(p string) int {
		for i, prefix := range []string{"lost: ", "host ", "duplicate: ", "job ", "rollout "} {
			if strings.HasPrefix(p, prefix) {
				return i
			}
		}
		return 5
	}
	sort.Slice(r.Problems, func(i, j int) bool {
		a, b := r.Problems[i], r.Problems[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		return a < b
	})
	return r, nil
}
