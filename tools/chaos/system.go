// Package chaos runs Patchfleet's four services as separate processes against NATS,
// PostgreSQL and a fleetsim fleet, breaks things while a rollout runs (kill -9 of services,
// restarts of NATS and PostgreSQL), and then checks — from the event log, the services'
// tables and what the simulated hosts saw — that every host was patched exactly once and
// that nothing was lost or done twice.
package chaos

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/db/pglocal"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
	"github.com/patchfleet/patchfleet/tools/freeport"
)

// Fleet is the fleet name the hosts are registered in and the policy matches.
const Fleet = "chaos"

// AdvisoryID is the advisory the rollout patches.
const AdvisoryID = "PFSA-2099-4242"

// Policy: security fixes automatically, a canary then three waves, twenty hosts at a time,
// reboots where a package asks for one, and no failure tolerated.
const Policy = `fleets:
  - name: chaos
    fleet: chaos
    security_updates: auto
    min_severity: low
    approval_delay: 0h
    reboot: if-required
    canary: 1
    waves: ["25%", "50%", "100%"]
    max_unavailable: 20
    max_failures: 0
`

// Updates is the simulated repository: fixed openssl, libssl3 and libssl-dev for every host, and an
// nginx fix (on the debian12-web hosts, a quarter of the fleet) whose postinst asks for a
// reboot.
func Updates() []fleetsim.Update {
	return []fleetsim.Update{
		{Name: "openssl", Version: "3.0.19-1~deb12u3", Security: true},
		{Name: "libssl3", Version: "3.0.19-1~deb12u3", Security: true},
		{Name: "libssl-dev", Version: "3.0.19-1~deb12u3", Security: true},
		{Name: "nginx", Version: "1.22.1-9+deb12u2", Security: true, Reboot: true},
		{Name: "nginx-common", Version: "1.22.1-9+deb12u2", Security: true},
	}
}

// Advisory exposes every host (openssl) and the web hosts once more (nginx).
func Advisory(now time.Time) events.AdvisorySubmitted {
	return events.AdvisorySubmitted{
		AdvisoryID: AdvisoryID, Source: "chaos", Title: "openssl and nginx fixes",
		Published: now, Modified: now, Severity: events.SeverityHigh,
		Affected: []events.Affected{
			{Ecosystem: events.EcosystemDebian, Release: "12", Package: "openssl", FixedVersion: "3.0.19-1~deb12u3",
				Binaries: []events.BinaryPackage{{Name: "openssl", Version: "3.0.19-1~deb12u3"}, {Name: "libssl3", Version: "3.0.19-1~deb12u3"},
					{Name: "libssl-dev", Version: "3.0.19-1~deb12u3"}}},
			{Ecosystem: events.EcosystemDebian, Release: "12", Package: "nginx", FixedVersion: "1.22.1-9+deb12u2",
				Binaries: []events.BinaryPackage{{Name: "nginx", Version: "1.22.1-9+deb12u2"}, {Name: "nginx-common", Version: "1.22.1-9+deb12u2"}}},
		},
	}
}

// Bus is how the harness and the services reach NATS.
type Bus struct {
	URL      string
	Replicas int
	// Env is the extra environment of a service (credentials, TLS); nil: none.
	Env func(service string) []string
	// Observer is the harness's own connection (it publishes registrations and the advisory
	// and reads every stream).
	Observer events.BusConfig
}

// Options describe a system.
type Options struct {
	Dir       string            // working directory: logs, policy, keys, PostgreSQL data
	Bins      map[string]string // service binaries (BuildServices)
	Bus       Bus
	Hosts     int
	Seed      int64
	Executors int // executor instances; default 1
	// AptLatency is what each simulated apt run takes: it sets how long the rollout lasts.
	AptLatency time.Duration
	Logger     *slog.Logger
}

// System is PostgreSQL, the fleet and the services' processes.
type System struct {
	opts   Options
	PG     *pglocal.Cluster
	pgPort int
	DBURL  string
	Fleet  *fleetsim.Fleet
	Procs  []*Proc // advisory-ingest, inventory, planner, executor-1…
	NC     *nats.Conn
	JS     jetstream.JetStream
	log    *slog.Logger

	mu    sync.Mutex
	exits []string
}

