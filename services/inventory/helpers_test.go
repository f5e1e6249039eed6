package inventory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/services/inventory/internal/scan"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testToken = "test-token-0123456789"

// sys is a running inventory service with its own JetStream and database.
type sys struct {
	t     testing.TB
	base  string // http://127.0.0.1:port
	bus   *eventstest.Bus
	query query.Client
	dbURL string
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the service as tools/allinone does, with runner as its SSH (nil: none).
func start(t testing.TB, runner scan.Runner, tweak ...func(*inventory.Config)) *sys {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	name, err := pgtest.NewDatabase(ctx, t, inventorydb.Schema, inventorydb.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := inventory.Config{
		Common: service.Common{Bus: events.BusConfig{URL: srv.ClientURL()}, DatabaseURL: pgtest.URL(t, name),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)},
		Tokens:   []string{"tester:" + testToken},
		Runner:   runner,
		ScanPoll: 100 * time.Millisecond, ScanInterval: time.Hour, ScanTimeout: 10 * time.Second, ScanConcurrency: 8,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- inventory.Run(rctx, cfg, logger) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("inventory stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("inventory did not stop in 30s")
		}
	})
	s := &sys{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), bus: &eventstest.Bus{Server: srv, Conn: nc, JS: js},
		query: query.Client{NC: nc}, dbURL: cfg.DatabaseURL}
	eventstest.WaitFor(t, time.Minute, "inventory ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("inventory stopped: %v", err)
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// The micro service registers on its own goroutine.
	eventstest.WaitFor(t, 30*time.Second, "micro service", func() bool {
		_, err := s.query.Hosts(context.Background(), query.HostsRequest{Limit: 1})
		return err == nil
	})
	return s
}

// do calls the HTTP API with the test token and decodes the answer into out (if not nil),
// returning the status.
func (s *sys) do(method, path string, body any, out any) int {
	s.t.Helper()
	return s.doToken(testToken, method, path, body, out)
}

func (s *sys) doToken(token, method, path string, body any, out any) int {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// events returns the envelopes of one type on a stream.
func (s *sys) events(stream, typ string) []events.Envelope {
	var out []events.Envelope
	for _, e := range s.bus.Envelopes(s.t, stream) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (s *sys) waitEvents(stream, typ string, n int) []events.Envelope {
	s.t.Helper()
	var got []events.Envelope
	eventstest.WaitFor(s.t, 30*time.Second, fmt.Sprintf("%d %s", n, typ), func() bool {
		got = s.events(stream, typ)
		return len(got) >= n
	})
	return got
}

func (s *sys) host(id string) query.HostDetail {
	s.t.Helper()
	var h query.HostDetail
	if code := s.do("GET", "/v1/hosts/"+id+"?packages=true", nil, &h); code != http.StatusOK {
		s.t.Fatalf("GET host %s: %d", id, code)
	}
	return h
}

// ---- reports ----

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// report formats a scan report the way the scan script prints one.
func report(osID, versionID, packages string, reboot bool, components ...string) []byte {
	rr := "no"
	if reboot {
		rr = "yes"
	}
	sections := []string{
		"os-release", fmt.Sprintf("ID=%s\nVERSION_ID=\"%s\"\n", osID, versionID),
		"kernel", "6.1.0-37-amd64",
		"arch", "x86_64",
		"dpkg-arch", "amd64",
		"boot-id", "9d7205ff-ab21-47e5-8ae9-1fa49b1bca6f",
		"hostname", "host",
		"packages", packages,
		"held", "",
		"reboot-required", rr,
		"reboot-required-pkgs", "",
	}
	sections = append(sections, components...)
	var b strings.Builder
	b.WriteString("==> patchfleet:scan 1\n")
	for i := 0; i+1 < len(sections); i += 2 {
		b.WriteString("==> patchfleet:section " + sections[i] + "\n")
		if body := strings.TrimSuffix(sections[i+1], "\n"); body != "" {
			b.WriteString(body + "\n")
		}
		b.WriteString("==> patchfleet:status 0\n")
	}
	b.WriteString("==> patchfleet:end\n")
	return []byte(b.String())
}

// withVersion returns the capture with one package's version (and its source version)
// replaced.
func withVersion(tsv, pkg, version string) string {
	var out []string
	for line := range strings.SplitSeq(strings.TrimSuffix(tsv, "\n"), "\n") {
		f := strings.Split(line, "\t")
		if f[0] == pkg {
			f[1], f[4] = version, version
		}
		out = append(out, strings.Join(f, "\t"))
	}
	return strings.Join(out, "\n") + "\n"
}

// ---- a simulated SSH fleet for the runner ----

// fleet answers scans for hosts it knows, checking host keys as sshx does: a pinned key
// must match, no key needs TOFU (and the accepted key is handed back).
type fleet struct {
	mu    sync.Mutex
	hosts map[string]*simHost
	runs  int
}

type simHost struct {
	key    string // authorized_keys line the host presents
	report []byte
}

func newFleet() *fleet { return &fleet{hosts: map[string]*simHost{}} }

func (f *fleet) set(id, key string, report []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts[id] = &simHost{key: key, report: report}
}

func (f *fleet) Run(ctx context.Context, t scan.Target, script string) (scan.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs++
	h := f.hosts[t.ID]
	if h == nil {
		return scan.Result{}, fmt.Errorf("dial %s: connection refused", t.SSH.Address)
	}
	if !strings.Contains(script, "patchfleet:scan") {
		return scan.Result{}, fmt.Errorf("not the scan script")
	}
	switch {
	case t.SSH.HostKey == "" && !t.SSH.TOFU:
		return scan.Result{}, scan.ErrNoHostKey
	case t.SSH.HostKey == "":
		return scan.Result{Stdout: h.report, AcceptedKey: h.key}, nil
	case t.SSH.HostKey != h.key:
		return scan.Result{}, &scan.KeyMismatchError{Expected: fingerprint(t.SSH.HostKey), Presented: fingerprint(h.key)}
	}
	return scan.Result{Stdout: h.report}, nil
}
