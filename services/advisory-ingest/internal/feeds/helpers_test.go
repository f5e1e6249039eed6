package feeds_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/feeds"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/pipeline"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testdata = "../../testdata"

// env is the pipeline on a fresh database and JetStream; the outbox is published with
// flush, so what is on the stream afterwards is exactly what was committed.
type env struct {
	t      testing.TB
	ctx    context.Context
	pool   *pgxpool.Pool
	bus    *eventstest.Bus
	st     *store.Store
	reader *feeds.Reader
	relay  *outbox.Relay
}

func setup(t testing.TB) *env { return setupWith(t, pipeline.Config{}) }

func setupWith(t testing.TB, cfg pipeline.Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, pool: pgtest.New(t, ingestdb.Schema, ingestdb.Migrations), bus: eventstest.Start(t)}
	e.st = store.New(e.pool)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := pipeline.New(e.st, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	e.reader = &feeds.Reader{Pipeline: p, Logger: logger, MinBackoff: 10 * time.Millisecond}
	if e.relay, err = outbox.NewRelay(e.pool, e.bus.JS, outbox.Config{BatchSize: 1000}, logger); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) read(path string) pipeline.Stats {
	e.t.Helper()
	st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path})
	if err != nil {
		e.t.Fatalf("read %s: %v", path, err)
	}
	return st
}

// published flushes the outbox and returns every event on the ADVISORIES stream.
func (e *env) published() []events.Envelope {
	e.t.Helper()
	if err := e.relay.Flush(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return e.bus.Envelopes(e.t, events.StreamAdvisories)
}

func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, "select count(*) from "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// writeFile writes a file under dir, creating directories.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replace edits a sample, failing if old is not in it.
func replace(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q not in sample", old)
	}
	return strings.Replace(s, old, new, 1)
}
