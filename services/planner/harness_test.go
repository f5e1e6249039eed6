package planner_test

// The test harness: a real JetStream (embedded, on a local socket so the service connects
// as in production), a real PostgreSQL database per test, a small inventory responder (a
// real NATS micro service answering the inventory's query subjects with fixed data) and a
// test executor that takes jobs from the JOBS work queue and reports what the test says.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner"
	"github.com/patchfleet/patchfleet/services/planner/internal/rollout"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is the planner's injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type env struct {
	t      testing.TB
	bus    *eventstest.Bus
	url    string
	dbURL  string
	policy string
	docker string // Docker manifest file
	clock  *clock
	inv    *inventory
	exec   *executor
	client query.Client
	tick   time.Duration // the planner's Tick; default 20ms
}

func newEnv(t testing.TB, policyYAML string) *env {
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	name, err := pgtest.NewDatabase(ctx, t, plannerdb.Schema, plannerdb.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	policyFile := ""
	if policyYAML != "" {
		policyFile = filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(policyFile, []byte(policyYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{
		t: t, bus: &eventstest.Bus{Server: srv, Conn: nc, JS: js}, url: srv.ClientURL(), dbURL: pgtest.URL(t, name),
		policy: policyFile, clock: &clock{t: time.Now().UTC()}, client: query.Client{NC: nc},
	}
	e.inv = startInventory(t, nc)
	e.exec = startExecutor(t, js)
	return e
}

// run starts a planner instance; the returned stop cancels it and waits for its shutdown.
func (e *env) run(name string) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("instance", name)
	}
	tick := e.tick
	if tick == 0 {
		tick = 20 * time.Millisecond
	}
	cfg := planner.Config{
		Common:     service.Common{Bus: events.BusConfig{URL: e.url}, DatabaseURL: e.dbURL, HTTPAddr: "127.0.0.1:0"},
		PolicyFile: e.policy, Tick: tick, Now: e.clock.Now, DockerManifest: e.docker,
	}
	go func() { done <- planner.Run(ctx, cfg, logger) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("planner %s: %v", name, err)
				}
			case <-time.After(60 * time.Second):
				e.t.Errorf("planner %s did not stop", name)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// ---- inventory responder ----

type inventory struct {
	mu sync.Mutex
	// groupedLimit, when set, is the largest grouped limit the stand-in accepts, as an
	// inventory of an earlier version answers.
	groupedLimit int
	exposed      []query.ExposedHost
	hosts        map[string]query.HostDetail
	calls        int
	hostAsked    []query.HostRequest // every host request, in order
}

// standInGroupedPage is the most hosts the stand-in puts on a grouped page: fewer than asked
// for, as the inventory's page ends sooner when its answer grows large.
const standInGroupedPage = 10_000

func startInventory(t testing.TB, nc *nats.Conn) *inventory {
	inv := &inventory{hosts: map[string]query.HostDetail{}}
	svc, err := micro.AddService(nc, micro.Config{Name: query.ServiceInventory, Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	add := func(name, subject string, h func([]byte) (any, error)) {
		err := svc.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) {
			out, err := h(r.Data())
			if err != nil {
				_ = r.Error("400", err.Error(), nil)
				return
			}
			_ = r.RespondJSON(out)
		}), micro.WithEndpointSubject(subject))
		if err != nil {
			t.Fatal(err)
		}
	}
	add("exposure", query.SubjectExposure, func(b []byte) (any, error) {
		var req query.ExposureRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return nil, err
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		inv.calls++
		if req.Grouped && inv.groupedLimit > 0 && req.Limit > inv.groupedLimit {
			return nil, fmt.Errorf("limit: %d is not between 1 and %d", req.Limit, inv.groupedLimit)
		}
		from, _ := strconv.Atoi(req.Cursor)
		most := query.MaxPage
		if req.Grouped {
			most = standInGroupedPage
		}
		n := max(1, min(req.Limit, most))
		out := query.ExposureResponse{Hosts: inv.exposed[min(from, len(inv.exposed)):min(from+n, len(inv.exposed))]}
		if req.Grouped {
			out.Hosts, out.Groups = []query.ExposedHost{}, query.GroupExposure(out.Hosts)
		}
		if from+n < len(inv.exposed) {
			out.NextCursor = strconv.Itoa(from + n)
		}
		return out, nil
	})
	add("hosts", query.SubjectHosts, func(b []byte) (any, error) {
		var req query.HostsRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return nil, err
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		var out query.HostsResponse
		for _, id := range slices.Sorted(mapsKeys(inv.hosts)) {
			h := inv.hosts[id]
			if req.Fleet != "" && h.Fleet != req.Fleet || len(req.IDs) > 0 && !slices.Contains(req.IDs, id) {
				continue
			}
			ok := true
			for k, v := range req.Tags {
				ok = ok && h.Tags[k] == v
			}
			if ok {
				out.Hosts = append(out.Hosts, h.Host)
			}
		}
		return out, nil
	})
	add("host", query.SubjectHost, func(b []byte) (any, error) {
		var req query.HostRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return nil, err
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		inv.hostAsked = append(inv.hostAsked, req)
		h, ok := inv.hosts[req.ID]
		if !ok {
			return nil, fmt.Errorf("no host %s", req.ID)
		}
		if !req.WithPackages {
			h.Packages = nil
		}
		return h, nil
	})
	return inv
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// engine is a rollout engine on the environment's database and inventory, called directly
// (no consumer), with its pool; now is its clock (nil: the real one).
func (e *env) engine(now func() time.Time) (*rollout.Engine, *pgxpool.Pool) {
	e.t.Helper()
	pool, err := db.Connect(context.Background(), e.dbURL, plannerdb.Schema)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	pol, _, err := planner.LoadPolicy(e.policy)
	if err != nil {
		e.t.Fatal(err)
	}
	return &rollout.Engine{Pool: pool, Policy: pol, Inventory: query.Client{NC: e.bus.Conn}, Producer: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now}, pool
}

// expose makes n hosts of an inventory fleet exposed to advisory adv through libssl3. They
// share one exposed list, as the inventory's hosts of one package set do.
func (inv *inventory) expose(fleet string, tags map[string]string, n int, adv string) []string {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var ids []string
	pkgs := []query.ExposedPackage{{Name: "libssl3", Installed: "3.0.11-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1", Fixed: "3.0.13-1~deb12u1", AdvisoryID: adv}}
	for i := range n {
		id := fmt.Sprintf("%s-%03d", fleet, i)
		ids = append(ids, id)
		inv.exposed = append(inv.exposed, query.ExposedHost{
			HostID: id, Name: id, Fleet: fleet, OS: events.OSRelease{ID: "debian", VersionID: "12"}, Packages: pkgs,
		})
		inv.hosts[id] = query.HostDetail{
			Host:     query.Host{ID: id, Name: id, Fleet: fleet, Tags: tags, OS: events.OSRelease{ID: "debian", VersionID: "12"}},
			Packages: []query.Package{{Name: "libssl3", Version: "3.0.11-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1", Status: "install ok installed"}},
		}
	}
	// The inventory answers in host id order.
	slices.SortStableFunc(inv.exposed, func(a, b query.ExposedHost) int { return strings.Compare(a.HostID, b.HostID) })
	return ids
}

// setPackages sets a host's packages and the package set the inventory names them by.
func (inv *inventory) setPackages(id, set string, pkgs ...query.Package) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	h := inv.hosts[id]
	h.PackageSet, h.Packages = set, pkgs
	inv.hosts[id] = h
}

// asked returns the host requests made for one host.
func (inv *inventory) asked(id string) []query.HostRequest {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var out []query.HostRequest
	for _, r := range inv.hostAsked {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

// setComponents sets the Docker/Weave versions the inventory reports for a host.
func (inv *inventory) setComponents(id string, c ...events.Component) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	h := inv.hosts[id]
	h.Components = c
	inv.hosts[id] = h
}

func advisory(id string, sev events.Severity) events.SecurityAdvisoryPublished {
	return events.SecurityAdvisoryPublished{
		AdvisoryID: id, Revision: 1, Source: "test", Severity: sev, Published: time.Now().UTC(), Modified: time.Now().UTC(),
		Affected: []events.Affected{{Ecosystem: "debian", Release: "12", Package: "openssl", FixedVersion: "3.0.13-1~deb12u1"}},
	}
}

// ---- test executor ----

type executor struct {
	mu       sync.Mutex
	jobs     []events.UpgradeRequested // in arrival order, every delivery
	ids      map[string]int            // job id -> deliveries
	bus      jetstream.JetStream
	inFlight map[string]bool
	maxSeen  int
}

func startExecutor(t testing.TB, js jetstream.JetStream) *executor {
	x := &executor{ids: map[string]int{}, bus: js, inFlight: map[string]bool{}}
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{Durable: "test-executor", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		env, err := events.DecodeEnvelope(msg.Data())
		var job events.UpgradeRequested
		if err == nil {
			err = events.DecodeData(env, &job)
		}
		if err != nil {
			t.Errorf("bad job: %v", err)
			_ = msg.Term()
			return
		}
		x.mu.Lock()
		x.jobs = append(x.jobs, job)
		x.ids[job.JobID]++
		x.inFlight[job.HostID] = true
		x.maxSeen = max(x.maxSeen, len(x.inFlight))
		x.mu.Unlock()
		_ = msg.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return x
}

func (x *executor) snapshot() []events.UpgradeRequested {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.jobs)
}

func (x *executor) count() int { return len(x.snapshot()) }

// maxInFlight is the most hosts that had a job at once.
func (x *executor) maxInFlight() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.maxSeen
}

// open returns the jobs not yet reported on.
func (x *executor) open() []events.UpgradeRequested {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []events.UpgradeRequested
	for _, j := range x.jobs {
		if x.inFlight[j.HostID] {
			out = append(out, j)
		}
	}
	return out
}

func (x *executor) report(t testing.TB, job events.UpgradeRequested, ok bool) events.Message {
	t.Helper()
	x.mu.Lock()
	delete(x.inFlight, job.HostID)
	x.mu.Unlock()
	var e events.Event = events.UpgradeCompleted{JobID: job.JobID, RolloutID: job.RolloutID, HostID: job.HostID, Packages: []events.PackageResult{{Name: "libssl3", After: "3.0.13-1~deb12u1"}}}
	if !ok {
		e = events.UpgradeFailed{JobID: job.JobID, RolloutID: job.RolloutID, HostID: job.HostID, Reason: events.FailAptError, Message: "dpkg failed"}
	}
	m, err := events.NewDerived(e, events.Origin{Producer: "test-executor", CorrelationID: job.RolloutID}, time.Now(), job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Publish(context.Background(), x.bus, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// duplicates returns job ids delivered more than once.
func (x *executor) duplicates() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for id, n := range x.ids {
		if n > 1 {
			out = append(out, id)
		}
	}
	return out
}

// ---- helpers ----

// events of a type on the ROLLOUTS stream.
func (e *env) rolloutEvents(typ string) []events.Envelope {
	var out []events.Envelope
	for _, env := range e.bus.Envelopes(e.t, events.StreamRollouts) {
		if env.Type == typ {
			out = append(out, env)
		}
	}
	return out
}

func decode[E events.Event](t testing.TB, env events.Envelope) E {
	t.Helper()
	var e E
	if err := events.DecodeData(env, any(&e).(events.Event)); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) waitEvent(typ string, n int) []events.Envelope {
	e.t.Helper()
	var got []events.Envelope
	eventstest.WaitFor(e.t, 30*time.Second, fmt.Sprintf("%d %s", n, typ), func() bool {
		got = e.rolloutEvents(typ)
		return len(got) >= n
	})
	return got
}

// waitProcessed waits until the planner has handled m: its id is in the planner's inbox.
func (e *env) waitProcessed(m events.Message) {
	e.t.Helper()
	ctx := context.Background()
	pool, err := db.Connect(ctx, e.dbURL, plannerdb.Schema)
	if err != nil {
		e.t.Fatal(err)
	}
	defer pool.Close()
	eventstest.WaitFor(e.t, 30*time.Second, "event "+m.ID+" handled", func() bool {
		var seen bool
		err := pool.QueryRow(ctx, "select exists (select 1 from inbox where event_id = $1)", m.ID).Scan(&seen)
		return err == nil && seen
	})
}

func (e *env) waitJobs(n int) []events.UpgradeRequested {
	e.t.Helper()
	eventstest.WaitFor(e.t, 30*time.Second, fmt.Sprintf("%d jobs", n), func() bool { return e.exec.count() >= n })
	return e.exec.snapshot()
}

// drive plays the executor until the rollout completes, failing the hosts in fail.
func (e *env) drive(fail map[string]bool) events.RolloutCompleted {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if done := e.rolloutEvents("RolloutCompleted"); len(done) > 0 {
			return decode[events.RolloutCompleted](e.t, done[len(done)-1])
		}
		for _, j := range e.exec.open() {
			e.exec.report(e.t, j, !fail[j.HostID])
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatal("rollout did not complete")
	return events.RolloutCompleted{}
}

func (e *env) rollout(id string) query.RolloutDetail {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := e.client.Rollout(ctx, query.RolloutRequest{ID: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) deadLetters() []events.DeadLetter {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.bus.JS.Stream(ctx, events.StreamDLQ)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []events.DeadLetter
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var dl events.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}
