//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/tools/natsauth/natstest"
)

// Events published and consumed across a 3-node cluster (streams replicated three times)
// while the node leading the stream is killed and later restarted: every event is stored
// exactly once and handled, whatever the failover.
func TestClusterKeepsEveryEventThroughANodeFailure(t *testing.T) {
	const total = 600
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := natstest.Setup(t)
	cluster := natstest.StartCluster(t, env, natstest.BuildServer(t))
	logger := slog.New(slog.DiscardHandler)

	// The executor publishes (as its outbox relay would: retry the same id until acknowledged);
	// the planner consumes with the runner. Both with their own users and rights.
	pnc, pjs, err := events.Connect(ctx, env.Bus(cluster.URL(), "planner", 3), "patchfleet-planner", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer pnc.Close()
	enc, ejs, err := events.Connect(ctx, env.Bus(cluster.URL(), "executor", 3), "patchfleet-executor", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()

	var mu sync.Mutex
	seen := map[string]int{}
	all := make(chan struct{})
	c := events.NewConsumer(pjs, events.ConsumerConfig{Name: "planner", Concurrency: 4, AckWait: 5 * time.Second,
		Backoff: events.ExponentialBackoff(100*time.Millisecond, time.Second)})
	events.On(c, func(_ context.Context, m events.Meta, _ events.UpgradeStarted) error {
		mu.Lock()
		defer mu.Unlock()
		seen[m.ID]++
		if len(seen) == total && seen[m.ID] == 1 {
			close(all)
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()

	stream, err := pjs.Stream(ctx, events.StreamUpgrades)
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("UPGRADES has %d replicas, want 3", r)
	}
	leader := stream.CachedInfo().Cluster.Leader
	victim := cluster.Index(leader)
	if victim < 0 {
		t.Fatalf("stream leader %q is not a node of the cluster", leader)
	}

	retries := 0
	for i := range total {
		switch i {
		case total / 3:
			t.Logf("killing %s, the UPGRADES leader", leader)
			cluster.Kill(victim)
		case 2 * total / 3:
			t.Logf("restarting %s", leader)
			if err := cluster.Restart(victim); err != nil {
				t.Fatal(err)
			}
		}
		msg, err := events.NewDerived(events.UpgradeStarted{JobID: fmt.Sprintf("job-%d", i), HostID: "host-1",
			Executor: "executor-1", Attempt: 1}, events.Origin{Producer: "executor", CorrelationID: "rollout-1"},
			time.Now(), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		for {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			err := events.Publish(pctx, ejs, msg)
			pcancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			retries++
		}
	}

	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("handled %d of %d events", len(seen), total)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != total {
		t.Errorf("UPGRADES holds %d events, want %d (a retried publish was stored twice, or one was lost)", info.State.Msgs, total)
	}
	redelivered := 0
	for _, n := range seen {
		redelivered += n - 1
	}
	t.Logf("%d events stored once each; %d publish retries, %d redeliveries (the inbox makes them harmless); new leader %s",
		total, retries, redelivered, info.Cluster.Leader)
}