// Start starts PostgreSQL, the fleet and every service, and waits until they are ready.
// Close stops them.
func Start(ctx context.Context, opts Options) (s *System, err error) {
	if opts.Executors == 0 {
		opts.Executors = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s = &System{opts: opts, log: opts.Logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.pgPort, err = freeport.Get(); err != nil {
		return s, err
	}
	if err := s.startPG(ctx); err != nil {
		return s, err
	}
	if err := s.PG.CreateDatabase(ctx, "patchfleet"); err != nil {
		return s, err
	}
	s.DBURL = s.PG.URL("patchfleet")

	s.Fleet, err = fleetsim.Start(ctx, fleetsim.Options{N: opts.Hosts, Seed: strconv.FormatInt(opts.Seed, 10),
		Updates: Updates(), AptLatency: opts.AptLatency, RebootDelay: time.Second})
	if err != nil {
		return s, err
	}
	block, err := ssh.MarshalPrivateKey(s.Fleet.ClientPrivateKey(), "chaos")
	if err != nil {
		return s, fmt.Errorf("client key: %w", err)
	}
	key := filepath.Join(opts.Dir, "id_ed25519")
	policy := filepath.Join(opts.Dir, "policy.yaml")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		return s, err
	}
	if err := os.WriteFile(policy, []byte(Policy), 0o644); err != nil {
		return s, err
	}

	own := map[string][]string{
		"advisory-ingest": nil,
		"inventory": {"PATCHFLEET_INVENTORY_SSH_KEYS=" + key, "PATCHFLEET_INVENTORY_TOKENS=chaos:0123456789abcdef0123",
			"PATCHFLEET_INVENTORY_SCAN_CONCURRENCY=32"},
		"planner": {"PATCHFLEET_POLICY_FILE=" + policy, "PATCHFLEET_PLANNER_TICK=200ms"},
		"executor": {"PATCHFLEET_EXECUTOR_SSH_KEY=" + key, "PATCHFLEET_EXECUTOR_ACK_WAIT=10s",
			"PATCHFLEET_EXECUTOR_LEASE_TTL=10s", "PATCHFLEET_EXECUTOR_REBOOT_TIMEOUT=1m", "PATCHFLEET_EXECUTOR_CONCURRENCY=32"},
	}
	add := func(name, service string, extra ...string) error {
		port, err := freeport.Get()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + opts.Dir,
			"PATCHFLEET_NATS_URL=" + opts.Bus.URL, "PATCHFLEET_NATS_REPLICAS=" + strconv.Itoa(max(opts.Bus.Replicas, 1)),
			"PATCHFLEET_DATABASE_URL=" + s.DBURL, "PATCHFLEET_HTTP_ADDR=" + addr, "PATCHFLEET_LOG_LEVEL=info"}
		if opts.Bus.Env != nil {
			env = append(env, opts.Bus.Env(service)...)
		}
		env = append(append(env, own[service]...), extra...)
		s.Procs = append(s.Procs, NewProc(name, opts.Bins[service], nil, env, "http://"+addr+"/readyz",
			filepath.Join(opts.Dir, name+".log")))
		return nil
	}
	for _, svc := range []string{"advisory-ingest", "inventory", "planner"} {
		if err := add(svc, svc); err != nil {
			return s, err
		}
	}
	for i := range opts.Executors {
		name := fmt.Sprintf("executor-%d", i+1)
		if err := add(name, "executor", "PATCHFLEET_EXECUTOR_INSTANCE="+name); err != nil {
			return s, err
		}
	}
	for _, p := range s.Procs {
		if err := p.Start(); err != nil {
			return s, err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, p := range s.Procs {
		if err := p.WaitReady(rctx); err != nil {
			return s, err
		}
	}
	s.NC, s.JS, err = events.Connect(ctx, opts.Bus.Observer, "patchfleet-chaos", s.log)
	if err != nil {
		return s, err
	}
	if err := events.EnsureStreams(ctx, s.JS, max(opts.Bus.Replicas, 1)); err != nil {
		return s, err
	}
	return s, nil
}

func (s *System) startPG(ctx context.Context) error {
	// The run crashes PostgreSQL, so a commit it acknowledged must survive the server's
	// crash as it does in service: synchronous_commit on (the WAL is written before the
	// commit returns). fsync may stay off: the machine itself does not crash.
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(s.opts.Dir, "pg"), Port: s.pgPort, Logger: s.log,
		Settings: map[string]string{"synchronous_commit": "on"}})
	if err != nil {
		return err
	}
	s.PG = pg
	return nil
}

// Proc returns the process of that name, or nil.
func (s *System) Proc(name string) *Proc {
	for _, p := range s.Procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// CrashPG stops PostgreSQL as pg_ctl stop -m immediate does (SIGQUIT to the postmaster: no
// checkpoint, crash recovery on the next start) and starts it again on the same data and port.
func (s *System) CrashPG(ctx context.Context) error {
	pidFile := filepath.Join(s.PG.DataDir(), "postmaster.pid")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("crash postgresql: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return fmt.Errorf("crash postgresql: pid in %s: %w", pidFile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		return fmt.Errorf("crash postgresql: signal %d: %w", pid, err)
	}
	if err := poll(ctx, 30*time.Second, "postgresql to exit", func(context.Context) (bool, error) {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), nil
	}); err != nil {
		return err
	}
	_ = s.PG.Stop() // reaps the exited server; the data directory stays (it was given)
	return s.startPG(ctx)
}

