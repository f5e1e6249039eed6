package chatops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops"
	"github.com/patchfleet/patchfleet/tools/chatops/command"
	"github.com/patchfleet/patchfleet/tools/chatops/signature"
	"github.com/patchfleet/patchfleet/tools/chatops/slack/slacktest"
	"github.com/patchfleet/patchfleet/tools/cli"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
	"github.com/patchfleet/patchfleet/tools/freeport"
	"github.com/patchfleet/patchfleet/tools/systemtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// approvalPolicy makes fleet sim's security rollouts wait for alice.
const approvalPolicy = `fleets:
  - name: sim
    security_updates: approve
    approvers: [alice]
    min_severity: low
    approval_delay: 0h
    reboot: if-required
    canary: 1
    waves: ["100%"]
    max_unavailable: 200
    max_failures: 0
`

const (
	systemSecret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	botConsumer  = "chatops-system"
)

// TestApprovalInSlackOnFleetsim is issue #8's end to end: the real services on fleetsim
// hosts, the real bot on the same bus and the Slack stand-in. An advisory asks for approval
// in Slack; unsigned, stale and forged requests, a non-approver's signed click and a
// non-approver's approval from the CLI are refused while the rollout waits; the approver's
// signed click starts it; the hosts are upgraded over SSH; the progress
// message is updated in place and the summary posted; the CLI's rollout --watch follows the
// same rollout live.
func TestApprovalInSlackOnFleetsim(t *testing.T) {
	const n = 6
	s := systemtest.Start(t, systemtest.Options{Hosts: n, Policy: approvalPolicy})
	chat := slacktest.Start(t)
	botURL := startBot(t, s, chat)
	s.WaitScanned(t, 2*time.Minute)

	messages := func(what string, cond func([]slacktest.Message) bool) []slacktest.Message {
		t.Helper()
		var msgs []slacktest.Message
		s.WaitFor(t, time.Minute, what, func() bool {
			msgs = chat.Messages()
			return cond(msgs)
		})
		return msgs
	}

	// The advisory exposes every host; the planner asks alice to approve.
	s.PublishAdvisory(t, "advisory.json", fleetsim.AdvisoryOSV)
	var asked events.RolloutApprovalRequested
	s.WaitFor(t, time.Minute, "the approval request", func() bool {
		var ok bool
		asked, ok = systemtest.Last[events.RolloutApprovalRequested](t, s)
		return ok
	})
	id := asked.RolloutID
	if asked.Fleet != systemtest.Fleet || !slices.Equal(asked.Approvers, []string{"alice"}) || asked.PlanHash == "" {
		t.Fatalf("approval requested: %+v", asked)
	}

	msgs := messages("the advisory and the approval request in Slack", func(m []slacktest.Message) bool {
		return find(m, fleetsim.AdvisoryID+" ") != nil && find(m, "Approval needed: rollout "+id) != nil
	})
	if adv := find(msgs, fleetsim.AdvisoryID+" "); !strings.Contains(adv.Text, fmt.Sprintf("exposes %d hosts", n)) {
		t.Errorf("advisory message: %q", adv.Text)
	}
	root := find(msgs, "Rollout "+id+": security upgrades for sim")
	approval := *find(msgs, "Approval needed: rollout "+id)
	if root == nil || approval.ThreadTS != root.TS || !approval.ReplyBroadcast {
		t.Fatalf("thread root %+v, approval request %+v", root, approval)
	}
	if len(approval.Blocks) != 3 || len(approval.Blocks[2].Elements) != 2 || approval.Blocks[2].Elements[0].ActionID != command.ActionApprove {
		t.Fatalf("approval request without its buttons: %+v", approval.Blocks)
	}
	value := approval.Blocks[2].Elements[0].Value
	if v, err := command.DecodeAction(value); err != nil || v.Rollout != id || v.PlanHash != asked.PlanHash {
		t.Fatalf("approve button %q: %+v, %v", value, v, err)
	}

	// The CLI watches the rollout from before the approval to its end.
	watch := startWatch(t, s, id)
	s.WaitFor(t, 30*time.Second, "the watch to show the rollout awaiting approval", func() bool {
		return strings.Contains(watch.out.String(), "rollout "+id+" · sim · security — awaiting_approval\n")
	})

	stillWaiting := func(after string, approvals int) {
		t.Helper()
		if c := systemtest.Count[events.RolloutApproved](t, s); c != approvals {
			t.Fatalf("after %s: %d approvals on the bus", after, c)
		}
		d, err := s.Query.Rollout(t.Context(), query.RolloutRequest{ID: id})
		if err != nil || d.State != query.RolloutAwaitingApproval {
			t.Fatalf("after %s: rollout %s is %q (%v), want awaiting approval", after, id, d.State, err)
		}
	}

	// Unsigned, stale and forged requests are refused before the bot reads them.
	now := time.Now()
	alice := buttonForm("UALICE", value, chat.ResponseURL())
	for _, c := range []struct {
		name   string
		secret string
		at     time.Time
	}{{"unsigned", "", now}, {"stale", systemSecret, now.Add(-6 * time.Minute)}, {"forged", "not-the-secret", now}} {
		if code := post(t, botURL+"/slack/actions", alice, c.secret, c.at); code != http.StatusUnauthorized {
			t.Fatalf("%s click: %d, want 401", c.name, code)
		}
	}
	stillWaiting("refused requests", 0)
	if rs := chat.Responses(); len(rs) != 0 {
		t.Fatalf("refused requests were answered: %v", rs)
	}

	// mallory is a known Slack user but not an approver: signed, answered, refused.
	if code := post(t, botURL+"/slack/actions", buttonForm("UMALLORY", value, chat.ResponseURL()), systemSecret, time.Now()); code != http.StatusOK {
		t.Fatalf("mallory's click: %d", code)
	}
	s.WaitFor(t, 10*time.Second, "mallory to be told", func() bool { return len(chat.Responses()) > 0 })
	if rs := chat.Responses(); len(rs) != 1 || !strings.Contains(fmt.Sprint(rs[0]["text"]), "mallory is not an approver of fleet sim") {
		t.Fatalf("answers to mallory: %v", rs)
	}
	stillWaiting("mallory's click", 0)

	// Nothing stops mallory publishing an approval from the CLI, but the planner refuses it
	// (dead-lettered with the reason); the bot reports the refusal and the request keeps its
	// buttons.
	if out, code, stderr := runCLI(t, s, "--as", "mallory", "approve", id); code != cli.ExitOK {
		t.Fatalf("patchfleet approve as mallory: exit %d: %s%s", code, out, stderr)
	}
	s.WaitFor(t, 30*time.Second, "the planner to refuse mallory's approval", func() bool {
		dl, ok := lastDeadLetter(t, s, "planner")
		return ok && dl.EventType == "RolloutApproved" && strings.Contains(dl.Reason, "mallory is not an approver of fleet sim")
	})
	msgs = messages("the refusal in the thread", func(m []slacktest.Message) bool {
		if a := find(m, "Rollout "+id+" approved by mallory"); a != nil {
			t.Fatalf("the bot announced an approval the planner refused: %q", a.Text)
		}
		return find(m, "Approval of rollout "+id+" by mallory refused: mallory is not an approver of fleet sim") != nil
	})
	if ap := findTS(msgs, approval.TS); !strings.HasPrefix(ap.Text, "Approval needed") || len(ap.Blocks) != 3 {
		t.Fatalf("approval request after mallory's approval: %q, %d blocks", ap.Text, len(ap.Blocks))
	}
	if m := find(msgs, "Rollout "+id+" approved"); m != nil {
		t.Fatalf("announced: %q", m.Text)
	}
	stillWaiting("mallory's approval from the CLI", 1)

	// alice's signed click approves the plan the request showed.
	if code := post(t, botURL+"/slack/actions", alice, systemSecret, time.Now()); code != http.StatusOK {
		t.Fatalf("alice's click: %d", code)
	}
	var approved events.RolloutApproved
	s.WaitFor(t, 10*time.Second, "the approval on the bus", func() bool {
		var ok bool
		approved, ok = systemtest.Last[events.RolloutApproved](t, s)
		return ok
	})
	if approved.RolloutID != id || approved.By != "alice" || approved.PlanHash != asked.PlanHash || !strings.Contains(approved.Reason, "UALICE") {
		t.Fatalf("approval: %+v, want rollout %s by alice for plan %s", approved, id, asked.PlanHash)
	}
	if c := systemtest.Count[events.RolloutApproved](t, s); c != 2 {
		t.Fatalf("%d approvals on the bus, want mallory's and alice's", c)
	}

	// The rollout runs on the simulated hosts.
	var done events.RolloutCompleted
	s.WaitFor(t, 2*time.Minute, "the rollout to complete", func() bool {
		var ok bool
		done, ok = systemtest.Last[events.RolloutCompleted](t, s)
		return ok && done.RolloutID == id
	})
	if done.Outcome != "completed" || done.Succeeded != n || done.Failed != 0 || done.Skipped != 0 {
		t.Fatalf("rollout ended %+v", done)
	}
	for i, h := range s.Sim.Hosts() {
		if v := h.PackageVersion("libssl3"); v != "3.0.19-1~deb12u3" {
			t.Errorf("%s: libssl3 %s after the rollout", systemtest.HostID(i), v)
		}
	}
	if d, err := s.Query.Rollout(t.Context(), query.RolloutRequest{ID: id}); err != nil || d.ApprovedBy != "alice" {
		t.Errorf("rollout %s approved by %q (%v), want alice", id, d.ApprovedBy, err)
	}

	// Slack: the approval request lost its buttons to the decision, one progress message
	// was updated in place to the end, and the summary is in the thread.
	summaryText := fmt.Sprintf("Rollout %s completed: %d succeeded, 0 failed, 0 skipped", id, n)
	progressHead := "rollout " + id + " · sim · security"
	msgs = messages("the completion summary", func(m []slacktest.Message) bool {
		p := find(m, progressHead)
		return find(m, summaryText) != nil && p != nil && strings.HasPrefix(p.Text, progressHead+" — completed")
	})
	if ap := find(msgs, "Approval needed: rollout "+id); ap != nil {
		t.Errorf("approval request still asks: %+v", ap)
	}
	if ap := findTS(msgs, approval.TS); !strings.HasPrefix(ap.Text, "Rollout "+id+" approved by alice") || len(ap.Blocks) != 1 {
		t.Errorf("approval request after the click: %q, %d blocks", ap.Text, len(ap.Blocks))
	}
	if c := count(msgs, progressHead); c != 1 {
		t.Fatalf("%d progress messages, want one updated in place", c)
	}
	prog := find(msgs, progressHead)
	if body := blockText(*prog); !strings.Contains(body, fmt.Sprintf("[████████████████████] 100%% %d/%d hosts", n, n)) ||
		!strings.Contains(body, "wave 0 (canary)  [██████████] 1/1 ✓") || !strings.Contains(body, fmt.Sprintf("wave 1           [██████████] %d/%d ✓", n-1, n-1)) {
		t.Errorf("progress message at the end:\n%s", body)
	}
	var posts, updates int
	for _, c := range chat.Calls() {
		text, _ := c.Body["text"].(string)
		switch {
		case c.Method == "chat.postMessage" && strings.HasPrefix(text, progressHead):
			posts++
		case c.Method == "chat.update" && c.Body["ts"] == prog.TS && c.Status == http.StatusOK:
			updates++
		}
	}
	// Posted once; then at least the other wave boundaries and the completion updated it.
	if posts != 1 || updates < 5 || prog.Updates != updates {
		t.Errorf("progress message %s: posted %d times, %d chat.update calls, %d updates applied", prog.TS, posts, updates, prog.Updates)
	}
	summary := find(msgs, summaryText)
	if !summary.ReplyBroadcast || len(summary.Blocks) != 2 {
		t.Fatalf("summary: %+v", summary)
	}
	for i := range n {
		if line := ":white_check_mark: " + systemtest.HostID(i); !strings.Contains(summary.Blocks[1].Text.Text, line) {
			t.Errorf("summary lacks %q:\n%s", line, summary.Blocks[1].Text.Text)
		}
	}
	for _, m := range msgs {
		if m.TS != root.TS && m.ThreadTS != root.TS && !strings.HasPrefix(m.Text, fleetsim.AdvisoryID+" ") {
			t.Errorf("message outside the rollout's thread: %q", m.Text)
		}
	}

	// The CLI saw the same rollout go from awaiting approval through running to completed.
	out, code, stderr := watch.wait(t, 30*time.Second)
	if code != cli.ExitOK {
		t.Fatalf("rollout --watch: exit %d: %s\n%s", code, stderr, out)
	}
	last := -1
	for _, frame := range []string{
		progressHead + " — awaiting_approval\n",
		progressHead + " — running\n",
		progressHead + " — completed\n" + fmt.Sprintf("[████████████████████] 100%% %d/%d hosts\n", n, n) +
			"wave 0 (canary)  [██████████] 1/1 ✓\n" + fmt.Sprintf("wave 1           [██████████] %d/%d ✓", n-1, n-1),
	} {
		i := strings.Index(out, frame)
		if i <= last {
			t.Fatalf("watch output lacks %q after the previous frame:\n%s", frame, out)
		}
		last = i
	}
}

