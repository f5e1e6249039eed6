package executor_test

// The test harness: a real JetStream (embedded, on a local socket so the service connects as
// in production), a real PostgreSQL database per test, simulated SSH hosts (tools/fleetsim)
// and a small inventory responder — a NATS micro service answering query.SubjectHost with the
// simulated hosts' SSH targets and pinned keys, standing in for the inventory service.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/executordb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// hostName returns the id of the test's i-th host.
func (e *env) hostName(i int) string {
	if e.names != nil {
		return e.names[i]
	}
	return e.fleet.Hosts()[i].Name
}

type env struct {
	names   []string // host ids when the hosts are not fleetsim's
	t       testing.TB
	bus     *eventstest.Bus
	url     string
	dbURL   string
	db      *pgxpool.Pool
	fleet   *fleetsim.Fleet
	keyFile string
	inv     *inventory
}

func newEnv(t testing.TB, opts fleetsim.Options) *env {
	t.Helper()
	e := newBase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if opts.Seed == "" {
		opts.Seed = t.Name()
	}
	if opts.RebootDelay == 0 {
		opts.RebootDelay = 300 * time.Millisecond
	}
	fleet, err := fleetsim.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	e.fleet = fleet
	e.keyFile = writeKey(t, fleet.ClientPrivateKey())
	hosts := map[string]query.HostDetail{}
	for _, h := range fleet.Hosts() {
		hosts[h.Name] = query.HostDetail{Host: query.Host{ID: h.Name, Name: h.Name, Fleet: "sim", AppPath: "/srv/app",
			SSH: events.SSHTarget{Address: "127.0.0.1", Port: h.Port(), User: "root", HostKey: authorizedKey(h.HostKey())}}}
	}
	e.inv = startInventory(t, e.bus.Conn, hosts)
	return e
}

