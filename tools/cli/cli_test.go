package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
)

// run runs the command line against the test bus and returns its exit status and output.
func run(t *testing.T, bus *eventstest.Bus, env map[string]string, argv ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &App{Out: &out, Err: &errOut,
		Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Now: func() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) },
	}
	if bus != nil {
		app.Connect = func(*Options) (*nats.Conn, error) { return bus.Server.Connect(t.Name()) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := Main(ctx, app, argv)
	return code, out.String(), errOut.String()
}

// respond answers a query subject with v.
func respond(t *testing.T, bus *eventstest.Bus, subject string, v any) {
	sub, err := bus.Conn.Subscribe(subject, func(m *nats.Msg) {
		b, _ := json.Marshal(v)
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

func TestUsageErrors(t *testing.T) {
	for _, argv := range [][]string{
		{"frobnicate"}, {"hosts", "--bogus"}, {"host"}, {"rollout", "a", "b"}, {"hosts", "--tag", "novalue"},
		{"-o", "yaml", "rollouts"}, {"request", "kernel", "--fleet", "f"}, {"request", "security"},
		{"request", "security", "--fleet", "f", "--reboot", "sometimes"}, {"advisories", "--since", "last week"},
		{"preview"}, {"--as", "", "pause", "r1"},
	} {
		code, _, stderr := run(t, nil, nil, argv...)
		if code != ExitUsage || !strings.HasPrefix(stderr, "patchfleet: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2", argv, code, stderr)
		}
	}
}

func TestQueriesRenderTablesAndJSON(t *testing.T) {
	bus := eventstest.Start(t)
	respond(t, bus, query.SubjectHosts, query.HostsResponse{Hosts: []query.Host{
		{ID: "h1", Name: "web-1", Fleet: "prod-web", Tags: map[string]string{"role": "web", "env": "prod"}, OS: events.OSRelease{ID: "debian", VersionID: "12"},
			Kernel: "6.1.0-18-amd64", PackageCount: 412, RebootRequired: true, LastScan: time.Date(2025, 6, 1, 11, 0, 0, 0, time.UTC)}}})
	code, out, stderr := run(t, bus, nil, "hosts", "--fleet", "prod-web", "--tag", "role=web")
	if code != ExitOK {
		t.Fatalf("hosts: exit %d: %s", code, stderr)
	}
	want := "NAME   FLEET     OS         KERNEL          PACKAGES  REBOOT  SCANNED     TAGS\n" +
		"web-1  prod-web  debian 12  6.1.0-18-amd64  412       yes     1h0m0s ago  env=prod,role=web\n"
	if out != want {
		t.Fatalf("hosts table:\n%s\nwant:\n%s", out, want)
	}
	code, out, _ = run(t, bus, nil, "hosts", "-o", "json")
	var hosts []query.Host
	if code != ExitOK || json.Unmarshal([]byte(out), &hosts) != nil || len(hosts) != 1 || hosts[0].Name != "web-1" {
		t.Fatalf("hosts -o json: exit %d:\n%s", code, out)
	}
	// A query nobody answers is an error, not a usage problem.
	code, _, stderr = run(t, bus, nil, "--timeout", "200ms", "rollouts")
	if code != ExitError || !strings.Contains(stderr, "list rollouts") {
		t.Fatalf("unanswered query: exit %d: %s", code, stderr)
	}
}

func TestApprovePublishesThePlanHash(t *testing.T) {
	bus := eventstest.Start(t)
	respond(t, bus, query.SubjectPlannerRollout, query.RolloutDetail{RolloutSummary: query.RolloutSummary{ID: "r1", State: query.RolloutAwaitingApproval, PlanHash: "sha256:current"}})
	code, out, stderr := run(t, bus, map[string]string{"PATCHFLEET_USER": "alice"}, "approve", "r1")
	if code != ExitOK || !strings.Contains(out, "approve rollout r1 as alice (plan sha256:current)") {
		t.Fatalf("approve: exit %d: %s %s", code, out, stderr)
	}
	code, _, stderr = run(t, bus, nil, "--as", "bob", "approve", "r1", "--plan-hash", "sha256:shown", "--reason", "ok")
	if code != ExitOK {
		t.Fatalf("approve --plan-hash: %s", stderr)
	}
	var got []events.RolloutApproved
	for _, env := range bus.Envelopes(t, events.StreamRollouts) {
		var a events.RolloutApproved
		if err := events.DecodeData(env, &a); err != nil {
			t.Fatal(err)
		}
		if env.CorrelationID != "r1" {
			t.Fatalf("correlation id %q", env.CorrelationID)
		}
		got = append(got, a)
	}
	if len(got) != 2 || got[0].By != "alice" || got[0].PlanHash != "sha256:current" || got[1].By != "bob" || got[1].PlanHash != "sha256:shown" || got[1].Reason != "ok" {
		t.Fatalf("approvals: %+v", got)
	}
}

func TestRequestPublishesRolloutRequested(t *testing.T) {
	bus := eventstest.Start(t)
	code, out, stderr := run(t, bus, nil, "--as", "ops", "-o", "json", "request", "security", "--fleet", "prod-web", "--reboot", "if-required", "--unattended")
	if code != ExitOK {
		t.Fatalf("request: %s", stderr)
	}
	var shown events.RolloutRequested
	_ = json.Unmarshal([]byte(out), &shown)
	envs := bus.Envelopes(t, events.StreamRollouts)
	if len(envs) != 1 {
		t.Fatalf("%d events", len(envs))
	}
	var e events.RolloutRequested
	if err := events.DecodeData(envs[0], &e); err != nil {
		t.Fatal(err)
	}
	if e.Kind != "security" || e.Selector.Fleet != "prod-web" || e.Reboot != "if-required" || !e.ConfigureUnattended || e.RequestedBy != "ops" || e.RequestID != shown.RequestID {
		t.Fatalf("request: %+v", e)
	}
}

func TestRolloutWatch(t *testing.T) {
	bus := eventstest.Start(t)
	respond(t, bus, query.SubjectPlannerRollout, query.RolloutDetail{RolloutSummary: query.RolloutSummary{ID: "r1", State: query.RolloutRunning, CreatedAt: time.Now()}})
	// Some events happened before the watch starts, the rest after.
	bus.Publish(t, events.RolloutPlanned{RolloutID: "r1", PlanHash: "h", Kind: events.KindSecurity, Fleet: "prod-web", Strategy: events.StrategyInPlace,
		Reboot: events.RebootNever, HostCount: 3, Waves: []events.Wave{{Index: 0, Hosts: []string{"a"}}, {Index: 1, Hosts: []string{"b", "c"}}}}, "r1")
	bus.Publish(t, events.WaveStarted{RolloutID: "r1", Wave: 0, Hosts: []string{"a"}}, "r1")
	bus.Publish(t, events.UpgradeCompleted{JobID: "x", RolloutID: "other", HostID: "z"}, "other")
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, stderr := run(t, bus, nil, "rollout", "r1", "--watch")
		done <- result{code, out, stderr}
	}()
	bus.Publish(t, events.UpgradeCompleted{JobID: "j1", RolloutID: "r1", HostID: "a"}, "r1")
	bus.Publish(t, events.WaveCompleted{RolloutID: "r1", Wave: 0, Succeeded: 1}, "r1")
	bus.Publish(t, events.WaveStarted{RolloutID: "r1", Wave: 1, Hosts: []string{"b", "c"}}, "r1")
	bus.Publish(t, events.UpgradeCompleted{JobID: "j2", RolloutID: "r1", HostID: "b"}, "r1")
	bus.Publish(t, events.UpgradeCompleted{JobID: "j3", RolloutID: "r1", HostID: "c"}, "r1")
	bus.Publish(t, events.WaveCompleted{RolloutID: "r1", Wave: 1, Succeeded: 2}, "r1")
	bus.Publish(t, events.RolloutCompleted{RolloutID: "r1", Outcome: "completed", Succeeded: 3, Results: []events.HostResult{
		{HostID: "a", Status: "succeeded"}, {HostID: "b", Status: "succeeded"}, {HostID: "c", Status: "succeeded"}}}, "r1")
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not end with RolloutCompleted")
	}
	if r.code != ExitOK {
		t.Fatalf("watch: exit %d: %s", r.code, r.err)
	}
	// The two streams interleave freely, so only the wave boundaries are certain, and
	// that nothing is shown before the plan is known.
	if strings.Contains(r.out, "/0 hosts") || !strings.HasPrefix(r.out, "rollout r1 · prod-web · security — ") {
		t.Fatalf("watch output shows progress before the plan:\n%s", r.out)
	}
	for _, want := range []string{
		"wave 0 (canary)  [██████████] 1/1 ✓\n",
		"rollout r1 · prod-web · security — completed\n[████████████████████] 100% 3/3 hosts",
	} {
		if !strings.Contains(r.out, want) {
			t.Fatalf("watch output lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out, "4/3") {
		t.Fatalf("another rollout's host was counted:\n%s", r.out)
	}
}
