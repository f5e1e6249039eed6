package fleetsim

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/hostfacts"
)

// BenchmarkScan10k starts 10,000 hosts and runs complete inventory scans
// against them over SSH — one connection per scan, host key verified — with
// 64 scans in flight, as the inventory scanner would. Reports scans/s,
// heap and stack bytes per host after start, and the start time.
//
//	go test -run '^$' -bench Scan10k -benchtime 5000x ./fleetsim
func BenchmarkScan10k(b *testing.B) {
	const n, concurrency = 10000, 64
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	// Fixed ports below the kernel's ephemeral range: binding 10,000
	// sockets to port 0 makes the kernel's free-port search the slowest
	// part of the start.
	f, err := Start(context.Background(), Options{N: n, Seed: "bench", BasePort: 20000})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	took := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	script, err := hostfacts.ScanScript()
	if err != nil {
		b.Fatal(err)
	}
	hosts := f.Hosts()
	var next, failed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := scanOnce(f, hosts[i%int64(len(hosts))], script); err != nil {
					failed.Add(1)
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "scans/s")
	// Heap and goroutine stacks (one accept loop per host).
	used := func(m *runtime.MemStats) float64 { return float64(m.HeapAlloc + m.StackInuse) }
	b.ReportMetric((used(&after)-used(&before))/n, "bytes/host")
	b.ReportMetric(took.Seconds(), "start-s")
}

func scanOnce(f *Fleet, h *Host, script string) error {
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(f.ClientSigner())},
		HostKeyCallback: ssh.FixedHostKey(h.HostKey()),
		Timeout:         30 * time.Second,
	}
	c, err := ssh.Dial("tcp", h.Addr(), cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var out bytes.Buffer
	s.Stdin, s.Stdout = bytes.NewReader([]byte(script)), &out
	if err := s.Run("sh -s"); err != nil {
		return err
	}
	if !bytes.HasSuffix(out.Bytes(), []byte("==> patchfleet:end\n")) {
		return errShort
	}
	return nil
}

var errShort = errorString("scan output without its end marker")

type errorString string

func (e errorString) Error() string { return string(e) }