// newBase starts the bus and the database.
func newBase(t testing.TB) *env {
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	name, err := pgtest.NewDatabase(ctx, t, executordb.Schema, executordb.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	dbURL := pgtest.URL(t, name)
	pool, err := db.Connect(ctx, dbURL, executordb.Schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &env{t: t, bus: &eventstest.Bus{Server: srv, Conn: nc, JS: js}, url: srv.ClientURL(), dbURL: dbURL, db: pool}
}

func writeKey(t testing.TB, k ed25519.PrivateKey) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// config is an executor configuration for tests: short AckWait and lease so that a crash is
// taken over in seconds.
func (e *env) config(name string) executor.Config {
	return executor.Config{
		Common:        service.Common{Bus: events.BusConfig{URL: e.url}, DatabaseURL: e.dbURL, HTTPAddr: "127.0.0.1:0"},
		InstanceID:    name,
		Concurrency:   16,
		AckWait:       3 * time.Second,
		LeaseTTL:      3 * time.Second,
		ShutdownGrace: 100 * time.Millisecond,
		SSHKeyFiles:   []string{e.keyFile},
		LockTimeout:   5 * time.Second,
		RebootTimeout: 10 * time.Second,
		RebootDelay:   100 * time.Millisecond,
		MinFreeKB:     1024,
		MaxAttempts:   2,
	}
}

// run starts an executor instance; stop cancels it and waits for its shutdown.
func (e *env) run(name string, mod func(*executor.Config)) (stop func()) {
	e.t.Helper()
	cfg := e.config(name)
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("instance", name)
	}
	go func() { done <- executor.Run(ctx, cfg, logger) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("executor %s: %v", name, err)
				}
			case <-time.After(60 * time.Second):
				e.t.Errorf("executor %s did not stop", name)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

var jobSeq struct {
	sync.Mutex
	n int
}

// job publishes an UpgradeRequested for host i.
func (e *env) job(i int, mod func(*events.UpgradeRequested)) events.UpgradeRequested {
	e.t.Helper()
	jobSeq.Lock()
	jobSeq.n++
	n := jobSeq.n
	jobSeq.Unlock()
	name := e.hostName(i)
	req := events.UpgradeRequested{JobID: fmt.Sprintf("job-%d-%s", n, name), RolloutID: "rollout-1", HostID: name,
		Kind: events.KindSecurity, Strategy: events.StrategyInPlace, Reboot: events.RebootNever,
		Packages: []events.PackageTarget{{Name: "openssl", MinVersion: "3.0.19-1~deb12u3"}, {Name: "libssl3", MinVersion: "3.0.19-1~deb12u3"}}}
	if mod != nil {
		mod(&req)
	}
	e.publish(req)
	return req
}

func (e *env) publish(req events.UpgradeRequested) {
	e.t.Helper()
	e.bus.Publish(e.t, req, req.RolloutID)
}

// envelopes returns the events of type typ on stream about job (data.job_id).
func (e *env) envelopes(stream, typ, jobID string) []events.Envelope {
	e.t.Helper()
	var out []events.Envelope
	for _, env := range e.bus.Envelopes(e.t, stream) {
		if env.Type != typ {
			continue
		}
		var d struct {
			JobID string `json:"job_id"`
		}
		if json.Unmarshal(env.Data, &d) == nil && d.JobID == jobID {
			out = append(out, env)
		}
	}
	return out
}

// outcome waits for the job's UpgradeCompleted or UpgradeFailed.
func (e *env) outcome(jobID string, timeout time.Duration) (events.UpgradeCompleted, events.UpgradeFailed, bool) {
	e.t.Helper()
	var env events.Envelope
	eventstest.WaitFor(e.t, timeout, "outcome of "+jobID, func() bool {
		for _, typ := range []string{"UpgradeCompleted", "UpgradeFailed"} {
			if es := e.envelopes(events.StreamUpgrades, typ, jobID); len(es) > 0 {
				env = es[0]
				return true
			}
		}
		return false
	})
	var c events.UpgradeCompleted
	var f events.UpgradeFailed
	if env.Type == "UpgradeCompleted" {
		if err := events.DecodeData(env, &c); err != nil {
			e.t.Fatal(err)
		}
		return c, f, true
	}
	if err := events.DecodeData(env, &f); err != nil {
		e.t.Fatal(err)
	}
	return c, f, false
}

func (e *env) mustComplete(jobID string, timeout time.Duration) events.UpgradeCompleted {
	e.t.Helper()
	c, f, ok := e.outcome(jobID, timeout)
	if !ok {
		e.t.Fatalf("job %s failed: %s: %s\n%s", jobID, f.Reason, f.Message, f.OutputTail)
	}
	return c
}

func (e *env) mustFail(jobID, reason string, timeout time.Duration) events.UpgradeFailed {
	e.t.Helper()
	c, f, ok := e.outcome(jobID, timeout)
	if ok {
		e.t.Fatalf("job %s completed (%+v), want failure %s", jobID, c, reason)
	}
	if f.Reason != reason {
		e.t.Fatalf("job %s failed with %s (%s), want %s", jobID, f.Reason, f.Message, reason)
	}
	return f
}

// ---- inventory responder ----

type inventory struct {
	mu    sync.Mutex
	hosts map[string]query.HostDetail
	calls int
	away  bool // answers 503, as an inventory that is restarting would
}

func authorizedKey(k ssh.PublicKey) string { return string(ssh.MarshalAuthorizedKey(k)) }

func startInventory(t testing.TB, nc *nats.Conn, hosts map[string]query.HostDetail) *inventory {
	t.Helper()
	inv := &inventory{hosts: hosts}
	svc, err := micro.AddService(nc, micro.Config{Name: query.ServiceInventory, Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	err = svc.AddEndpoint("host", micro.HandlerFunc(func(r micro.Request) {
		var req query.HostRequest
		if err := json.Unmarshal(r.Data(), &req); err != nil {
			r.Error("400", "bad request", nil)
			return
		}
		inv.mu.Lock()
		inv.calls++
		h, ok := inv.hosts[req.ID]
		away := inv.away
		inv.mu.Unlock()
		if away {
			r.Error("503", "inventory unavailable", nil)
			return
		}
		if !ok {
			r.Error("404", "no such host", nil)
			return
		}
		r.RespondJSON(h)
	}), micro.WithEndpointSubject(query.SubjectHost))
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// setAway makes the inventory answer every lookup with 503 (true) or serve again (false).
func (inv *inventory) setAway(away bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.away = away
}

func (inv *inventory) callCount() int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.calls
}

// pin replaces a host's pinned key.
func (inv *inventory) pin(host string, key ssh.PublicKey) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	h := inv.hosts[host]
	h.SSH.HostKey = authorizedKey(key)
	inv.hosts[host] = h
}
