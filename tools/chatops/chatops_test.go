package chatops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/command"
	"github.com/patchfleet/patchfleet/tools/chatops/signature"
	"github.com/patchfleet/patchfleet/tools/chatops/slack"
	"github.com/patchfleet/patchfleet/tools/chatops/slack/slacktest"
)

const secret = "8f742231b10e8888abcd99yyyzzz85a5"

// responders answer the query subjects the bot asks, from canned answers.
type responders struct {
	mu      sync.Mutex
	answers map[string]any
}

func (r *responders) set(subject string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[subject] = v
}

func startResponders(t *testing.T, nc *nats.Conn) *responders {
	r := &responders{answers: map[string]any{}}
	for _, subj := range []string{query.SubjectPlannerRollout, query.SubjectPlannerRollouts, query.SubjectPlannerPolicies, query.SubjectExposure, query.SubjectHost} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			r.mu.Lock()
			v, ok := r.answers[subj]
			r.mu.Unlock()
			if !ok {
				out := nats.NewMsg(m.Reply)
				out.Header.Set("Nats-Service-Error", "not found")
				out.Header.Set("Nats-Service-Error-Code", "404")
				_ = m.RespondMsg(out)
				return
			}
			b, _ := json.Marshal(v)
			_ = m.Respond(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	return r
}

type harness struct {
	bus   *eventstest.Bus
	slack *slacktest.Server
	q     *responders
	bot   *Bot
	http  *httptest.Server
}

func start(t *testing.T, webhook bool) *harness {
	t.Helper()
	bus := eventstest.Start(t)
	srv := slacktest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := OpenStore(ctx, bus.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	var chat Chat = WebAPI{slack.NewClient(srv.APIURL(), slacktest.Token)}
	if webhook {
		chat = Webhook{&slack.Webhook{URL: srv.WebhookURL()}}
	}
	bot := &Bot{JS: bus.JS, Queries: query.Client{NC: bus.Conn}, Chat: chat, Store: store, Channel: "C1",
		SigningSecret: []byte(secret), Users: map[string]string{"UALICE": "alice", "UMALLORY": "mallory"}}
	bot.defaults()
	cfg := ConsumerConfig("chatops-test", nil, nil)
	cfg.DeliverNew = false
	cfg.Backoff = func(uint64) time.Duration { return 50 * time.Millisecond }
	cons := events.NewConsumer(bus.JS, cfg)
	bot.Register(cons)
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	h := &harness{bus: bus, slack: srv, q: startResponders(t, bus.Conn), bot: bot, http: httptest.NewServer(bot.Handler())}
	t.Cleanup(h.http.Close)
	return h
}

func (h *harness) waitMessages(t *testing.T, what string, cond func([]slacktest.Message) bool) []slacktest.Message {
	t.Helper()
	var msgs []slacktest.Message
	eventstest.WaitFor(t, 10*time.Second, what, func() bool {
		msgs = h.slack.Messages()
		return cond(msgs)
	})
	return msgs
}

func count(msgs []slacktest.Message, sub string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m.Text, sub) {
			n++
		}
	}
	return n
}

func find(msgs []slacktest.Message, sub string) slacktest.Message {
	for _, m := range msgs {
		if strings.Contains(m.Text, sub) {
			return m
		}
	}
	return slacktest.Message{}
}

