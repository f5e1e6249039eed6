//go:build e2e

package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/tools/console/auth"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
	"github.com/patchfleet/patchfleet/tools/systemtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// approvalPolicy makes every rollout of the simulated fleet wait for alice's approval, then
// patches the canary and the other hosts one at a time (max_unavailable, passed to the script),
// so the page sees them turn green in turn.
const approvalPolicy = `fleets:
  - name: sim
    security_updates: approve
    approvers: [alice]
    min_severity: low
    approval_delay: 0h
    reboot: if-required
    canary: 1
    waves: ["100%"]
    max_unavailable: 1
    max_failures: 0
`

// TestE2EConsoleLiveRollout drives the console in headless chromium against the whole system:
// the four services and fleetsim hosts over real SSH. An advisory exposes every host; the
// rollout waits for approval. In the browser, refusals without a session, without the CSRF
// token and for a non-approver; the approver opens the rollout from the overview, approves it
// in a second tab (RolloutApproved on the bus names the plan hash), and the first tab, never
// reloaded, shows the canary and then every host turn green as the executor patches them,
// the canary's live output, and the rollout completed; then the host's history and stored job
// log. Screenshots in e2e/screenshots/live-*.png.
func TestE2EConsoleLiveRollout(t *testing.T) {
	dir, _ := filepath.Abs("e2e")
	ensureBrowser(t, dir)
	const hosts = 4
	fixed := fixedVersion(t, "libssl3")

	var executorURL string
	s := systemtest.Start(t, systemtest.Options{Hosts: hosts, Policy: approvalPolicy,
		// apt takes a while on every host, so the page is open long before the rollout ends
		Sim:      fleetsim.Options{AptLatency: time.Second},
		Executor: func(c *executor.Config) { executorURL = "http://" + c.HTTPAddr }})
	web := runConsole(t, s, executorURL)
	s.WaitScanned(t, 2*time.Minute)

	s.PublishAdvisory(t, "advisory.json", fleetsim.AdvisoryOSV)
	var ask events.RolloutApprovalRequested
	s.WaitFor(t, 2*time.Minute, "the rollout to ask for approval", func() bool {
		var ok bool
		ask, ok = systemtest.Last[events.RolloutApprovalRequested](t, s)
		return ok
	})
	if len(ask.Approvers) != 1 || ask.Approvers[0] != "alice" || ask.Fleet != systemtest.Fleet {
		t.Fatalf("approval requested %+v, want alice for fleet %s", ask, systemtest.Fleet)
	}

	unpatched := func() {
		for i, h := range s.Sim.Hosts() {
			if v := h.PackageVersion("libssl3"); v == fixed {
				t.Errorf("%s has libssl3 %s before the approval", systemtest.HostID(i), v)
			}
		}
	}
	unpatched()
	runScript(t, dir, "live.mjs", 6*time.Minute, []string{"CONSOLE_URL=" + web, "ROLLOUT_ID=" + ask.RolloutID,
		"PLAN_HASH=" + ask.PlanHash, "HOSTS=" + strconv.Itoa(hosts), "MAX_UNAVAILABLE=1", "APPROVER=alice=" + aliceToken, "OTHER=bob=" + bobToken,
		"FIXED_VERSION=" + fixed, "SCREENSHOTS=" + filepath.Join(dir, "screenshots")}, func(step string) {
		switch step {
		case "awaiting": // the refusals published nothing, and nothing ran
			if n := systemtest.Count[events.RolloutApproved](t, s); n != 0 {
				t.Errorf("%d approvals on the bus before the approver approved", n)
			}
			if d, err := s.Query.Rollout(t.Context(), query.RolloutRequest{ID: ask.RolloutID}); err != nil || d.State != query.RolloutAwaitingApproval {
				t.Errorf("rollout %s: state %q (%v), want %s", ask.RolloutID, d.State, err, query.RolloutAwaitingApproval)
			}
			unpatched()
		case "approved":
			if n := systemtest.Count[events.RolloutApproved](t, s); n != 1 {
				t.Errorf("%d approvals on the bus, want 1", n)
			}
			env, e := lastEvent[events.RolloutApproved](t, s)
			if e.RolloutID != ask.RolloutID || e.By != "alice" || e.PlanHash != ask.PlanHash || env.Producer != Producer ||
				env.CorrelationID != ask.RolloutID {
				t.Errorf("RolloutApproved %+v from %s (correlation %s), want alice approving plan %s of %s from the console",
					e, env.Producer, env.CorrelationID, ask.PlanHash, ask.RolloutID)
			}
		case "completed":
			done, ok := systemtest.Last[events.RolloutCompleted](t, s)
			if !ok || done.RolloutID != ask.RolloutID || done.Outcome != "completed" || done.Succeeded != hosts || done.Failed != 0 {
				t.Errorf("rollout ended %+v (%v), want %d hosts patched", done, ok, hosts)
			}
			for i, h := range s.Sim.Hosts() {
				if v := h.PackageVersion("libssl3"); v != fixed {
					t.Errorf("%s: libssl3 %s after the rollout, want %s", systemtest.HostID(i), v, fixed)
				}
			}
		default:
			t.Errorf("unknown step %q", step)
		}
	})
}

// runConsole runs the console as deployed (console.Run, its own NATS connection) on the
// system's bus until the test ends, and returns its URL once it is ready.
func runConsole(t *testing.T, s *systemtest.System, executorURL string) string {
	t.Helper()
	tokens, err := auth.ParseTokens("alice=" + aliceToken + "\nbob=" + bobToken)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cfg := Config{Bus: events.BusConfig{URL: s.NATSURL, Replicas: 1}, HTTPAddr: addr, Tokens: tokens, ExecutorURL: executorURL}
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- Run(ctx, cfg, logger) }()
	t.Cleanup(func() { // before the system stops (cleanups run last-registered first)
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("console: %v", err)
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case err := <-stopped:
			t.Fatalf("console stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("console at %s not ready within a minute: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fixedVersion is the version the simulated repository's security update brings pkg to.
func fixedVersion(t *testing.T, pkg string) string {
	t.Helper()
	for _, u := range fleetsim.DefaultUpdates() {
		if u.Name == pkg && u.Security {
			return u.Version
		}
	}
	t.Fatalf("fleetsim has no security update of %s", pkg)
	return ""
}

// lastEvent is the latest event of type E with its envelope.
func lastEvent[E events.Event](t *testing.T, s *systemtest.System) (events.Envelope, E) {
	t.Helper()
	var e E
	spec := events.SpecOf[E]()
	st, err := s.JS.Stream(t.Context(), spec.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), spec.Subject)
	if err != nil {
		t.Fatalf("last %s: %v", spec.Subject, err)
	}
	env, err := events.DecodeEnvelope(m.Data)
	if err == nil {
		err = json.Unmarshal(env.Data, &e)
	}
	if err != nil {
		t.Fatalf("decode %s: %v", spec.Subject, err)
	}
	return env, e
}
