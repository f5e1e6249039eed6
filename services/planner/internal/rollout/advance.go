package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/budget"
)

// advance moves a locked rollout as far as it can go at now: starts it when its time and
// window have come, starts waves after the bake time and inside a window, dispatches jobs
// within the fleet's unavailability budget, completes waves whose hosts all have a result,
// and completes the rollout after its last wave. It never starts anything outside a window;
// what is in flight when a window closes finishes and is recorded.
func (e *Engine) advance(ctx context.Context, tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout, now time.Time, causation string) error {
	if r.State == query.RolloutScheduled {
		if r.NotBefore != nil && now.Before(*r.NotBefore) || !e.windowOpen(r, now) {
			return nil
		}
		if err := q.StartRollout(ctx, plannerdb.StartRolloutParams{ID: r.ID, Now: now}); err != nil {
			return wrapRollout("start", r.ID, err)
		}
		r.State = query.RolloutRunning
		e.log(r.ID).Info("rollout started", "fleet", r.Fleet)
	}
	for r.State == query.RolloutRunning {
		w, err := q.GetWave(ctx, plannerdb.GetWaveParams{RolloutID: r.ID, Idx: r.CurrentWave})
		if err != nil {
			return wrapRollout(fmt.Sprintf("load wave %d of", r.CurrentWave), r.ID, err)
		}
		if w.State == "pending" {
			if r.WaveNotBefore != nil && now.Before(*r.WaveNotBefore) || !e.windowOpen(r, now) {
				return nil // baking, or outside every window
			}
			if err := e.startWave(ctx, tx, q, r, now, causation); err != nil {
				return err
			}
		}
		if e.windowOpen(r, now) {
			if err := e.dispatch(ctx, tx, q, r, now, causation); err != nil {
				return err
			}
		}
		busy, err := q.WaveBusy(ctx, plannerdb.WaveBusyParams{RolloutID: r.ID, Wave: r.CurrentWave})
		if err != nil {
			return wrapRollout("check wave of", r.ID, err)
		}
		if busy {
			return nil
		}
		c, err := q.WaveCounts(ctx, plannerdb.WaveCountsParams{RolloutID: r.ID, Wave: r.CurrentWave})
		if err != nil {
			return wrapRollout("count wave of", r.ID, err)
		}
		if c.Pending+c.Dispatched > 0 {
			return nil // the check and the count see different snapshots
		}
		// The wave is done and the failure budget holds (a spent one halted the rollout when
		// the failure came in): announce it and promote.
		if err := q.CompleteWave(ctx, plannerdb.CompleteWaveParams{RolloutID: r.ID, Idx: r.CurrentWave, Now: &now}); err != nil {
			return wrapRollout("complete wave of", r.ID, err)
		}
		if err := e.emit(ctx, tx, r.ID, causation, now, events.WaveCompleted{
			RolloutID: r.ID, Wave: int(r.CurrentWave), Succeeded: int(c.Succeeded), Failed: int(c.Failed),
		}, "wave", strconv.Itoa(int(r.CurrentWave))); err != nil {
			return err
		}
		if r.CurrentWave+1 >= r.WaveCount {
			return e.finish(ctx, tx, q, r, query.RolloutCompleted, "completed", "", now, causation)
		}
		r.CurrentWave++
		var bake *time.Time
		if r.BakeNs > 0 {
			bake = ptr(now.Add(time.Duration(r.BakeNs)))
		}
		r.WaveNotBefore = bake
		if err := q.SetCurrentWave(ctx, plannerdb.SetCurrentWaveParams{ID: r.ID, CurrentWave: r.CurrentWave, WaveNotBefore: bake, Now: now}); err != nil {
			return wrapRollout("promote", r.ID, err)
		}
	}
	return nil
}

// startWave starts the current wave: its hosts become pending rows, ready to dispatch.
func (e *Engine) startWave(ctx context.Context, tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout, now time.Time, causation string) error {
	if err := q.StartWaveHosts(ctx, plannerdb.StartWaveHostsParams{RolloutID: r.ID, Wave: r.CurrentWave}); err != nil {
		return wrapRollout(fmt.Sprintf("start the hosts of wave %d of", r.CurrentWave), r.ID, err)
	}
	hosts, err := q.WaveHosts(ctx, plannerdb.WaveHostsParams{RolloutID: r.ID, Wave: r.CurrentWave})
	if err != nil {
		return wrapRollout("list wave hosts of", r.ID, err)
	}
	if err := q.StartWave(ctx, plannerdb.StartWaveParams{RolloutID: r.ID, Idx: r.CurrentWave, Now: &now}); err != nil {
		return wrapRollout("start wave of", r.ID, err)
	}
	e.log(r.ID).Info("wave started", "wave", r.CurrentWave, "hosts", len(hosts))
	return e.emit(ctx, tx, r.ID, causation, now, events.WaveStarted{RolloutID: r.ID, Wave: int(r.CurrentWave), Hosts: hosts}, "wave", strconv.Itoa(int(r.CurrentWave)))
}