// signed posts a form to the bot, signed as Slack does at the given time.
func (h *harness) signed(t *testing.T, path string, form url.Values, at time.Time, sign bool) *http.Response {
	t.Helper()
	body := form.Encode()
	req, _ := http.NewRequest(http.MethodPost, h.http.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sign {
		ts := strconv.FormatInt(at.Unix(), 10)
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, signature.Sign([]byte(secret), ts, []byte(body)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func blockText(m slacktest.Message) string {
	if len(m.Blocks) == 0 || m.Blocks[0].Text == nil {
		return ""
	}
	return m.Blocks[0].Text.Text
}

func buttonForm(user, actionID, value, responseURL string) url.Values {
	p, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]string{"id": user, "username": strings.ToLower(user)},
		"actions":      []map[string]string{{"action_id": actionID, "value": value}},
		"response_url": responseURL,
	})
	return url.Values{"payload": {string(p)}}
}

func decisions(t *testing.T, bus *eventstest.Bus, typ string) []events.Envelope {
	var out []events.Envelope
	for _, e := range bus.Envelopes(t, events.StreamRollouts) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func plan() events.RolloutPlanned {
	return events.RolloutPlanned{RolloutID: "r1", PlanHash: "sha256:plan1", Kind: events.KindSecurity, Fleet: "prod-web",
		AdvisoryIDs: []string{"DSA-1-1"}, Severity: events.SeverityHigh, Strategy: events.StrategyInPlace, Reboot: events.RebootIfRequired,
		HostCount: 3, NeedsApproval: true, Waves: []events.Wave{{Index: 0, Hosts: []string{"web-1"}}, {Index: 1, Hosts: []string{"web-2", "web-3"}}}}
}

func TestRolloutInSlack(t *testing.T) {
	h := start(t, false)
	bus := h.bus

	// An advisory that exposes hosts is announced with counts per fleet.
	h.q.set(query.SubjectExposure, query.ExposureResponse{Hosts: []query.ExposedHost{
		{HostID: "web-1", Fleet: "prod-web"}, {HostID: "web-2", Fleet: "prod-web"}, {HostID: "db-1", Fleet: "prod-db"}}})
	bus.Publish(t, events.SecurityAdvisoryPublished{AdvisoryID: "DSA-1-1", Revision: 1, Source: "osv", Severity: events.SeverityHigh,
		Modified: time.Now(), Affected: []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12", Package: "openssl", FixedVersion: "3.0.1"}}}, "DSA-1-1")
	msgs := h.waitMessages(t, "advisory message", func(m []slacktest.Message) bool { return count(m, "DSA-1-1 (high) exposes 3 hosts") == 1 })
	if adv := find(msgs, "exposes 3 hosts"); !strings.Contains(adv.Blocks[1].Text.Text, "*prod-db*: 1") || !strings.Contains(adv.Blocks[1].Text.Text, "*prod-web*: 2") {
		t.Fatalf("advisory blocks: %+v", adv.Blocks)
	}

	// The plan opens a thread; the approval request carries the rollout and the plan hash.
	bus.Publish(t, plan(), "r1")
	bus.Publish(t, events.RolloutApprovalRequested{RolloutID: "r1", PlanHash: "sha256:plan1", Fleet: "prod-web", Approvers: []string{"alice"}}, "r1")
	msgs = h.waitMessages(t, "approval request", func(m []slacktest.Message) bool { return count(m, "Approval needed") == 1 })
	root := find(msgs, "Rollout r1: security upgrades for prod-web")
	approval := find(msgs, "Approval needed")
	if root.TS == "" || approval.ThreadTS != root.TS || !approval.ReplyBroadcast {
		t.Fatalf("root %+v, approval %+v", root, approval)
	}
	buttons := approval.Blocks[2].Elements
	if len(buttons) != 2 || buttons[0].ActionID != command.ActionApprove {
		t.Fatalf("buttons: %+v", buttons)
	}
	v, err := command.DecodeAction(buttons[0].Value)
	if err != nil || v.Rollout != "r1" || v.PlanHash != "sha256:plan1" {
		t.Fatalf("button value %q: %+v %v", buttons[0].Value, v, err)
	}

	h.q.set(query.SubjectPlannerRollout, query.RolloutDetail{RolloutSummary: query.RolloutSummary{ID: "r1", Fleet: "prod-web", State: query.RolloutAwaitingApproval, PlanHash: "sha256:plan1"}})
	h.q.set(query.SubjectPlannerPolicies, query.PoliciesResponse{Fleets: []query.FleetPolicy{{Name: "prod-web", Approvers: []string{"alice"}}}})
	now := time.Now()

	// Unsigned, stale and forged requests are refused before anything happens.
	form := buttonForm("UALICE", command.ActionApprove, buttons[0].Value, h.slack.ResponseURL())
	if r := h.signed(t, "/slack/actions", form, now, false); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", r.StatusCode)
	}
	if r := h.signed(t, "/slack/actions", form, now.Add(-6*time.Minute), true); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stale: %d", r.StatusCode)
	}
	// A mapped user who is not an approver is refused, and told why.
	if r := h.signed(t, "/slack/actions", buttonForm("UMALLORY", command.ActionApprove, buttons[0].Value, h.slack.ResponseURL()), now, true); r.StatusCode != http.StatusOK {
		t.Fatalf("mallory: %d", r.StatusCode)
	}
	if len(decisions(t, bus, "RolloutApproved")) != 0 {
		t.Fatal("a non-approver's click published an approval")
	}
	if rs := h.slack.Responses(); len(rs) != 1 || !strings.Contains(fmt.Sprint(rs[0]["text"]), "mallory is not an approver of fleet prod-web") {
		t.Fatalf("responses: %v", rs)
	}

	// Alice's signed click approves exactly the plan shown.
	if r := h.signed(t, "/slack/actions", form, now, true); r.StatusCode != http.StatusOK {
		t.Fatalf("alice: %d", r.StatusCode)
	}
	approved := decisions(t, bus, "RolloutApproved")
	if len(approved) != 1 {
		t.Fatalf("approvals: %d", len(approved))
	}
	var a events.RolloutApproved
	if err := events.DecodeData(approved[0], &a); err != nil {
		t.Fatal(err)
	}
	if a.By != "alice" || a.PlanHash != "sha256:plan1" || a.RolloutID != "r1" || !strings.Contains(a.Reason, "UALICE") || approved[0].CorrelationID != "r1" {
		t.Fatalf("approval %+v (%+v)", a, approved[0])
	}
	// The approval replaces the buttons.
	h.waitMessages(t, "buttons replaced", func(m []slacktest.Message) bool {
		ap := find(m, "approved by alice")
		return ap.TS == approval.TS && len(ap.Blocks) == 1
	})

	// Waves and hosts: one progress message, updated in place; Slack limits and errors on the way.
	h.slack.RateLimitOnce("1")
	bus.Publish(t, events.WaveStarted{RolloutID: "r1", Wave: 0, Hosts: []string{"web-1"}}, "r1")
	bus.Publish(t, events.UpgradeCompleted{JobID: "j1", RolloutID: "r1", HostID: "web-1"}, "r1")
	bus.Publish(t, events.WaveCompleted{RolloutID: "r1", Wave: 0, Succeeded: 1}, "r1")
	h.waitMessages(t, "canary done", func(m []slacktest.Message) bool {
		return strings.Contains(blockText(find(m, "rollout r1 · prod-web")), "wave 0 (canary)  [██████████] 1/1 ✓")
	})
	bus.Publish(t, events.WaveStarted{RolloutID: "r1", Wave: 1, Hosts: []string{"web-2", "web-3"}}, "r1")
	h.waitMessages(t, "wave 1 running", func(m []slacktest.Message) bool {
		return strings.Contains(blockText(find(m, "rollout r1 · prod-web")), "wave 1           [░░░░░░░░░░] 0/2")
	})
	h.slack.FailNext(2)
	failed := events.UpgradeFailed{JobID: "j2", RolloutID: "r1", HostID: "web-2", Reason: events.FailAptError,
		Message: "apt-get exited 100", OutputTail: "E: Sub-process /usr/bin/dpkg returned an error code (1)"}
	fm := bus.Publish(t, failed, "r1")
	h.waitMessages(t, "failure", func(m []slacktest.Message) bool { return count(m, "web-2 failed: apt_error") == 1 })
	// The same event delivered again (another message id) is not announced twice.
	raw := nats.NewMsg(fm.Subject)
	raw.Data = fm.Data
	raw.Header.Set(jetstream.MsgIDHeader, "again-"+fm.ID)
	if _, err := bus.JS.PublishMsg(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	bus.Publish(t, events.UpgradeCompleted{JobID: "j3", RolloutID: "r1", HostID: "web-3"}, "r1")
	bus.Publish(t, events.WaveCompleted{RolloutID: "r1", Wave: 1, Succeeded: 1, Failed: 1}, "r1")
	bus.Publish(t, events.RolloutCompleted{RolloutID: "r1", Outcome: "completed", Succeeded: 2, Failed: 1, Results: []events.HostResult{
		{HostID: "web-1", Status: events.ResultSucceeded, Rebooted: true},
		{HostID: "web-2", Status: events.ResultFailed, Reason: "apt_error"},
		{HostID: "web-3", Status: events.ResultSucceeded, RebootPending: true}}}, "r1")
	msgs = h.waitMessages(t, "summary", func(m []slacktest.Message) bool { return count(m, "Rollout r1 completed: 2 succeeded, 1 failed") == 1 })

	if n := count(msgs, "web-2 failed"); n != 1 {
		t.Fatalf("failure posted %d times", n)
	}
	fail := find(msgs, "web-2 failed")
	if !strings.Contains(fail.Blocks[1].Text.Text, "dpkg returned an error code") {
		t.Fatalf("failure without output tail: %+v", fail.Blocks)
	}
	if n := count(msgs, "rollout r1 · prod-web"); n != 1 {
		t.Fatalf("%d progress messages, want one updated in place", n)
	}
	prog := find(msgs, "rollout r1 · prod-web")
	if prog.Updates < 3 || !strings.HasPrefix(prog.Text, "rollout r1 · prod-web · security — completed") ||
		!strings.Contains(prog.Blocks[0].Text.Text, "[████████████████████] 100% 3/3 hosts · 1 failed") {
		t.Fatalf("progress message after %d updates: %q\n%s", prog.Updates, prog.Text, prog.Blocks[0].Text.Text)
	}
	summary := find(msgs, "Rollout r1 completed")
	for _, want := range []string{":x: web-2 — apt_error", ":white_check_mark: web-1 (rebooted)", ":white_check_mark: web-3 (reboot pending)"} {
		if !strings.Contains(summary.Blocks[1].Text.Text, want) {
			t.Fatalf("summary lacks %q:\n%s", want, summary.Blocks[1].Text.Text)
		}
	}
	for _, m := range msgs {
		if m.TS != root.TS && !strings.Contains(m.Text, "DSA-1-1 (high)") && m.ThreadTS != root.TS {
			t.Fatalf("message outside the rollout's thread: %+v", m)
		}
	}
	var limited, failedCalls int
	for _, c := range h.slack.Calls() {
		switch c.Status {
		case http.StatusTooManyRequests:
			limited++
		case http.StatusInternalServerError:
			failedCalls++
		}
	}
	if limited != 1 || failedCalls != 2 {
		t.Fatalf("faults seen: %d rate limits, %d errors", limited, failedCalls)
	}
}

func TestSlashCommands(t *testing.T) {
	h := start(t, false)
	h.q.set(query.SubjectPlannerRollout, query.RolloutDetail{RolloutSummary: query.RolloutSummary{ID: "r2", Fleet: "prod-db", State: query.RolloutRunning, PlanHash: "sha256:p2", HostCount: 2}})
	h.q.set(query.SubjectPlannerPolicies, query.PoliciesResponse{Fleets: []query.FleetPolicy{{Name: "prod-db", Approvers: []string{"alice"}}}})
	h.q.set(query.SubjectExposure, query.ExposureResponse{Hosts: []query.ExposedHost{{HostID: "db-1", Name: "db-1", Fleet: "prod-db",
		Packages: []query.ExposedPackage{{Name: "libssl3", Installed: "3.0.0", Fixed: "3.0.1"}}}}})
	run := func(user, text string) map[string]any {
		r := h.signed(t, "/slack/commands", url.Values{"user_id": {user}, "user_name": {"x"}, "text": {text}, "command": {"/patchfleet"}}, time.Now(), true)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", text, r.StatusCode)
		}
		var out map[string]any
		_ = json.NewDecoder(r.Body).Decode(&out)
		return out
	}
	if out := run("UMALLORY", "pause r2 smoke"); out["response_type"] != "in_channel" {
		t.Fatalf("mapped user pausing: %v", out)
	}
	if out := run("UMALLORY", "cancel r2"); !strings.Contains(fmt.Sprint(out["text"]), "not an approver") {
		t.Fatalf("non-approver cancelling: %v", out)
	}
	if out := run("USTRANGER", "pause r2"); !strings.Contains(fmt.Sprint(out["text"]), "slack:USTRANGER is not an approver") {
		t.Fatalf("unmapped user pausing: %v", out)
	}
	if out := run("UALICE", "approve r2"); !strings.Contains(fmt.Sprint(out["text"]), "running, not awaiting approval") {
		t.Fatalf("approving a running rollout: %v", out)
	}
	if out := run("UALICE", "resume r2"); out["response_type"] != "in_channel" {
		t.Fatalf("resume: %v", out)
	}
	if got := len(decisions(t, h.bus, "RolloutPaused")) + len(decisions(t, h.bus, "RolloutResumed")); got != 2 {
		t.Fatalf("%d decisions published, want pause and resume", got)
	}
	if len(decisions(t, h.bus, "RolloutCancelled")) != 0 || len(decisions(t, h.bus, "RolloutApproved")) != 0 {
		t.Fatal("a refused command published a decision")
	}
	if out := run("UALICE", "exposed cve-2024-1"); !strings.Contains(fmt.Sprint(out["text"]), "libssl3 3.0.0→3.0.1") {
		t.Fatalf("exposed: %v", out)
	}
	if out := run("UALICE", "host nope"); !strings.Contains(fmt.Sprint(out["text"]), "host nope: not found") {
		t.Fatalf("unknown host: %v", out)
	}
	if out := run("UALICE", "frobnicate"); !strings.Contains(fmt.Sprint(out["text"]), "unknown command") {
		t.Fatalf("unknown command: %v", out)
	}
	unsigned := h.signed(t, "/slack/commands", url.Values{"user_id": {"UALICE"}, "text": {"resume r2"}}, time.Now(), false)
	if unsigned.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned command: %d", unsigned.StatusCode)
	}
}

func TestWebhookDegradesToPosting(t *testing.T) {
	h := start(t, true)
	bus := h.bus
	p := plan()
	p.NeedsApproval = false
	bus.Publish(t, p, "r1")
	bus.Publish(t, events.WaveStarted{RolloutID: "r1", Wave: 0, Hosts: []string{"web-1"}}, "r1")
	bus.Publish(t, events.UpgradeCompleted{JobID: "j1", RolloutID: "r1", HostID: "web-1"}, "r1")
	bus.Publish(t, events.WaveCompleted{RolloutID: "r1", Wave: 0, Succeeded: 1}, "r1")
	bus.Publish(t, events.RolloutCompleted{RolloutID: "r1", Outcome: "completed", Succeeded: 1, Results: []events.HostResult{{HostID: "web-1", Status: events.ResultSucceeded}}}, "r1")
	var got []slack.Message
	eventstest.WaitFor(t, 10*time.Second, "summary on the webhook", func() bool {
		got = h.slack.Webhook()
		return len(got) > 0 && strings.Contains(got[len(got)-1].Text, "Rollout r1 completed")
	})
	var texts []string
	for _, m := range got {
		texts = append(texts, m.Text)
	}
	// header, progress at wave start, at wave end and at the end, summary: no per-host posts
	if len(got) != 5 || !strings.HasPrefix(texts[0], "Rollout r1: security upgrades") {
		t.Fatalf("webhook got %d messages:\n%s", len(got), strings.Join(texts, "\n"))
	}
	if len(h.slack.Calls()) != 0 {
		t.Fatal("webhook mode called the Web API")
	}
}
