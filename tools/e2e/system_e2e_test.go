//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/advisory-ingest"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/services/planner"
	"github.com/patchfleet/patchfleet/tools/feedpub"
	"github.com/patchfleet/patchfleet/tools/testfleet"
)

const systemPolicy = `fleets:
  - name: e2e
    security_updates: auto
    min_severity: low
    approval_delay: 0h
    reboot: if-required
    canary: 1
    waves: ["100%"]
    max_unavailable: 2
    max_failures: 0
`

// TestE2ESystem runs the four services against real hosts: a published advisory ends with
// every exposed host patched over SSH, rebooted because the fix asked for it, rescanned, and
// the rollout completed — with nothing but events between the services.
func TestE2ESystem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fleet := testfleet.New(t, 3)
	dir := t.TempDir()

	ns, err := embedded.Start(embedded.Config{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	dbURL := pgtest.EmptyDatabase(t)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(systemPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	// HTTP on ports of their own (the test asks over NATS): a port picked free may be taken
	// by the time a service listens.
	common := func() service.Common {
		return service.Common{Bus: events.BusConfig{URL: ns.ClientURL(), Replicas: 1}, DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0"}
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed atomic.Value // the first service that stopped with an error
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(sctx); err != nil {
				failed.CompareAndSwap(nil, fmt.Sprintf("%s: %v", name, err))
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	waitFor := func(timeout time.Duration, what string, cond func() bool) {
		t.Helper()
		eventstest.WaitFor(t, timeout, what, func() bool {
			if f := failed.Load(); f != nil {
				t.Fatalf("waiting for %s: %s", what, f)
			}
			return cond()
		})
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	key := fleet.ClientKeyPath()
	run("inventory", func(ctx context.Context) error {
		return inventory.Run(ctx, inventory.Config{Common: common(), Tokens: []string{"e2e:0123456789abcdef0123"},
			SSHKeyFiles: []string{key}, ScanPoll: 200 * time.Millisecond}, logger.With("svc", "inventory"))
	})
	run("planner", func(ctx context.Context) error {
		return planner.Run(ctx, planner.Config{Common: common(), PolicyFile: policy, Tick: 200 * time.Millisecond},
			logger.With("svc", "planner"))
	})
	run("executor", func(ctx context.Context) error {
		return executor.Run(ctx, executor.Config{Common: common(), SSHKeyFiles: []string{key},
			RebootTimeout: 2 * time.Minute}, logger.With("svc", "executor"))
	})
	run("advisory-ingest", func(ctx context.Context) error {
		return ingest.Run(ctx, ingest.Config{Common: common()}, logger.With("svc", "advisory-ingest"))
	})

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	q := query.Client{NC: nc}

	// A provisioning system registers the hosts with their pinned keys.
	bootIDs := map[string]string{}
	for _, h := range fleet.Hosts() {
		reg := events.HostRegistered{HostID: h.Name(), Name: h.Name(), Fleet: "e2e",
			SSH: events.SSHTarget{Address: "127.0.0.1", Port: h.Port(), User: "root",
				HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey())))}}
		publish(t, js, reg, "provisioning")
		bootIDs[h.Name()] = h.BootID()
	}
	waitFor(2*time.Minute, "every host scanned", func() bool {
		resp, err := q.Hosts(ctx, query.HostsRequest{Fleet: "e2e"})
		if err != nil || len(resp.Hosts) != 3 {
			return false
		}
		for _, h := range resp.Hosts {
			if h.LastScan.IsZero() {
				return false
			}
		}
		return true
	})

	// The feed publisher hands the advisory to advisory-ingest.
	advisory := filepath.Join(dir, "PFSA-2099-0001.json")
	if err := os.WriteFile(advisory, testfleet.AdvisoryOSV, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := feedpub.Run(ctx, feedpub.Config{Sources: []string{advisory}}, js, nil)
	if err != nil || res.Published != 1 {
		t.Fatalf("feedpub: %+v, %v", res, err)
	}

	var done events.RolloutCompleted
	waitFor(8*time.Minute, "the rollout to complete", func() bool {
		for _, env := range envelopes(t, js, events.StreamRollouts) {
			if env.Type == done.EventType() {
				if err := json.Unmarshal(env.Data, &done); err != nil {
					t.Fatal(err)
				}
				return true
			}
		}
		return false
	})
	if done.Outcome != "completed" || done.Succeeded != 3 || done.Failed != 0 {
		t.Fatalf("rollout ended %+v", done)
	}
	for _, r := range done.Results {
		if !r.Rebooted {
			t.Errorf("host %s not rebooted though pf-demo asked for it: %+v", r.HostID, r)
		}
	}
	for _, h := range fleet.Hosts() {
		out, err := h.MustRun(ctx, "dpkg-query -W -f='${Version}' pf-demo libpfdemo1 pf-libdemo-bin")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != "1.11.11.1" {
			t.Errorf("%s: versions %q, want pf-demo, libpfdemo1 and pf-libdemo-bin at 1.1", h.Name(), got)
		}
		if h.BootID() == bootIDs[h.Name()] {
			t.Errorf("%s: same boot id after the rollout", h.Name())
		}
	}
	// The inventory rescans after the upgrade and knows the hosts are patched: nothing is
	// exposed any more, and the upgrade was not mistaken for drift.
	waitFor(2*time.Minute, "no host exposed", func() bool {
		resp, err := q.Exposure(ctx, query.ExposureRequest{AdvisoryID: testfleet.AdvisoryID})
		return err == nil && len(resp.Hosts) == 0
	})
	for _, env := range envelopes(t, js, events.StreamHosts) {
		if env.Type == (events.HostDriftDetected{}).EventType() {
			t.Errorf("drift reported for a Patchfleet upgrade: %s", env.Data)
		}
	}
}

func publish(t *testing.T, js jetstream.JetStream, e events.Event, producer string) {
	t.Helper()
	m, err := events.New(e, events.Origin{Producer: producer, CorrelationID: producer}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Publish(context.Background(), js, m); err != nil {
		t.Fatal(err)
	}
}

func envelopes(t *testing.T, js jetstream.JetStream, stream string) []events.Envelope {
	t.Helper()
	return (&eventstest.Bus{JS: js}).Envelopes(t, stream)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
