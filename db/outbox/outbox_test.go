package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const waitLimit = 20 * time.Second

type fixture struct {
	t    testing.TB
	ctx  context.Context
	pool *pgxpool.Pool
	bus  *eventstest.Bus
}

func setup(t testing.TB) *fixture {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return &fixture{t: t, ctx: ctx, pool: pgtest.New(t, ingestdb.Schema, ingestdb.Migrations), bus: eventstest.Start(t)}
}

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// event returns a new, valid event message; n tells events apart in failures.
func event(t testing.TB, n int) events.Message {
	t.Helper()
	m, err := events.New(events.AdvisoryWithdrawn{
		AdvisoryID: fmt.Sprintf("DSA-%d-1", n), Revision: 1, Withdrawn: time.Now(),
	}, events.Origin{Producer: "outbox-test", CorrelationID: fmt.Sprintf("DSA-%d-1", n)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// commit adds msgs to the outbox in one transaction and commits it.
func (f *fixture) commit(msgs ...events.Message) {
	f.t.Helper()
	if err := db.InTx(f.ctx, f.pool, func(tx pgx.Tx) error { return outbox.Add(f.ctx, tx, msgs...) }); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) relay(cfg outbox.Config) *outbox.Relay {
	f.t.Helper()
	r, err := outbox.NewRelay(f.pool, f.bus.JS, cfg, logger(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// run runs r until the test ends (or stop is called).
func (f *fixture) run(r *outbox.Relay) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("relay run: %v", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

// onBus returns the ids of the events on the ADVISORIES stream, in stream order.
func (f *fixture) onBus() []string {
	var ids []string
	for _, env := range f.bus.Envelopes(f.t, events.StreamAdvisories) {
		ids = append(ids, env.ID)
	}
	return ids
}

func (f *fixture) waitOnBus(n int) []string {
	f.t.Helper()
	var ids []string
	eventstest.WaitFor(f.t, waitLimit, fmt.Sprintf("%d events on the bus", n), func() bool {
		ids = f.onBus()
		return len(ids) >= n
	})
	return ids
}

func (f *fixture) unpublished() int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(f.ctx, "select count(*) from outbox where published_at is null").Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) rows() int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(f.ctx, "select count(*) from outbox").Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func ids(msgs []events.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func TestCommittedEventsReachTheBusOnceInOrderWokenByNotify(t *testing.T) {
	f := setup(t)
	// An hour between polls: only the commit's NOTIFY can wake the relay in time.
	f.run(f.relay(outbox.Config{PollInterval: time.Hour}))

	var want []events.Message
	for i := range 3 {
		batch := []events.Message{event(t, 2*i), event(t, 2*i+1)}
		f.commit(batch...)
		want = append(want, batch...)
	}
	got := f.waitOnBus(len(want))
	if !slices.Equal(got, ids(want)) {
		t.Fatalf("bus has %v, want %v", got, ids(want))
	}
	eventstest.WaitFor(t, waitLimit, "rows marked published", func() bool { return f.unpublished() == 0 })
}

func TestUncommittedEventsNeverReachTheBus(t *testing.T) {
	f := setup(t)
	f.run(f.relay(outbox.Config{PollInterval: 20 * time.Millisecond}))
	if _, err := f.pool.Exec(f.ctx, `create table effect (
		k int constraint effect_k_unique unique deferrable initially deferred)`); err != nil {
		t.Fatal(err)
	}

	rolledBack := event(t, 1)
	boom := errors.New("boom")
	err := db.InTx(f.ctx, f.pool, func(tx pgx.Tx) error {
		if err := outbox.Add(f.ctx, tx, rolledBack); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want boom", err)
	}

	// Every statement succeeds; the commit itself fails on the deferred constraint.
	failedCommit := event(t, 2)
	err = db.InTx(f.ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(f.ctx, "insert into effect values (1), (1)"); err != nil {
			return err
		}
		return outbox.Add(f.ctx, tx, failedCommit)
	})
	if err == nil {
		t.Fatal("InTx with a violated deferred constraint succeeded")
	}

	// The relay publishes in order, so once an event committed afterwards is on the bus,
	// anything committed before it would be too.
	marker := event(t, 3)
	f.commit(marker)
	got := f.waitOnBus(1)
	if !slices.Equal(got, []string{marker.ID}) {
		t.Fatalf("bus has %v, want only the committed %s (not %s, %s)", got, marker.ID, rolledBack.ID, failedCommit.ID)
	}
	if n := f.rows(); n != 1 {
		t.Fatalf("outbox has %d rows, want 1", n)
	}
}

// A relay that crashed after JetStream acknowledged an event and before marking it
// published publishes it again; JetStream keeps one copy.
func TestRepublishingAfterACrashIsDeduplicated(t *testing.T) {
	f := setup(t)
	want := []events.Message{event(t, 1), event(t, 2), event(t, 3)}
	f.commit(want...)
	// The crashed relay got as far as publishing the first two.
	for _, m := range want[:2] {
		if err := events.Publish(f.ctx, f.bus.JS, m); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.unpublished(); n != 3 {
		t.Fatalf("%d unpublished rows, want 3", n)
	}

	f.run(f.relay(outbox.Config{PollInterval: 20 * time.Millisecond}))
	eventstest.WaitFor(t, waitLimit, "rows marked published", func() bool { return f.unpublished() == 0 })
	if got := f.onBus(); !slices.Equal(got, ids(want)) {
		t.Fatalf("bus has %v, want %v once each", got, ids(want))
	}
}

func TestSeveralRelaysKeepOrderAndHandOver(t *testing.T) {
	f := setup(t)
	cfg := outbox.Config{PollInterval: 50 * time.Millisecond}
	stopFirst := f.run(f.relay(cfg))
	f.run(f.relay(cfg))
	f.run(f.relay(cfg))

	var want []events.Message
	var wg sync.WaitGroup
	for i := range 30 {
		m := event(t, i)
		want = append(want, m)
		f.commit(m)
		if i == 10 {
			// Stop one relay mid-stream, in the background: whichever relay publishes,
			// nothing is lost, duplicated or reordered.
			wg.Go(stopFirst)
		}
	}
	wg.Wait()
	got := f.waitOnBus(len(want))
	if !slices.Equal(got, ids(want)) {
		t.Fatalf("bus has %v,\nwant %v", got, ids(want))
	}
}

func TestFlushPublishesWithoutARunningRelay(t *testing.T) {
	f := setup(t)
	want := []events.Message{event(t, 1), event(t, 2)}
	f.commit(want...)
	if err := f.relay(outbox.Config{}).Flush(f.ctx); err != nil {
		t.Fatal(err)
	}
	// Flush returned: the events are on the bus now, no waiting.
	if got := f.onBus(); !slices.Equal(got, ids(want)) {
		t.Fatalf("bus has %v, want %v", got, ids(want))
	}
	if n := f.unpublished(); n != 0 {
		t.Fatalf("%d unpublished rows after flush", n)
	}
}

func TestFlushWaitsForTheRunningRelay(t *testing.T) {
	f := setup(t)
	f.run(f.relay(outbox.Config{PollInterval: time.Hour}))
	// The running relay holds the lock: Flush must have it publish and wait for it.
	want := []events.Message{event(t, 1), event(t, 2)}
	f.commit(want...)
	if err := f.relay(outbox.Config{}).Flush(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.unpublished(); n != 0 {
		t.Fatalf("%d unpublished rows after flush", n)
	}
	if got := f.onBus(); !slices.Equal(got, ids(want)) {
		t.Fatalf("bus has %v, want %v", got, ids(want))
	}
}

func TestNothingIsLostWhileNATSIsDown(t *testing.T) {
	f := setup(t)
	nc, err := f.bus.Server.Connect("down")
	if err != nil {
		t.Fatal(err)
	}
	downJS, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close() // every publish through downJS fails

	reg := prometheus.NewRegistry()
	down, err := outbox.NewRelay(f.pool, downJS, outbox.Config{
		PollInterval: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Registerer: reg,
	}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := f.run(down)
	m := event(t, 1)
	f.commit(m)
	eventstest.WaitFor(t, waitLimit, "repeated publish attempts", func() bool {
		return counter(t, reg, "patchfleet_outbox_publish_errors_total") >= 3 // it retries, backing off
	})
	stop()
	if n := f.unpublished(); n != 1 {
		t.Fatalf("%d unpublished rows while NATS was down, want 1", n)
	}

	// NATS is back (a relay with a working connection): the event goes out.
	if err := f.relay(outbox.Config{}).Flush(f.ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.onBus(); !slices.Equal(got, []string{m.ID}) {
		t.Fatalf("bus has %v, want %v", got, []string{m.ID})
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestPruneDeletesOnlyOldPublishedRows(t *testing.T) {
	f := setup(t)
	f.commit(event(t, 1), event(t, 2), event(t, 3))
	r := f.relay(outbox.Config{Retention: time.Hour})
	if err := r.Flush(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.commit(event(t, 4)) // unpublished: must survive however old
	if _, err := f.pool.Exec(f.ctx, `update outbox set published_at = now() - interval '2 hours' where seq = (select min(seq) from outbox)`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(f.ctx, `update outbox set created_at = now() - interval '2 days' where published_at is null`); err != nil {
		t.Fatal(err)
	}
	if err := r.Prune(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.rows(); n != 3 {
		t.Fatalf("outbox has %d rows after pruning, want 3", n)
	}
	if n := f.unpublished(); n != 1 {
		t.Fatalf("%d unpublished rows after pruning, want 1", n)
	}
}

func TestAddingAnEventTwiceStoresItOnce(t *testing.T) {
	f := setup(t)
	m := event(t, 1)
	f.commit(m)
	f.commit(m) // a derived id produced again
	if n := f.rows(); n != 1 {
		t.Fatalf("outbox has %d rows, want 1", n)
	}
	// Again within a batch (another statement), and twice in it.
	other := event(t, 2)
	f.commit(other, m, other)
	if n := f.rows(); n != 2 {
		t.Fatalf("outbox has %d rows, want 2", n)
	}
}

func TestAddRejectsAnIncompleteMessage(t *testing.T) {
	f := setup(t)
	incomplete := events.Message{ID: "x", Subject: "pf.advisories.x.v1"}
	for _, msgs := range [][]events.Message{{incomplete}, {event(t, 1), incomplete}} {
		err := db.InTx(f.ctx, f.pool, func(tx pgx.Tx) error { return outbox.Add(f.ctx, tx, msgs...) })
		if err == nil {
			t.Fatalf("Add accepted a message without data among %d", len(msgs))
		}
	}
	if n := f.rows(); n != 0 {
		t.Fatalf("outbox has %d rows, want 0", n)
	}
}

func TestRelayReconnectsAfterLosingItsConnection(t *testing.T) {
	f := setup(t)
	f.run(f.relay(outbox.Config{PollInterval: time.Hour, MinBackoff: 10 * time.Millisecond}))
	first := event(t, 1)
	f.commit(first)
	f.waitOnBus(1)

	// Kill the publishing relay's session (it holds the advisory lock); the commit that
	// follows notifies nobody, and is published when the relay reconnects.
	var killed bool
	err := f.pool.QueryRow(f.ctx, `select pg_terminate_backend(pid) from pg_locks
		where locktype = 'advisory' and granted and database = (select oid from pg_database where datname = current_database())`).Scan(&killed)
	if err != nil || !killed {
		t.Fatalf("terminate the relay's session: %v, %v", killed, err)
	}
	second := event(t, 2)
	f.commit(second)
	if got := f.waitOnBus(2); !slices.Equal(got, []string{first.ID, second.ID}) {
		t.Fatalf("bus has %v, want %v", got, []string{first.ID, second.ID})
	}
}
