package bench_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/services/planner"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
	"github.com/patchfleet/patchfleet/tools/systemtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// rolloutProfile, when set, is a CPU profile of the timed span alone (the advisory to
// RolloutCompleted), without the registration and scan that -cpuprofile would include.
var rolloutProfile = flag.String("rollout.cpuprofile", "", "write a CPU profile of the timed rollout span to this file")

// BenchmarkRollout is the whole system on fleetsim hosts (issue #7): every host is registered
// and scanned first (not timed), then the time from the advisory reaching the feed to
// RolloutCompleted is measured, under systemtest.DefaultPolicy (one canary, then every host,
// max_unavailable 200). The rollout must complete with every host upgraded; it reports the
// seconds and hosts/s.
//
// Each iteration is a whole system of its own, so run it with -benchtime 1x:
//
//	go test -run '^$' -bench 'BenchmarkRollout/hosts-1000$' -benchtime 1x -timeout 30m .
func BenchmarkRollout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts-%d", n), func(b *testing.B) { benchRollout(b, n) })
	}
}

func benchRollout(b *testing.B, n int) {
	var total time.Duration
	b.StopTimer()
	for range b.N {
		total += rolloutOnce(b, n)
	}
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(secs, "s")
	b.ReportMetric(float64(n)/secs, "hosts/s")
}

// rolloutOnce starts a system of n hosts, waits until it has scanned them and is idle, and
// times one advisory to its RolloutCompleted (only that span runs the benchmark timer).
func rolloutOnce(b *testing.B, n int) time.Duration {
	s := systemtest.Start(b, systemtest.Options{
		Hosts:  n,
		Logger: systemtest.Discard,
		// What a deployment of this size sets (the defaults suit a few hundred hosts):
		Inventory: func(c *inventory.Config) {
			// Scan the fleet (and re-scan each upgraded host) 256 at a time, with a
			// database pool to match: one short transaction per scanned host.
			c.ScanConcurrency = 256
			c.DatabaseURL = withPoolMaxConns(b, c.DatabaseURL, 64)
		},
		Planner: func(c *planner.Config) {
			// Its consumer handles four events at once; with the ticker and the query API
			// beside them, pgxpool's default of max(4, cores) connections would be short.
			c.DatabaseURL = withPoolMaxConns(b, c.DatabaseURL, 8)
		},
		Executor: func(c *executor.Config) {
			// At least the 200 hosts max_unavailable lets be away at once, so the executor
			// never holds the rollout back (default 64); its pool follows (Concurrency/4 + 4,
			// at most 32).
			c.Concurrency = 256
		},
	})
	// Each wait fails the benchmark rather than hang it: generous, and in proportion to n.
	limit := max(2*time.Minute, time.Duration(n)*60*time.Millisecond)
	t0 := time.Now()
	s.WaitScanned(b, limit)
	b.Logf("%d hosts scanned in %s", n, time.Since(t0).Round(time.Millisecond))
	waitIdle(b, s, limit)
	b.Logf("system idle after %s", time.Since(t0).Round(time.Millisecond))

	type arrival struct {
		msg *nats.Msg
		at  time.Time
	}
	done := make(chan arrival, 1)
	sub, err := s.NC.Subscribe(events.SpecOf[events.RolloutCompleted]().Subject, func(m *nats.Msg) {
		select {
		case done <- arrival{m, time.Now()}:
		default:
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := s.NC.Flush(); err != nil {
		b.Fatal(err)
	}

	if *rolloutProfile != "" {
		f, err := os.Create(*rolloutProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}
	b.StartTimer()
	start := time.Now()
	s.PublishAdvisory(b, "advisory.json", fleetsim.AdvisoryOSV)
	var got arrival
	s.WaitFor(b, limit, "RolloutCompleted", func() bool {
		select {
		case got = <-done:
			return true
		default:
			return false
		}
	})
	b.StopTimer()
	if *rolloutProfile != "" {
		pprof.StopCPUProfile()
	}
	elapsed := got.at.Sub(start)

	env, err := events.DecodeEnvelope(got.msg.Data)
	if err != nil {
		b.Fatal(err)
	}
	var rc events.RolloutCompleted
	if err := json.Unmarshal(env.Data, &rc); err != nil {
		b.Fatal(err)
	}
	if rc.Outcome != "completed" || rc.Succeeded != n || rc.Failed != 0 || rc.Skipped != 0 {
		b.Fatalf("rollout %s ended %s: %d succeeded, %d failed, %d skipped of %d hosts",
			rc.RolloutID, rc.Outcome, rc.Succeeded, rc.Failed, rc.Skipped, n)
	}
	for i, h := range s.Sim.Hosts() {
		if v := h.PackageVersion("libssl3"); v != "3.0.19-1~deb12u3" {
			b.Fatalf("%s: libssl3 %s after the rollout", systemtest.HostID(i), v)
		}
	}
	b.Logf("%d hosts: advisory -> RolloutCompleted in %s", n, elapsed.Round(time.Millisecond))
	return elapsed
}

// waitIdle waits until every durable consumer on every stream has handled everything stored
// (registrations and first scans digested by the planner), so the timed rollout starts from
// a system at rest. The listers are read to the end: their goroutines cannot stop early.
func waitIdle(b *testing.B, s *systemtest.System, timeout time.Duration) {
	b.Helper()
	ctx := context.Background()
	s.WaitFor(b, timeout, "every consumer caught up", func() bool {
		idle := true
		streams := s.JS.ListStreams(ctx)
		for st := range streams.Info() {
			stream, err := s.JS.Stream(ctx, st.Config.Name)
			if err != nil {
				b.Fatal(err)
			}
			consumers := stream.ListConsumers(ctx)
			for ci := range consumers.Info() {
				idle = idle && ci.NumPending == 0 && ci.NumAckPending == 0
			}
			if err := consumers.Err(); err != nil {
				b.Fatal(err)
			}
		}
		if err := streams.Err(); err != nil {
			b.Fatal(err)
		}
		return idle
	})
}

// withPoolMaxConns sets pgxpool's pool_max_conns in a database URL or keyword/value string.
func withPoolMaxConns(b *testing.B, dsn string, n int) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " pool_max_conns=" + strconv.Itoa(n) // the last setting wins
	}
	u, err := url.Parse(dsn)
	if err != nil {
		b.Fatalf("database URL: %v", err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String()
}
