package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops"
	"github.com/patchfleet/patchfleet/tools/chatops/command"
	"github.com/patchfleet/patchfleet/tools/console/auth"
)

// verbs the console decides, mapped to the ChatOps verbs whose rules apply.
var verbs = map[string]string{"approve": command.Approve, "pause": command.Pause, "resume": command.Resume, "cancel": command.Cancel}

// decide publishes a decision about a rollout, under the ChatOps bot's approver rules: the
// fleet's approvers (from the planner's policies) may approve, resume and cancel; anyone
// signed in may pause. An approval names the plan hash the person saw; the planner checks it
// and the approver again.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, sess auth.Session) {
	verb, ok := verbs[r.PathValue("verb")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.QueryTimeout)
	defer cancel()
	id := r.PathValue("id")
	msg, err := s.decision(ctx, verb, id, sess.Name, r.PostFormValue("plan_hash"), r.PostFormValue("reason"))
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			s.log.Warn("console decision refused", "verb", verb, "rollout_id", id, "user", sess.Name, "reason", he.msg)
		}
		s.fail(w, r, sess, err)
		return
	}
	s.sessions.Flash(sess.ID, msg)
	http.Redirect(w, r, "/rollouts/"+pathEscape(id), http.StatusSeeOther)
}

func (s *Server) decision(ctx context.Context, verb, id, who, planHash, reason string) (string, error) {
	d, err := s.q.Rollout(ctx, query.RolloutRequest{ID: id})
	if err != nil {
		return "", err
	}
	approvers, err := s.approvers(ctx, d.Fleet)
	if err != nil {
		return "", err
	}
	if err := chatops.Authorize(verb, who, true, d.Fleet, approvers); err != nil {
		return "", errStatus(http.StatusForbidden, "%s: %v", verb, err)
	}
	reason = strings.TrimSpace(reason)
	dec := events.Decision{RolloutID: d.ID, By: who, Reason: strings.TrimSpace(reason + " (console)")}
	var e events.Event
	switch verb {
	case command.Approve:
		if d.State != query.RolloutAwaitingApproval {
			return "", errStatus(http.StatusConflict, "rollout %s is %s, not awaiting approval", d.ID, d.State)
		}
		if planHash == "" || planHash != d.PlanHash {
			return "", errStatus(http.StatusConflict, "rollout %s now has plan %s, not the plan %s you saw: review the new plan and approve it",
				d.ID, short(d.PlanHash), short(planHash))
		}
		e = events.RolloutApproved{Decision: dec, PlanHash: d.PlanHash}
	case command.Pause:
		e = events.RolloutPaused{Decision: dec}
	case command.Resume:
		e = events.RolloutResumed{Decision: dec}
	case command.Cancel:
		e = events.RolloutCancelled{Decision: dec}
	}
	m, err := s.publish(ctx, e, d.ID)
	if err != nil {
		return "", fmt.Errorf("%s rollout %s: %w", verb, d.ID, err)
	}
	s.log.Info("console decision published", "verb", verb, "rollout_id", d.ID, "by", who, "plan_hash", d.PlanHash, "event_id", m.ID)
	done := map[string]string{command.Approve: "approved plan " + short(d.PlanHash) + " of", command.Pause: "paused",
		command.Resume: "resumed", command.Cancel: "cancelled"}[verb]
	return fmt.Sprintf("You %s rollout %s.", done, short(d.ID)), nil
}

func short(s string) string {
	if s == "" {
		return "(none)"
	}
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
