// Package systemtest runs the whole system in one test process: embedded NATS, a fresh
// PostgreSQL database, the four services, and fleetsim hosts registered with the inventory the
// way a provisioning system registers real ones. Whole-system tests and benchmarks (the
// ChatOps bot, the console, a 10,000-host rollout) start from here instead of each wiring the
// services anew.
//
// A test binary using it calls pgtest.Main from its TestMain.
package systemtest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	"github.com/patchfleet/patchfleet/events/query"
	ingest "github.com/patchfleet/patchfleet/services/advisory-ingest"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/services/planner"
	"github.com/patchfleet/patchfleet/tools/feedpub"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
	"github.com/patchfleet/patchfleet/tools/freeport"
)

// Fleet is the fleet the simulated hosts are registered in.
const Fleet = "sim"

// DefaultPolicy patches Fleet automatically: one canary, then everything, 200 hosts at a time,
// rebooting where a fix asks for it.
const DefaultPolicy = `fleets:
  - name: sim
    security_updates: auto
    min_severity: low
    approval_delay: 0h
    reboot: if-required
    canary: 1
    waves: ["100%"]
    max_unavailable: 200
    max_failures: 0
`

// Options configure a System; the zero value runs no hosts.
type Options struct {
	Hosts  int    // fleetsim hosts, registered in Fleet as sim-00000, sim-00001, …
	Policy string // the planner's policy (YAML); default DefaultPolicy
	// Sim configures the simulator; N is Hosts and Seed defaults to "systemtest".
	Sim fleetsim.Options
	// Logger gets every service's log; default: warnings and errors to the test log.
	Logger *slog.Logger
	// Inventory, Planner and Executor adjust a service's configuration before it starts.
	Inventory func(*inventory.Config)
	Planner   func(*planner.Config)
	Executor  func(*executor.Config)
}

// System is the running system.
type System struct {
	NATSURL string
	NC      *nats.Conn
	JS      jetstream.JetStream
	Query   query.Client
	Sim     *fleetsim.Fleet // nil without hosts
	KeyFile string          // the SSH client key the services use (PEM)
	Dir     string
	// DatabaseURL is the database every service keeps its schema in.
	DatabaseURL string

	failed atomic.Value // string: the first service that stopped with an error
}

// Start runs the system until the test ends.
func Start(tb testing.TB, opts Options) *System {
	tb.Helper()
	if opts.Policy == "" {
		opts.Policy = DefaultPolicy
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s := &System{Dir: tb.TempDir()}

	ns, err := embedded.Start(embedded.Config{StoreDir: filepath.Join(s.Dir, "nats"), Host: "127.0.0.1", Port: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ns.Shutdown)
	s.NATSURL = ns.ClientURL()
	if s.NC, err = nats.Connect(s.NATSURL); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.NC.Close)
	if s.JS, err = jetstream.New(s.NC); err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if err := events.EnsureStreams(ctx, s.JS, 1); err != nil {
		tb.Fatal(err)
	}
	s.Query = query.Client{NC: s.NC}

	if opts.Hosts > 0 {
		simOpts := opts.Sim
		simOpts.N = opts.Hosts
		if simOpts.Seed == "" {
			simOpts.Seed = "systemtest"
		}
		if s.Sim, err = fleetsim.Start(ctx, simOpts); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = s.Sim.Close() })
		s.KeyFile = filepath.Join(s.Dir, "id_ed25519")
		writeKey(tb, s.KeyFile, s.Sim.ClientPrivateKey())
	}
	policy := filepath.Join(s.Dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(opts.Policy), 0o644); err != nil {
		tb.Fatal(err)
	}

	dbURL := pgtest.EmptyDatabase(tb)
	s.DatabaseURL = dbURL
	// HTTP on a port of its own, so no other test can take it first; the executor's is picked
	// beforehand, because a test may need its address (the console links to its job logs).
	common := func() service.Common {
		return service.Common{Bus: events.BusConfig{URL: s.NATSURL, Replicas: 1}, DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0"}
	}
	var keys []string
	if s.KeyFile != "" {
		keys = []string{s.KeyFile}
	}
	invCfg := inventory.Config{Common: common(), Tokens: []string{"systemtest:0123456789abcdef0123"}, SSHKeyFiles: keys,
		ScanPoll: 200 * time.Millisecond}
	planCfg := planner.Config{Common: common(), PolicyFile: policy, Tick: 200 * time.Millisecond}
	execCfg := executor.Config{Common: common(), SSHKeyFiles: keys, RebootTimeout: 2 * time.Minute}
	execCfg.HTTPAddr = "127.0.0.1:" + strconv.Itoa(freeport.For(tb))
	ingCfg := ingest.Config{Common: common()}
	if opts.Inventory != nil {
		opts.Inventory(&invCfg)
	}
	if opts.Planner != nil {
		opts.Planner(&planCfg)
	}
	if opts.Executor != nil {
		opts.Executor(&execCfg)
	}

	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(sctx); err != nil {
				s.failed.CompareAndSwap(nil, fmt.Sprintf("%s: %v", name, err))
				tb.Errorf("%s: %v", name, err)
			}
		})
	}
	// Services stop before NATS and the database (cleanups run last-registered first).
	tb.Cleanup(func() { stop(); wg.Wait() })
	run(inventory.Name, func(ctx context.Context) error { return inventory.Run(ctx, invCfg, logger.With("svc", inventory.Name)) })
	run(planner.Name, func(ctx context.Context) error { return planner.Run(ctx, planCfg, logger.With("svc", planner.Name)) })
	run(executor.Name, func(ctx context.Context) error { return executor.Run(ctx, execCfg, logger.With("svc", executor.Name)) })
	run(ingest.Name, func(ctx context.Context) error { return ingest.Run(ctx, ingCfg, logger.With("svc", ingest.Name)) })

	if s.Sim != nil {
		s.register(tb)
	}
	return s
}

