package chatops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/command"
	"github.com/patchfleet/patchfleet/tools/chatops/signature"
	"github.com/patchfleet/patchfleet/tools/chatops/slack"
)

// Handler serves Slack's slash commands (POST /slack/commands) and interactivity (POST
// /slack/actions). Every request must carry a valid, fresh signature; anything else is 401.
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/commands", b.commands)
	mux.HandleFunc("POST /slack/actions", b.actions)
	return b.verify(mux)
}

func (b *Bot) verify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, ops.MaxRequestBody))
		if err != nil {
			http.Error(w, "cannot read request", http.StatusBadRequest)
			return
		}
		err = signature.Verify(b.SigningSecret, r.Header.Get(signature.HeaderTimestamp), r.Header.Get(signature.HeaderSignature), body, b.now())
		if err != nil {
			b.Logger.Warn("slack request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// user is who asked, as Slack says.
type user struct{ ID, Name string }

// identity is the Patchfleet name of a Slack user: the configured mapping, or
// "slack:<user id>" (which a fleet's approvers may list directly).
func (b *Bot) identity(u user) (string, bool) {
	if name, ok := b.Users[u.ID]; ok {
		return name, true
	}
	return "slack:" + u.ID, false
}

// reply is an answer to a slash command.
type reply struct {
	ResponseType string        `json:"response_type"` // ephemeral | in_channel
	Text         string        `json:"text"`
	Blocks       []slack.Block `json:"blocks,omitempty"`
}

func ephemeral(text string) reply { return reply{ResponseType: "ephemeral", Text: text} }

func (b *Bot) commands(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	u := user{ID: r.PostForm.Get("user_id"), Name: r.PostForm.Get("user_name")}
	ctx, cancel := context.WithTimeout(r.Context(), b.QueryTimeout)
	defer cancel()
	ops.WriteJSON(w, http.StatusOK, b.run(ctx, u, r.PostForm.Get("text")))
}

// run executes one command and says what happened.
func (b *Bot) run(ctx context.Context, u user, text string) reply {
	c, err := command.Parse(text)
	if err != nil {
		return ephemeral(fmt.Sprintf("%v\n%s", err, command.Usage))
	}
	switch c.Verb {
	case command.Help:
		return ephemeral(command.Usage)
	case command.Approve, command.Reject, command.Pause, command.Resume, command.Cancel:
		msg, err := b.decide(ctx, c, u)
		if err != nil {
			return ephemeral(":no_entry_sign: " + err.Error())
		}
		return reply{ResponseType: "in_channel", Text: msg}
	case command.Status:
		return b.status(ctx, c.Rollout)
	case command.Exposed:
		req := query.ExposureRequest{AdvisoryID: c.Arg, Limit: 200}
		if strings.HasPrefix(strings.ToUpper(c.Arg), "CVE-") {
			req = query.ExposureRequest{CVE: strings.ToUpper(c.Arg), Limit: 200}
		}
		page, err := b.Queries.Exposure(ctx, req)
		if err != nil {
			return ephemeral(queryError("exposure of "+c.Arg, err))
		}
		return ephemeral(ExposureText(c.Arg, page.Hosts, page.NextCursor != ""))
	case command.Host:
		h, err := b.Queries.Host(ctx, query.HostRequest{ID: c.Arg})
		if err != nil {
			return ephemeral(queryError("host "+c.Arg, err))
		}
		return ephemeral(HostText(h))
	}
	return ephemeral(command.Usage)
}

func (b *Bot) status(ctx context.Context, id string) reply {
	if id == "" {
		rs, err := b.Queries.Rollouts(ctx, query.RolloutsRequest{Open: true, Limit: 20})
		if err != nil {
			return ephemeral(queryError("rollouts", err))
		}
		return ephemeral(RolloutsText(rs.Rollouts))
	}
	d, err := b.Queries.Rollout(ctx, query.RolloutRequest{ID: id})
	if err != nil {
		return ephemeral(queryError("rollout "+id, err))
	}
	m := ProgressMessage(FromDetail(d))
	return reply{ResponseType: "ephemeral", Text: m.Text, Blocks: m.Blocks}
}

func queryError(what string, err error) string {
	var re *query.RemoteError
	if errors.As(err, &re) && re.Code == http.StatusNotFound {
		return fmt.Sprintf("%s: not found", what)
	}
	return fmt.Sprintf(":warning: %s: %v", what, err)
}

// ErrForbidden marks a decision the user may not take.
var ErrForbidden = errors.New("not allowed")

// Authorize decides whether identity may take verb on a fleet's rollout. Approving,
// rejecting, resuming and cancelling need the fleet to list the identity as an approver (a
// fleet that lists none cannot be decided from chat); pausing, which only stops new work,
// is also open to every mapped user.
func Authorize(verb, identity string, mapped bool, fleet string, approvers []string) error {
	if slices.Contains(approvers, identity) {
		return nil
	}
	if verb == command.Pause && mapped {
		return nil
	}
	if len(approvers) == 0 {
		return fmt.Errorf("%w: fleet %s lists no approvers; %s it from the CLI", ErrForbidden, fleet, verb)
	}
	return fmt.Errorf("%w: %s is not an approver of fleet %s", ErrForbidden, identity, fleet)
}

// decide checks who asks and what the rollout is, then publishes the decision. The
// planner checks the plan hash and the approver again; the bot refuses early to say why.
func (b *Bot) decide(ctx context.Context, c command.Command, u user) (string, error) {
	who, mapped := b.identity(u)
	d, err := b.Queries.Rollout(ctx, query.RolloutRequest{ID: c.Rollout})
	if err != nil {
		return "", errors.New(queryError("rollout "+c.Rollout, err))
	}
	pol, err := b.Queries.Policies(ctx, query.PoliciesRequest{Fleet: d.Fleet})
	if err != nil {
		return "", errors.New(queryError("policy of fleet "+d.Fleet, err))
	}
	var approvers []string
	for _, f := range pol.Fleets {
		if f.Name == d.Fleet {
			approvers = f.Approvers
		}
	}
	if err := Authorize(c.Verb, who, mapped, d.Fleet, approvers); err != nil {
		b.Logger.Warn("chat decision refused", "verb", c.Verb, "rollout_id", c.Rollout, "slack_user", u.ID, "identity", who, "reason", err)
		return "", err
	}
	dec := events.Decision{RolloutID: d.ID, By: who, Reason: strings.TrimSpace(c.Reason + " (slack " + u.ID + " " + u.Name + ")")}
	var e events.Event
	switch c.Verb {
	case command.Approve:
		if d.State != query.RolloutAwaitingApproval {
			return "", fmt.Errorf("rollout %s is %s, not awaiting approval", d.ID, d.State)
		}
		hash := c.PlanHash
		if hash == "" {
			hash = d.PlanHash
		}
		if hash != d.PlanHash {
			return "", fmt.Errorf("rollout %s now has plan %s, not %s: approve the plan in its new approval request", d.ID, short(d.PlanHash), short(hash))
		}
		e = events.RolloutApproved{Decision: dec, PlanHash: hash}
	case command.Reject:
		e = events.RolloutRejected{Decision: dec, PlanHash: cmpOr(c.PlanHash, d.PlanHash)}
	case command.Pause:
		e = events.RolloutPaused{Decision: dec}
	case command.Resume:
		e = events.RolloutResumed{Decision: dec}
	case command.Cancel:
		e = events.RolloutCancelled{Decision: dec}
	}
	msg, err := events.New(e, events.Origin{Producer: Producer, CorrelationID: d.ID}, b.now())
	if err != nil {
		return "", fmt.Errorf("%s rollout %s: %w", c.Verb, d.ID, err)
	}
	if err := events.Publish(ctx, b.JS, msg); err != nil {
		return "", fmt.Errorf("%s rollout %s: %w", c.Verb, d.ID, err)
	}
	b.Logger.Info("chat decision published", "verb", c.Verb, "rollout_id", d.ID, "by", who, "slack_user", u.ID, "plan_hash", d.PlanHash, "event_id", msg.ID)
	_, hash := decisionOf(e)
	return DecisionMessage(c.Verb, d.ID, who, hash, c.Reason).Text, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// interaction is the part of a block_actions payload the bot reads.
type interaction struct {
	Type string `json:"type"`
	User struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	} `json:"user"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
	ResponseURL string `json:"response_url"`
}

// actions handles the approval buttons. Slack wants 200 at once; the outcome is shown by
// the decision event (which replaces the buttons) or, when refused, an ephemeral message to
// the one who clicked.
func (b *Bot) actions(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var in interaction
	if err := json.Unmarshal([]byte(r.PostForm.Get("payload")), &in); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
	if in.Type != "block_actions" || len(in.Actions) == 0 {
		return
	}
	a := in.Actions[0]
	verb := map[string]string{command.ActionApprove: command.Approve, command.ActionReject: command.Reject}[a.ActionID]
	v, err := command.DecodeAction(a.Value)
	if verb == "" || err != nil {
		b.Logger.Warn("unknown button", "action_id", a.ActionID, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), b.QueryTimeout)
	defer cancel()
	u := user{ID: in.User.ID, Name: in.User.Username}
	if _, err := b.decide(ctx, command.Command{Verb: verb, Rollout: v.Rollout, PlanHash: v.PlanHash}, u); err != nil {
		b.respond(ctx, in.ResponseURL, ":no_entry_sign: "+err.Error())
	}
}

// respond posts an ephemeral answer to an interaction's response_url.
func (b *Bot) respond(ctx context.Context, url, text string) {
	if url == "" {
		return
	}
	body, _ := json.Marshal(map[string]any{"response_type": "ephemeral", "replace_original": false, "text": text})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.HTTP.Do(req)
	if err != nil {
		b.Logger.Warn("answer interaction", "err", err)
		return
	}
	_ = resp.Body.Close()
}
