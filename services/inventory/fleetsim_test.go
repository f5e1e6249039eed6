package inventory_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

// simFleet starts n simulated hosts over real SSH and an inventory that scans them the way it
// scans real hosts: through its own SSH pool (events/sshx) with the fleet's client key.
func simFleet(t testing.TB, n int, concurrency int) (*sys, *fleetsim.Fleet) {
	t.Helper()
	f, err := fleetsim.Start(context.Background(), fleetsim.Options{N: n, Seed: "inventory"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	block, err := ssh.MarshalPrivateKey(f.ClientPrivateKey(), "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, nil, func(c *inventory.Config) {
		c.SSHKeyFiles = []string{key}
		c.ScanConcurrency = concurrency
		// pgxpool's default of max(4, cores) connections would bound the scan workers.
		sep := "?"
		if strings.Contains(c.DatabaseURL, "?") {
			sep = "&"
		}
		c.DatabaseURL += sep + "pool_max_conns=" + strconv.Itoa(min(concurrency, 32))
	})
	return s, f
}

// hostsFile writes the fleet as a hosts file, every key pinned.
func hostsFile(t testing.TB, f *fleetsim.Fleet) string {
	var b strings.Builder
	b.WriteString("hosts:\n")
	for i, h := range f.Hosts() {
		host, port, _ := net.SplitHostPort(h.Addr())
		fmt.Fprintf(&b, "  - id: sim-%05d\n    fleet: sim-%s\n    ssh: {address: %s, port: %s, user: patchfleet, host_key: %q}\n",
			i, h.Image(), host, port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey()))))
	}
	return b.String()
}

func TestScanFleetsim(t *testing.T) {
	s, f := simFleet(t, 12, 4)
	if code := s.do("POST", "/v1/hosts/import", hostsFile(t, f), nil); code != 200 {
		t.Fatalf("import: %d", code)
	}
	eventstest.WaitFor(t, time.Minute, "every host scanned", func() bool {
		var page query.HostsResponse
		s.do("GET", "/v1/hosts?not_scanned_for=1h", nil, &page)
		return len(page.Hosts) == 0
	})
	var page query.HostsResponse
	s.do("GET", "/v1/hosts", nil, &page)
	for _, h := range page.Hosts {
		if h.PackageCount < 700 || h.OS.ID != "debian" || h.LastScanError != "" {
			t.Errorf("%s: %d packages, os %+v, error %q", h.ID, h.PackageCount, h.OS, h.LastScanError)
		}
	}
	// The lagging image's libc6 is one update behind the others.
	s.do("GET", "/v1/hosts?package=libc6&below_version=2.36-9%2Bdeb12u14", nil, &page)
	for _, h := range page.Hosts {
		if h.Fleet != "sim-debian12-lagging" {
			t.Errorf("%s (%s) has an old libc6", h.ID, h.Fleet)
		}
	}
	if len(page.Hosts) != 3 {
		t.Errorf("%d hosts with an old libc6, want 3", len(page.Hosts))
	}
}

// scanRound asks for a scan of the fleets' n hosts and returns when every one of them has
// announced this round's HostInventoryReported on the bus: the service's whole work, its
// events included, watched without querying the database the service is using.
func scanRound(b *testing.B, s *sys, n int, fleets []string) time.Duration {
	t0 := time.Now()
	var mu sync.Mutex
	seen := make(map[string]bool, n)
	done := make(chan struct{})
	sub, err := s.bus.Conn.Subscribe(events.SpecOf[events.HostInventoryReported]().Subject, func(m *nats.Msg) {
		env, err := events.DecodeEnvelope(m.Data)
		var e events.HostInventoryReported
		if err == nil {
			err = events.DecodeData(env, &e)
		}
		if err != nil {
			b.Errorf("bad HostInventoryReported: %v", err)
			return
		}
		if e.ScannedAt.Before(t0) {
			return // a late event of the previous round
		}
		mu.Lock()
		defer mu.Unlock()
		if !seen[e.HostID] {
			seen[e.HostID] = true
			if len(seen) == n {
				close(done)
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := s.bus.Conn.Flush(); err != nil { // subscribed before the first scan
		b.Fatal(err)
	}
	for _, fl := range fleets {
		s.do("POST", "/v1/scans", query.ScanRequest{Fleet: fl}, nil)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("%d of %d hosts scanned in 5 minutes", len(seen), n)
	}
	return time.Since(t0)
}

// BenchmarkScanRound1000InMemory is BenchmarkScanRound1000 without SSH: a simulated runner
// answers the real capture, so it measures the service's side (scheduler, parse, one
// transaction per host with its events).
func BenchmarkScanRound1000InMemory(b *testing.B) {
	const n = 1000
	f := newFleet()
	s := start(b, f, func(c *inventory.Config) {
		c.ScanConcurrency = 64
		sep := "?"
		if strings.Contains(c.DatabaseURL, "?") {
			sep = "&"
		}
		c.DatabaseURL += sep + "pool_max_conns=32"
	})
	rep := report("debian", "12", readFile(b, "testdata/debian12-dpkg.tsv"), false)
	var file strings.Builder
	file.WriteString("hosts:\n")
	for i := range n {
		id, key := fmt.Sprintf("mem-%05d", i), hostKey(b)
		f.set(id, key, rep)
		fmt.Fprintf(&file, "  - {id: %s, fleet: mem, ssh: {address: 10.0.0.1, host_key: %q}}\n", id, key)
	}
	if code := s.do("POST", "/v1/hosts/import", file.String(), nil); code != 200 {
		b.Fatalf("import: %d", code)
	}
	scanRound(b, s, n, []string{"mem"})
	var total time.Duration
	for b.Loop() {
		total += scanRound(b, s, n, []string{"mem"})
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "hosts/s")
}

// BenchmarkScanRound1000 scans 1,000 simulated hosts over SSH through the service (sshx
// pool of ScanConcurrency connections, so a round opens a connection per host as a periodic
// scan of a large fleet does; hostfacts.Parse; one transaction per host with its events) and
// reports hosts/s. The simulated hosts' side of SSH runs in this process too.
func BenchmarkScanRound1000(b *testing.B) {
	const n = 1000
	s, f := simFleet(b, n, 64)
	if code := s.do("POST", "/v1/hosts/import", hostsFile(b, f), nil); code != 200 {
		b.Fatalf("import: %d", code)
	}
	images := []string{"sim-debian12", "sim-debian12-lagging", "sim-debian12-docker", "sim-debian12-web"}
	scanRound(b, s, n, images) // the first round after the import
	var total time.Duration
	for b.Loop() {
		total += scanRound(b, s, n, images)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "hosts/s")
}