// startBot runs the bot as its command does, against the system's NATS and the Slack
// stand-in, and returns its HTTP base URL once it listens and consumes.
func startBot(t *testing.T, s *systemtest.System, chat *slacktest.Server) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freeport.For(t))
	cfg := chatops.Config{
		Bus: events.BusConfig{URL: s.NATSURL, Replicas: 1}, HTTPAddr: addr,
		SlackAPIURL: chat.APIURL(), SlackToken: slacktest.Token, Channel: "C1", SigningSecret: systemSecret,
		Users:    map[string]string{"UALICE": "alice", "UMALLORY": "mallory"},
		Consumer: botConsumer, QueryTimeout: 10 * time.Second,
	}
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var runErr error
	go func() { defer close(stopped); runErr = chatops.Run(ctx, cfg, logger.With("svc", "chatops")) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
		if runErr != nil {
			t.Errorf("chatops: %v", runErr)
		}
	})

	base := "http://" + addr
	s.WaitFor(t, 30*time.Second, "the bot to listen and consume", func() bool {
		select {
		case <-stopped:
			t.Fatalf("chatops stopped: %v", runErr)
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		// The consumer starts at the end of each stream: it must exist before the advisory.
		for _, stream := range []string{events.StreamAdvisories, events.StreamHosts, events.StreamRollouts, events.StreamUpgrades} {
			if _, err := s.JS.Consumer(t.Context(), stream, botConsumer); err != nil {
				return false
			}
		}
		return true
	})
	return base
}

