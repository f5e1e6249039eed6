package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/inbox"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/plan"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
)

// OnRequested plans an on-demand rollout: the same waves, windows and budgets as any other.
func (e *Engine) OnRequested(ctx context.Context, m events.Meta, req events.RolloutRequested) error {
	now := e.now()
	res, err := e.planRequest(ctx, req)
	if errors.Is(err, ErrBadRequest) {
		return events.Permanent(err)
	}
	if err != nil {
		return err
	}
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxRequests, m.ID); err != nil || seen {
			return err
		}
		if len(res.Fleets) == 0 {
			e.Logger.Warn("rollout request selects no host under a fleet policy", "request_id", req.RequestID, "by", req.RequestedBy, "unmatched", len(res.Unmatched))
			return nil
		}
		for _, fp := range res.Fleets {
			if fp.Skipped != "" {
				e.Logger.Info("request not rolled out", "request_id", req.RequestID, "fleet", fp.Policy.Name, "why", fp.Skipped)
				continue
			}
			id := events.DerivedID("rollout", "request", req.RequestID, fp.Policy.Name)
			if _, err := e.persist(ctx, tx, q, fp, id, "request:"+req.RequestID+":"+fp.Policy.Name, now, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// planRequest selects the request's hosts from the inventory and plans them. A selector
// fleet that names a fleet policy selects that policy's hosts; otherwise it is an inventory
// fleet.
func (e *Engine) planRequest(ctx context.Context, req events.RolloutRequested) (plan.Result, error) {
	if req.Kind == events.KindDocker && e.Docker == nil {
		return plan.Result{}, fmt.Errorf("%w: docker request %s: no Docker manifest configured (PATCHFLEET_DOCKER_MANIFEST)", ErrBadRequest, req.RequestID)
	}
	hq := query.HostsRequest{Fleet: req.Selector.Fleet, Tags: req.Selector.Tags, IDs: req.Selector.Hosts}
	var only *policy.Fleet
	if f := e.Policy.Fleet(req.Selector.Fleet); f != nil {
		only = f
		hq.Fleet = f.FleetName
		if f.FleetName == policy.AnyFleet {
			hq.Fleet = ""
		} else if f.FleetName == "" && len(f.Match) == 0 {
			hq.Fleet = f.Name
		}
		tags := maps.Clone(f.Match)
		if tags == nil {
			tags = map[string]string{}
		}
		maps.Copy(tags, req.Selector.Tags)
		hq.Tags = tags
	}
	var sel []plan.Selected
	err := e.eachHost(ctx, hq, func(h query.Host) {
		if h.Retired || only != nil && e.Policy.For(h.Fleet, h.Tags) != only {
			return
		}
		sel = append(sel, plan.Selected{ID: h.ID, Fleet: h.Fleet, Tags: h.Tags, Components: h.Components})
	})
	if err != nil {
		return plan.Result{}, fmt.Errorf("select hosts for request %s: %w", req.RequestID, err)
	}
	return plan.OnDemand(e.Policy, req, sel, e.Docker), nil
}

// decide runs a person's decision on a locked rollout.
func (e *Engine) decide(ctx context.Context, m events.Meta, d events.Decision, what string, fn func(tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout) error) error {
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxDecisions, m.ID); err != nil || seen {
			return err
		}
		r, err := q.LockRollout(ctx, d.RolloutID)
		if notFound(err) {
			return events.Permanent(fmt.Errorf("%s rollout %s by %s: no such rollout", what, d.RolloutID, d.By))
		}
		if err != nil {
			return wrapRollout("lock", d.RolloutID, err)
		}
		return fn(tx, q, r)
	})
}

// OnApproved starts an awaiting rollout when the approval names its plan hash and comes from
// one of the fleet's approvers. Any other approval is refused: the handler returns a
// permanent error, so the event is dead-lettered with the reason and logged, and the rollout
// keeps waiting for a valid approval. (Halting would let a stale approval stop a plan that
// nobody found wrong.)
func (e *Engine) OnApproved(ctx context.Context, m events.Meta, a events.RolloutApproved) error {
	now := e.now()
	return e.decide(ctx, m, a.Decision, "approve", func(tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout) error {
		log := e.log(r.ID).With("by", a.By)
		if r.State != query.RolloutAwaitingApproval {
			log.Info("approval of a rollout not awaiting one; ignored", "state", r.State)
			return nil
		}
		if a.PlanHash != r.PlanHash {
			log.Warn("approval refused: it names another plan", "approved_hash", a.PlanHash, "plan_hash", r.PlanHash)
			return events.Permanent(fmt.Errorf("approve rollout %s: approval by %s names plan %s, the plan is %s", r.ID, a.By, a.PlanHash, r.PlanHash))
		}
		if err := e.mayDecide("approve", r, a.By); err != nil {
			return err
		}
		if err := q.ApproveRollout(ctx, plannerdb.ApproveRolloutParams{ID: r.ID, ApprovedBy: a.By, Now: now}); err != nil {
			return wrapRollout("approve", r.ID, err)
		}
		log.Info("rollout approved", "plan_hash", r.PlanHash)
		r.State, r.ApprovedBy = query.RolloutScheduled, a.By
		return e.advance(ctx, tx, q, r, now, m.ID)
	})
}