// dispatch starts as many jobs of the current wave as the fleet's unavailability budget
// allows. The fleet lock serialises dispatchers of one fleet (other rollouts, other planner
// instances), so max_unavailable holds fleet-wide.
func (e *Engine) dispatch(ctx context.Context, tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout, now time.Time, causation string) error {
	if err := q.LockFleet(ctx, r.Fleet); err != nil {
		return wrapRollout("lock fleet "+r.Fleet+" for", r.ID, err)
	}
	inFlight, err := q.FleetInFlight(ctx, r.Fleet)
	if err != nil {
		return wrapRollout("count jobs in flight for", r.ID, err)
	}
	slots := budget.Slots(int(r.MaxUnavailable), int(inFlight))
	if slots == 0 {
		return nil
	}
	pending, err := q.PendingHosts(ctx, plannerdb.PendingHostsParams{RolloutID: r.ID, Wave: r.CurrentWave, Max: int32(slots)})
	if err != nil {
		return wrapRollout("list pending hosts of", r.ID, err)
	}
	// The lot in two statements (the hosts, their jobs' events), not two per host.
	d := plannerdb.DispatchHostsParams{RolloutID: r.ID, Now: &now}
	msgs := make([]events.Message, 0, len(pending))
	for _, h := range pending {
		attempt := h.Attempt + 1
		jobID := events.DerivedID("job", r.ID, h.HostID, strconv.Itoa(int(attempt)))
		var pkgs []events.PackageTarget
		var comps []events.Component
		if err := json.Unmarshal(h.Packages, &pkgs); err != nil {
			return fmt.Errorf("decode packages of host %s in rollout %s: %w", h.HostID, r.ID, err)
		}
		if err := json.Unmarshal(h.Components, &comps); err != nil {
			return fmt.Errorf("decode components of host %s in rollout %s: %w", h.HostID, r.ID, err)
		}
		d.HostIds, d.JobIds, d.Attempts = append(d.HostIds, h.HostID), append(d.JobIds, jobID), append(d.Attempts, attempt)
		job := events.UpgradeRequested{
			JobID: jobID, RolloutID: r.ID, Wave: int(r.CurrentWave), HostID: h.HostID, Kind: r.Kind,
			Strategy: r.Strategy, Reboot: r.Reboot, Packages: pkgs, HealthCheck: r.HealthCheck,
			ConfigureUnattended: r.ConfigureUnattended, Components: comps,
		}
		msg, err := e.message(r.ID, causation, now, job, h.HostID, strconv.Itoa(int(attempt)))
		if err != nil {
			return err
		}
		msgs = append(msgs, msg)
	}
	if len(pending) == 0 {
		return nil
	}
	if err := q.DispatchHosts(ctx, d); err != nil {
		return wrapRollout("dispatch hosts of", r.ID, err)
	}
	if err := outbox.Add(ctx, tx, msgs...); err != nil {
		return wrapRollout("announce the jobs of", r.ID, err)
	}
	e.log(r.ID).Debug("jobs dispatched", "wave", r.CurrentWave, "jobs", len(pending), "fleet_in_flight", int(inFlight)+len(pending))
	return nil
}

// finish ends a rollout: hosts not yet started are skipped, and RolloutCompleted carries
// every host's result.
func (e *Engine) finish(ctx context.Context, tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout, state, outcome, reason string, now time.Time, causation string) error {
	skipReason := reason
	if skipReason == "" {
		skipReason = outcome
	}
	if err := q.SkipPendingHosts(ctx, plannerdb.SkipPendingHostsParams{RolloutID: r.ID, Reason: skipReason, Now: &now}); err != nil {
		return wrapRollout("skip pending hosts of", r.ID, err)
	}
	if err := q.SetRolloutState(ctx, plannerdb.SetRolloutStateParams{ID: r.ID, State: state, Reason: reason, Now: now}); err != nil {
		return wrapRollout("finish", r.ID, err)
	}
	rows, err := q.RolloutResults(ctx, r.ID)
	if err != nil {
		return wrapRollout("load results of", r.ID, err)
	}
	done := events.RolloutCompleted{RolloutID: r.ID, Outcome: outcome, Results: make([]events.HostResult, 0, len(rows))}
	for _, h := range rows {
		res := events.HostResult{HostID: h.HostID, Status: h.State, Reason: h.Reason, RebootPending: h.RebootPending, Rebooted: h.Rebooted}
		if h.State == "dispatched" {
			// Cancelled with the job in flight: its own outcome follows from the executor.
			res.Status, res.Reason = events.ResultSkipped, "in flight when the rollout ended"
		}
		switch res.Status {
		case events.ResultSucceeded:
			done.Succeeded++
		case events.ResultFailed:
			done.Failed++
		default:
			done.Skipped++
		}
		done.Results = append(done.Results, res)
	}
	e.log(r.ID).Info("rollout ended", "outcome", outcome, "succeeded", done.Succeeded, "failed", done.Failed, "skipped", done.Skipped)
	return e.emit(ctx, tx, r.ID, causation, now, done)
}

// emit adds an event to the outbox with an id derived from its type, the rollout and parts.
func (e *Engine) emit(ctx context.Context, tx pgx.Tx, rolloutID, causation string, now time.Time, ev events.Event, parts ...string) error {
	msg, err := e.message(rolloutID, causation, now, ev, parts...)
	if err != nil {
		return err
	}
	if err := outbox.Add(ctx, tx, msg); err != nil {
		return wrapRollout("announce "+ev.EventType()+" of", rolloutID, err)
	}
	return nil
}

// message is ev as an event of rolloutID, its id derived from the rollout and parts.
func (e *Engine) message(rolloutID, causation string, now time.Time, ev events.Event, parts ...string) (events.Message, error) {
	msg, err := events.NewDerived(ev, e.origin(rolloutID, causation), now, append([]string{rolloutID}, parts...)...)
	if err != nil {
		return msg, wrapRollout("announce "+ev.EventType()+" of", rolloutID, err)
	}
	return msg, nil
}