// post sends a form as Slack does, signed with secret ("" for unsigned) at the given time.
func post(t *testing.T, u string, form url.Values, secret string, at time.Time) int {
	t.Helper()
	body := form.Encode()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		ts := strconv.FormatInt(at.Unix(), 10)
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, signature.Sign([]byte(secret), ts, []byte(body)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// buttonForm is Slack's block_actions payload for a click on the approve button.
func buttonForm(user, value, responseURL string) url.Values {
	p, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]string{"id": user, "username": strings.ToLower(user)},
		"actions":      []map[string]string{{"action_id": command.ActionApprove, "value": value}},
		"response_url": responseURL,
	})
	return url.Values{"payload": {string(p)}}
}

// runCLI runs the command line against the system's NATS and returns its output, exit
// status and error output.
func runCLI(t *testing.T, s *systemtest.System, argv ...string) (string, int, string) {
	t.Helper()
	var out, errOut syncBuffer
	app := &cli.App{Out: &out, Err: &errOut, Env: func(string) (string, bool) { return "", false }}
	code := cli.Main(t.Context(), app, append([]string{"--nats-url", s.NATSURL}, argv...))
	return out.String(), code, errOut.String()
}

// lastDeadLetter is the latest event a consumer gave up on.
func lastDeadLetter(t *testing.T, s *systemtest.System, consumer string) (events.DeadLetter, bool) {
	t.Helper()
	var dl events.DeadLetter
	st, err := s.JS.Stream(t.Context(), events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), events.SubjectDLQ+"."+consumer)
	if err != nil {
		return dl, false
	}
	if err := json.Unmarshal(m.Data, &dl); err != nil {
		t.Fatal(err)
	}
	return dl, true
}

