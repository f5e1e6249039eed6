package executor_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

// BenchmarkExecutor1000Hosts runs the executor binary as a process of its own (so its memory
// is its own) with 1,000 jobs in flight against 1,000 fleetsim hosts. With apt taking 5 s on
// every host, all 1,000 SSH sessions are open at once; it reports jobs/s, the executor's peak
// RSS (VmHWM) and RSS at the end; apt-0s measures throughput alone.
//
//	go test -run '^$' -bench Executor1000Hosts -benchtime 1x .
func BenchmarkExecutor1000Hosts(b *testing.B) {
	b.Run("apt-5s", func(b *testing.B) { benchExecutor(b, 5*time.Second) })
	b.Run("apt-0s", func(b *testing.B) { benchExecutor(b, 0) })
}

func benchExecutor(b *testing.B, aptLatency time.Duration) {
	const n = 1000
	for range b.N {
		e := newEnv(b, fleetsim.Options{N: n, AptLatency: aptLatency})
		bin := filepath.Join(b.TempDir(), "executor")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/executor").CombinedOutput(); err != nil {
			b.Fatalf("build executor: %v\n%s", err, out)
		}
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "PATCHFLEET_NATS_URL="+e.url, "PATCHFLEET_DATABASE_URL="+e.dbURL,
			"PATCHFLEET_HTTP_ADDR=127.0.0.1:0", "PATCHFLEET_EXECUTOR_SSH_KEY="+e.keyFile,
			"PATCHFLEET_EXECUTOR_CONCURRENCY="+strconv.Itoa(n), "PATCHFLEET_LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

		var mu sync.Mutex
		done := map[string]string{}
		sub, err := e.bus.Conn.Subscribe("pf.upgrades.>", func(m *nats.Msg) {
			var env events.Envelope
			if json.Unmarshal(m.Data, &env) != nil || (env.Type != "UpgradeCompleted" && env.Type != "UpgradeFailed") {
				return
			}
			var d struct {
				JobID  string `json:"job_id"`
				Reason string `json:"reason"`
			}
			json.Unmarshal(env.Data, &d)
			mu.Lock()
			done[d.JobID] = env.Type + " " + d.Reason
			mu.Unlock()
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { sub.Unsubscribe() })

		start := time.Now()
		for i := range n {
			e.job(i, nil)
		}
		var peakSessions int64
		deadline := time.Now().Add(10 * time.Minute)
		for {
			mu.Lock()
			k := len(done)
			mu.Unlock()
			peakSessions = max(peakSessions, e.fleet.Running())
			if k == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d jobs finished in 10 minutes", k, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		elapsed := time.Since(start)
		failed := 0
		for id, o := range done {
			if !strings.HasPrefix(o, "UpgradeCompleted") {
				failed++
				if failed < 5 {
					b.Logf("job %s: %s", id, o)
				}
			}
		}
		rss, hwm := procStatus(b, cmd.Process.Pid)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "jobs/s")
		b.ReportMetric(float64(hwm)/1024, "peak-RSS-MiB")
		b.ReportMetric(float64(rss)/1024, "RSS-MiB")
		b.ReportMetric(float64(peakSessions), "peak-sessions")
		b.ReportMetric(float64(failed), "failed")
	}
}

// procStatus returns a process's VmRSS and VmHWM in KiB.
func procStatus(b *testing.B, pid int) (rss, hwm int64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}
