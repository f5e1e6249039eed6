//go:build e2e && chaos

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/tools/chaos"
	"github.com/patchfleet/patchfleet/tools/natsauth/natstest"
)

// TestChaosCluster: the four services, with three executor instances, as separate processes
// on a 3-node JetStream cluster (streams replicated three times, each service with its own
// NATS user over TLS) patch 60 simulated hosts. Mid-rollout the node leading the JOBS stream
// and one executor are killed with SIGKILL and stay down; the rollout completes with every
// host patched exactly once and no job lost or run twice.
func TestChaosCluster(t *testing.T) {
	const hosts = 60
	seed := time.Now().UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir := t.TempDir()
	env := natstest.Setup(t)
	cluster := natstest.StartCluster(t, env, natstest.BuildServer(t))
	bins, err := chaos.BuildServices(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	sys, err := chaos.Start(ctx, chaos.Options{Dir: dir, Bins: bins, Hosts: hosts, Seed: seed, Executors: 3,
		AptLatency: 2 * time.Second,
		Bus: chaos.Bus{URL: cluster.URL(), Replicas: 3, Observer: env.Bus(cluster.URL(), "admin", 3),
			Env: func(service string) []string {
				return []string{"PATCHFLEET_NATS_NKEY=" + env.Seed(service), "PATCHFLEET_NATS_CA=" + env.TLS.CA,
					"PATCHFLEET_NATS_INBOX=" + events.UserInbox(service)}
			}},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sys.Close()
		if t.Failed() {
			keepLogs(t, dir)
		}
	})
	jobs, err := sys.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if r := jobs.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("JOBS has %d replicas, want 3", r)
	}
	if err := sys.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sys.WaitScanned(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := sys.Publish(ctx, chaos.Advisory(time.Now()), "chaos-feed"); err != nil {
		t.Fatal(err)
	}

	// Mid-rollout: once a few hosts are done, kill the JOBS leader and an executor.
	upgrades, err := sys.JS.Stream(ctx, events.StreamUpgrades)
	if err != nil {
		t.Fatal(err)
	}
	completed := events.SpecOf[events.UpgradeCompleted]().Subject
	eventstest.WaitFor(t, 5*time.Minute, "the first upgrades", func() bool {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a lost request must not hang the wait
		defer cancel()
		info, err := upgrades.Info(rctx, jetstream.WithSubjectFilter(completed))
		return err == nil && info.State.Subjects[completed] >= 5
	})
	info, err := jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := cluster.Index(info.Cluster.Leader)
	if leader < 0 {
		t.Fatalf("JOBS leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	t.Logf("kill -9 %s (JOBS leader) and executor-2", info.Cluster.Leader)
	cluster.Kill(leader)
	if err := sys.Proc("executor-2").Kill(); err != nil {
		t.Fatal(err)
	}

	outcome, err := sys.RolloutOutcome(ctx, 8*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rollout %s", outcome)
	sys.Settle(ctx, time.Minute)
	r, err := sys.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Kills = 2 // a NATS node and an executor
	for _, p := range r.Problems {
		t.Log(p)
	}
	summary := fmt.Sprintf("chaos-cluster: nats_nodes=3 replicas=3 executors=3 killed=%s,executor-2 hosts=%d patched_once=%d duplicates=%d lost=%d rollout=%s succeeded=%d rebooted=%d",
		cluster.Name(leader), r.Hosts, r.PatchedOnce, r.Duplicates, r.Lost, r.Rollout, r.Succeeded, r.Rebooted)
	fmt.Println(summary)
	t.Log(summary)
	if !r.OK(hosts) {
		t.Fatalf("cluster chaos run failed: %s", summary)
	}
}

// keepLogs moves a failed run's directory (service logs, NATS logs) out of the test's
// temporary directory.
func keepLogs(t *testing.T, dir string) {
	keep, err := os.MkdirTemp("", "patchfleet-chaos-cluster-")
	if err == nil {
		err = os.Rename(dir, filepath.Join(keep, "run"))
	}
	if err == nil {
		_ = os.MkdirAll(dir, 0o755)
		t.Logf("logs kept in %s", keep)
	}
}