// mayDecide refuses a decision that only the fleet's approvers may take — approving,
// rejecting, resuming, cancelling — when who is not one:
// a permanent error, so the event is dead-lettered with the reason and the rollout keeps its
// state. Pausing is a brake anyone allowed to publish decisions may pull.
func (e *Engine) mayDecide(verb string, r plannerdb.Rollout, who string) error {
	if f := e.Policy.Fleet(r.Fleet); f == nil || !f.MayApprove(who) {
		e.log(r.ID).Warn(verb+" refused: not an approver of the fleet", "by", who, "fleet", r.Fleet)
		return events.Permanent(fmt.Errorf("%s rollout %s: %s is not an approver of fleet %s", verb, r.ID, who, r.Fleet))
	}
	return nil
}

// OnRejected ends a rollout that has not started without touching a host.
func (e *Engine) OnRejected(ctx context.Context, m events.Meta, rj events.RolloutRejected) error {
	now := e.now()
	return e.decide(ctx, m, rj.Decision, "reject", func(tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout) error {
		if r.State != query.RolloutAwaitingApproval && !(r.State == query.RolloutScheduled && r.StartedAt == nil) {
			e.log(r.ID).Info("rejection of a rollout already decided; ignored", "state", r.State, "by", rj.By)
			return nil
		}
		if err := e.mayDecide("reject", r, rj.By); err != nil {
			return err
		}
		return e.finish(ctx, tx, q, r, query.RolloutRejected, "rejected", "rejected by "+rj.By, now, m.ID)
	})
}

// OnPaused stops new work; jobs in flight finish and are recorded.
func (e *Engine) OnPaused(ctx context.Context, m events.Meta, p events.RolloutPaused) error {
	now := e.now()
	return e.decide(ctx, m, p.Decision, "pause", func(tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout) error {
		if r.State != query.RolloutScheduled && r.State != query.RolloutRunning {
			e.log(r.ID).Info("pause of a rollout neither scheduled nor running; ignored", "state", r.State)
			return nil
		}
		e.log(r.ID).Info("rollout paused", "by", p.By)
		return wrapRollout("pause", r.ID, q.SetRolloutState(ctx, plannerdb.SetRolloutStateParams{ID: r.ID, State: query.RolloutPaused, Reason: "paused by " + p.By, Now: now}))
	})
}

// OnResumed continues a paused or halted rollout.
func (e *Engine) OnResumed(ctx context.Context, m events.Meta, rs events.RolloutResumed) error {
	now := e.now()
	return e.decide(ctx, m, rs.Decision, "resume", func(tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout) error {
		if r.State != query.RolloutPaused && r.State != query.RolloutHalted {
			e.log(r.ID).Info("resume of a rollout neither paused nor halted; ignored", "state", r.State)
			return nil
		}
		if err := e.mayDecide("resume", r, rs.By); err != nil {
			return err
		}
		if err := q.ResumeRollout(ctx, plannerdb.ResumeRolloutParams{ID: r.ID, Now: now}); err != nil {
			return wrapRollout("resume", r.ID, err)
		}
		e.log(r.ID).Info("rollout resumed", "by", rs.By, "was", r.State)
		r.State = query.RolloutRunning
		if r.StartedAt == nil {
			r.State = query.RolloutScheduled
		}
		return e.advance(ctx, tx, q, r, now, m.ID)
	})
}

// OnCancelled ends a rollout: nothing new starts, hosts not started are skipped.
func (e *Engine) OnCancelled(ctx context.Context, m events.Meta, c events.RolloutCancelled) error {
	now := e.now()
	return e.decide(ctx, m, c.Decision, "cancel", func(tx pgx.Tx, q *plannerdb.Queries, r plannerdb.Rollout) error {
		if !isOpen(r.State) {
			e.log(r.ID).Info("cancel of an ended rollout; ignored", "state", r.State)
			return nil
		}
		if err := e.mayDecide("cancel", r, c.By); err != nil {
			return err
		}
		return e.finish(ctx, tx, q, r, query.RolloutCancelled, "cancelled", "cancelled by "+c.By, now, m.ID)
	})
}
