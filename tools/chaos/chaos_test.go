//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/tools/natsauth/natstest"
)

var (
	seedFlag  = flag.Int64("chaos.seed", 0, "seed of the kill schedule (0: from the clock)")
	hostsFlag = flag.Int("chaos.hosts", 200, "simulated hosts")
	killsFlag = flag.Int("chaos.kills", 20, "services killed with SIGKILL during the rollout")
	victims   = flag.String("chaos.victims", "", "comma-separated processes killed in turn (default: every service)")
)

// TestChaos (make chaos): the four services as separate processes against one nats-server
// (file storage) and one PostgreSQL patch 200 simulated hosts while each service in turn is
// killed with SIGKILL and started again, NATS is restarted once and PostgreSQL crashes once.
// Every host ends patched exactly once, no job is done twice, no outcome is lost, and the
// rollout completes.
func TestChaos(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	fmt.Printf("chaos: seed=%d (rerun with -chaos.seed=%d)\n", seed, seed)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("patchfleet-chaos-%d", seed))
			if err := os.Rename(dir, keep); err == nil {
				if err := os.MkdirAll(dir, 0o755); err == nil {
					t.Logf("logs kept in %s", keep)
				}
			}
		}
	})
	logf := func(format string, args ...any) { fmt.Printf("chaos: "+format+"\n", args...) }

	logf("building the service binaries and nats-server")
	bins, err := BuildServices(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	natsProc, url, err := NATSServer(natstest.BuildServer(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = natsProc.Stop() })
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	if err := natsProc.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}

	hosts := *hostsFlag
	sys, err := Start(ctx, Options{Dir: dir, Bins: bins, Hosts: hosts, Seed: seed, AptLatency: 2 * time.Second,
		Bus:    Bus{URL: url, Replicas: 1, Observer: events.BusConfig{URL: url, Replicas: 1}},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	logf("services ready; registering %d hosts", hosts)
	if err := sys.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sys.WaitScanned(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	logf("every host scanned; publishing %s", AdvisoryID)
	if err := sys.Publish(ctx, Advisory(time.Now()), "chaos-feed"); err != nil {
		t.Fatal(err)
	}

	report := Report{}
	ended := false
	err = sys.Break(ctx, Plan{
		Seed: seed, Kills: *killsFlag, Victims: victimList(), NATSAt: *killsFlag / 3, PGAt: 2 * *killsFlag / 3,
		RestartNATS: func(ctx context.Context) error { return RestartProc(ctx, natsProc) },
		MinGap:      500 * time.Millisecond, MaxGap: 4 * time.Second,
		Running: func() bool {
			if !ended {
				o, _ := sys.RolloutOutcome(ctx, 0)
				ended = o != ""
			}
			return !ended
		},
		Logf: logf,
	}, &report)
	if err != nil {
		t.Fatal(err)
	}
	outcome, err := sys.RolloutOutcome(ctx, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	logf("rollout %s; waiting for the work queue to drain", outcome)
	sys.Settle(ctx, time.Minute)
	got, err := sys.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got.Kills, got.KillsDuringRollout, got.NATSRestarts, got.PGRestarts = report.Kills, report.KillsDuringRollout, report.NATSRestarts, report.PGRestarts
	for _, p := range got.Problems {
		logf("%s", p)
	}
	for _, e := range sys.Exits() {
		logf("unexpected exit: %s", e)
	}
	fmt.Println(got.Details(), "unexpected_exits="+fmt.Sprint(len(sys.Exits())))
	fmt.Println(got.Summary())
	if !got.OK(hosts) || got.Kills != *killsFlag {
		t.Fatalf("chaos run failed (seed %d): %s", seed, got.Summary())
	}
	if got.KillsDuringRollout < got.Kills/2 {
		t.Errorf("only %d of %d kills happened while the rollout ran", got.KillsDuringRollout, got.Kills)
	}
}

func victimList() []string {
	if *victims == "" {
		return nil
	}
	return strings.Split(*victims, ",")
}