// watcher is `patchfleet rollout <id> --watch` running in the test process.
type watcher struct {
	out, err syncBuffer
	done     chan int
}

func startWatch(t *testing.T, s *systemtest.System, id string) *watcher {
	t.Helper()
	w := &watcher{done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	app := &cli.App{Out: &w.out, Err: &w.err, Env: func(string) (string, bool) { return "", false }}
	go func() { w.done <- cli.Main(ctx, app, []string{"--nats-url", s.NATSURL, "rollout", id, "--watch"}) }()
	return w
}

func (w *watcher) wait(t *testing.T, timeout time.Duration) (string, int, string) {
	t.Helper()
	select {
	case code := <-w.done:
		return w.out.String(), code, w.err.String()
	case <-time.After(timeout):
		t.Fatalf("rollout --watch did not end within %s after the rollout:\n%s", timeout, w.out.String())
		return "", 0, ""
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func find(msgs []slacktest.Message, prefix string) *slacktest.Message {
	for i := range msgs {
		if strings.HasPrefix(msgs[i].Text, prefix) {
			return &msgs[i]
		}
	}
	return nil
}

func findTS(msgs []slacktest.Message, ts string) slacktest.Message {
	for _, m := range msgs {
		if m.TS == ts {
			return m
		}
	}
	return slacktest.Message{}
}

func count(msgs []slacktest.Message, prefix string) int {
	c := 0
	for _, m := range msgs {
		if strings.HasPrefix(m.Text, prefix) {
			c++
		}
	}
	return c
}

func blockText(m slacktest.Message) string {
	if len(m.Blocks) == 0 || m.Blocks[0].Text == nil {
		return ""
	}
	return m.Blocks[0].Text.Text
}

// testLog sends the bot's log lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
