package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/services/advisory-ingest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The service as tools/allinone runs it, with a configured feed: the feed's advisory is
// published; a submission that passes the contract but not ingest's checks is recorded as
// an ingest error and dead-lettered with the reason.
func TestConfiguredFeedAndRefusedSubmission(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	bus := &eventstest.Bus{Server: srv, Conn: nc, JS: js}
	name, err := pgtest.NewDatabase(ctx, t, ingestdb.Schema, ingestdb.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	dbURL := pgtest.URL(t, name)
	port := freePort(t)
	cfg := ingest.Config{
		Common: service.Common{Bus: events.BusConfig{URL: srv.ClientURL()}, DatabaseURL: dbURL, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)},
		Feeds:  []string{filepath.Join("testdata", "osv", "DSA-135.json")},
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ingest.Run(rctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("advisory-ingest stopped with %v", err)
		}
	})
	eventstest.WaitFor(t, time.Minute, "the feed's advisory on ADVISORIES", func() bool {
		return len(bus.Envelopes(t, events.StreamAdvisories)) == 1
	})
	var ev events.SecurityAdvisoryPublished
	if err := events.DecodeData(bus.Envelopes(t, events.StreamAdvisories)[0], &ev); err != nil || ev.AdvisoryID != "DSA-135" {
		t.Fatalf("event %+v, %v", ev, err)
	}

	bus.Publish(t, events.AdvisorySubmitted{
		AdvisoryID: "DSA 1 (not an id)", Source: "test", Origin: "test-feed#1", Severity: events.SeverityHigh,
		Modified: time.Now(),
		Affected: []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12", Package: "openssl", FixedVersion: "3.0.1-1"}},
	}, "DSA-1")
	eventstest.WaitFor(t, time.Minute, "the refused submission on DLQ", func() bool {
		return len(bus.Envelopes(t, events.StreamDLQ)) == 1
	})
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var source, origin, reason string
	err = conn.QueryRow(ctx, "select source, origin, reason from ingest.ingest_errors").Scan(&source, &origin, &reason)
	if err != nil || source != ingest.SourceFeedsStream || origin != "test-feed#1" || reason == "" {
		t.Errorf("ingest error %q %q %q, %v", source, origin, reason, err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/advisories/DSA-135", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /advisories/DSA-135: %s", resp.Status)
	}
}