// Register publishes a HostRegistered with the pinned key of every host of the fleet.
func (s *System) Register(ctx context.Context) error {
	for _, h := range s.Fleet.Hosts() {
		reg := events.HostRegistered{HostID: h.Name, Name: h.Name, Fleet: Fleet,
			SSH: events.SSHTarget{Address: "127.0.0.1", Port: h.Port(), User: "root",
				HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey())))}}
		if err := s.Publish(ctx, reg, "provisioning"); err != nil {
			return fmt.Errorf("register %s: %w", h.Name, err)
		}
	}
	return nil
}

// Publish publishes one event as producer, retrying (same id) until NATS acknowledges it.
func (s *System) Publish(ctx context.Context, e events.Event, producer string) error {
	m, err := events.New(e, events.Origin{Producer: producer, CorrelationID: producer}, time.Now())
	if err != nil {
		return err
	}
	return poll(ctx, time.Minute, "publish "+e.EventType(), func(ctx context.Context) (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return events.Publish(pctx, s.JS, m) == nil, nil
	})
}

// WaitScanned waits until the inventory has scanned every host.
func (s *System) WaitScanned(ctx context.Context, timeout time.Duration) error {
	q := query.Client{NC: s.NC}
	return poll(ctx, timeout, "every host scanned", func(ctx context.Context) (bool, error) {
		resp, err := q.Hosts(ctx, query.HostsRequest{Fleet: Fleet, Limit: 1000})
		if err != nil || len(resp.Hosts) != s.opts.Hosts {
			return false, nil
		}
		for _, h := range resp.Hosts {
			if h.LastScan.IsZero() {
				return false, nil
			}
		}
		return true, nil
	})
}

// CheckAlive starts again, as systemd's Restart=on-failure does (deployments/systemd), a
// process that exited on its own, and counts and logs it; such exits are reported, never
// hidden. It fails only when the restart fails.
func (s *System) CheckAlive() error {
	for _, p := range s.Procs {
		exited, err := p.Exited()
		if !exited {
			continue
		}
		s.mu.Lock()
		s.exits = append(s.exits, fmt.Sprintf("%s exited on its own (%v) at %s", p.Name, err, time.Now().Format(time.TimeOnly)))
		s.mu.Unlock()
		s.log.Warn("process exited on its own; restarting it", "proc", p.Name, "err", err, "log", p.Log())
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
		if err := p.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Exits lists the processes that exited on their own (and were started again).
func (s *System) Exits() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.exits...)
}

// Close stops the services, the fleet and PostgreSQL.
func (s *System) Close() {
	for _, p := range s.Procs {
		if err := p.Stop(); err != nil {
			s.log.Warn("stop", "proc", p.Name, "err", err)
		}
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.Fleet != nil {
		s.Fleet.Close()
	}
	if s.PG != nil {
		if err := s.PG.Stop(); err != nil {
			s.log.Warn("stop postgresql", "err", err)
		}
	}
}

// Envelopes reads every event a stream holds now.
func Envelopes(ctx context.Context, js jetstream.JetStream, stream string) ([]events.Envelope, error) {
	// A bounded number of resets: by default an ordered consumer that lost its server retries
	// recreating itself forever inside Fetch, which takes no context; seen after a cluster
	// node was killed. Failing lets the caller read again with a new consumer.
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{MaxResetAttempts: 2})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	// Each read's consumer is deleted after it: left to expire (5 minutes), the consumers of
	// a wait that reads every few milliseconds pile up in the cluster by the thousand (the
	// likely cause of a cluster run whose every read failed for minutes).
	defer func() {
		if ci := c.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = js.DeleteConsumer(dctx, stream, ci.Name)
			cancel()
		}
	}()
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	pending := int(info.NumPending)
	var out []events.Envelope
	for len(out) < pending {
		batch, err := c.Fetch(min(pending-len(out), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var env events.Envelope
			if err := json.Unmarshal(m.Data(), &env); err != nil {
				env = events.Envelope{Type: "undecodable"}
			}
			out = append(out, env)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("read %s: %d of %d events arrived", stream, len(out), pending)
		}
	}
	return out, nil
}

// poll calls cond until it reports true, returns an error, or the timeout passes. Each call
// gets a context of its own, bounded by attempt: a NATS request inherits its context's
// deadline, so one lost while a node dies or a leader is elected would otherwise hang the
// wait for as long as the whole run may take.
func poll(ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	const attempt = 30 * time.Second
	deadline := time.Now().Add(timeout)
	var last error // the last call's context error, reported on timeout
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		ok, err := cond(actx)
		if actx.Err() != nil && ctx.Err() == nil {
			last = fmt.Errorf("an attempt took over %s", attempt)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("waiting for %s: not after %s (%v)", what, timeout, last)
			}
			return fmt.Errorf("waiting for %s: not after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