// HostID is the id simulated host i is registered under.
func HostID(i int) string { return fmt.Sprintf("sim-%05d", i) }

// register announces every simulated host with its pinned key, as provisioning does.
func (s *System) register(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	acks := make([]jetstream.PubAckFuture, 0, len(s.Sim.Hosts()))
	for i, h := range s.Sim.Hosts() {
		host, port, _ := net.SplitHostPort(h.Addr())
		p, _ := strconv.Atoi(port)
		reg := events.HostRegistered{HostID: HostID(i), Name: HostID(i), Fleet: Fleet,
			Tags: map[string]string{"image": h.Image()},
			SSH: events.SSHTarget{Address: host, Port: p, User: "root",
				HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey())))}}
		m, err := events.New(reg, events.Origin{Producer: "provisioning", CorrelationID: reg.HostID}, time.Now())
		if err != nil {
			tb.Fatal(err)
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		msg.Header.Set(jetstream.MsgIDHeader, m.ID)
		f, err := s.JS.PublishMsgAsync(msg)
		if err != nil {
			tb.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			tb.Fatalf("register host: %v", err)
		case <-ctx.Done():
		}
	}
}

// Failed is the first service that stopped with an error, or "".
func (s *System) Failed() string {
	f, _ := s.failed.Load().(string)
	return f
}

// WaitFor polls cond until it holds, failing the test after timeout or as soon as a service
// has stopped with an error.
func (s *System) WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if f := s.Failed(); f != "" {
			tb.Fatalf("waiting for %s: %s", what, f)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Count is how many events of type E are in their stream.
func Count[E events.Event](tb testing.TB, s *System) int {
	tb.Helper()
	spec := events.SpecOf[E]()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, spec.Stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(spec.Subject))
	if err != nil {
		tb.Fatal(err)
	}
	return int(info.State.Subjects[spec.Subject])
}

// Last is the latest event of type E, and whether there is one.
func Last[E events.Event](tb testing.TB, s *System) (E, bool) {
	tb.Helper()
	var e E
	spec := events.SpecOf[E]()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, spec.Stream)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, spec.Subject)
	if err != nil {
		return e, false
	}
	env, err := events.DecodeEnvelope(m.Data)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(env.Data, &e); err != nil {
		tb.Fatal(err)
	}
	return e, true
}

// WaitScanned waits until every simulated host has reported its first inventory.
func (s *System) WaitScanned(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	n := len(s.Sim.Hosts())
	s.WaitFor(tb, timeout, fmt.Sprintf("%d hosts scanned", n), func() bool {
		return Count[events.HostInventoryReported](tb, s) >= n
	})
}

// PublishAdvisory hands an advisory (any format advisory-ingest reads) to the bus through the
// feed publisher, as an external feed does.
func (s *System) PublishAdvisory(tb testing.TB, name string, doc []byte) {
	tb.Helper()
	path := filepath.Join(s.Dir, name)
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		tb.Fatal(err)
	}
	res, err := feedpub.Run(context.Background(), feedpub.Config{Sources: []string{path}}, s.JS, nil)
	if err != nil || res.Published != 1 {
		tb.Fatalf("feedpub %s: %+v, %v", name, res, err)
	}
}

func writeKey(tb testing.TB, path string, key ed25519.PrivateKey) {
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Discard is a logger that drops everything, for benchmarks.
var Discard = slog.New(slog.NewTextHandler(io.Discard, nil))
