package allinone_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/tools/allinone"
	"github.com/patchfleet/patchfleet/tools/freeport"
)

// start runs the whole system and returns its addresses and a function that stops it.
func start(t *testing.T, cfg allinone.Config) (allinone.Addrs, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan allinone.Addrs, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- allinone.Run(ctx, cfg, logger, func(a allinone.Addrs) { addrs <- a }) }()
	var a allinone.Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		cancel()
		t.Fatalf("system stopped before it started: %v", err)
	case <-time.After(3 * time.Minute):
		cancel()
		t.Fatal("system did not start in 3 minutes")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("system did not stop within a minute")
		}
	}
	t.Cleanup(stop)
	return a, stop
}

func readyz(url string) (map[string]string, bool) {
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body, resp.StatusCode == http.StatusOK
}

func TestWholeSystemStartsAndKeepsStateAcrossRestarts(t *testing.T) {
	cfg := allinone.Config{DataDir: t.TempDir(), Host: "127.0.0.1", NATSPort: freeport.For(t), PGPort: freeport.For(t),
		InventoryPort: freeport.For(t), IngestPort: freeport.For(t), PlannerPort: freeport.For(t), ExecutorPort: freeport.For(t), ConsolePort: freeport.For(t)}
	a, stop := start(t, cfg)
	eventstest.WaitFor(t, 30*time.Second, "console ready", func() bool { _, ok := readyz(a.Console); return ok })
	if resp, err := http.Get(a.Console + "/login"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("console sign-in page: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	if a.ConsoleTokens == "" {
		t.Error("no console token file was generated")
	}
	for name, url := range map[string]string{"inventory": a.Inventory, "advisory-ingest": a.Ingest, "planner": a.Planner, "executor": a.Executor} {
		eventstest.WaitFor(t, 30*time.Second, name+" ready", func() bool {
			body, ok := readyz(url)
			return ok && body["nats"] == "ok" && body["postgres"] == "ok"
		})
		resp, err := http.Get(url + "/metrics")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /metrics: %v %v", name, err, resp)
		}
		resp.Body.Close()
	}

	// An external publisher reaches the bus on the printed address.
	nc, err := nats.Connect(a.NATS)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	msg, err := events.New(events.HostDecommissioned{HostID: "h-restart"}, events.Origin{Producer: "test", CorrelationID: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Publish(context.Background(), js, msg); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	stop()

	// After a restart on the same data directory the event is still there.
	a, _ = start(t, cfg)
	eventstest.WaitFor(t, 30*time.Second, "planner ready after restart", func() bool { _, ok := readyz(a.Planner); return ok })
	nc, err = nats.Connect(a.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	s, err := js.Stream(context.Background(), events.StreamHosts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(context.Background(), msg.Subject)
	if err != nil {
		t.Fatalf("event published before the restart is gone: %v", err)
	}
	if raw.Header.Get(jetstream.MsgIDHeader) != msg.ID {
		t.Fatalf("last %s has id %q, want %q", msg.Subject, raw.Header.Get(jetstream.MsgIDHeader), msg.ID)
	}
}

func TestConfigValidationNamesTheVariable(t *testing.T) {
	cfg := allinone.Default()
	cfg.Host = "localhost:80"
	cfg.PGPort = 70000
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad config validated")
	}
	for _, want := range []string{"PATCHFLEET_HOST", "PATCHFLEET_PG_PORT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
