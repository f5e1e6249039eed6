package feedpub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	ingest "github.com/patchfleet/patchfleet/services/advisory-ingest"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/feed"
	"github.com/patchfleet/patchfleet/tools/feedpub"
	"github.com/patchfleet/patchfleet/tools/freeport"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const samples = "../../services/advisory-ingest/testdata"

type sys struct {
	bus  *eventstest.Bus
	base string
	q    query.Client
}

// start runs advisory-ingest as tools/allinone does, on its own JetStream and database.
func start(t *testing.T) *sys {
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
	name, err := pgtest.NewDatabase(ctx, t, ingestdb.Schema, ingestdb.Migrations)
	if err != nil {
		t.Fatal(err)
	}
	port := freeport.For(t)
	cfg := ingest.Config{Common: service.Common{Bus: events.BusConfig{URL: srv.ClientURL()}, DatabaseURL: pgtest.URL(t, name),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)}}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- ingest.Run(rctx, cfg, logger) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("advisory-ingest stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("advisory-ingest did not stop in 30s")
		}
	})
	s := &sys{bus: &eventstest.Bus{Server: srv, Conn: nc, JS: js}, base: fmt.Sprintf("http://127.0.0.1:%d", port), q: query.Client{NC: nc}}
	eventstest.WaitFor(t, time.Minute, "advisory-ingest ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("advisory-ingest stopped: %v", err)
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

func (s *sys) count(t *testing.T, stream string) uint64 {
	t.Helper()
	st, err := s.bus.JS.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// settled waits until ingest has acknowledged everything on FEEDS, then flushes nothing:
// the outbox relay runs in the service, so it also waits for ADVISORIES to reach want.
func (s *sys) settled(t *testing.T, want uint64) {
	t.Helper()
	eventstest.WaitFor(t, time.Minute, "FEEDS consumed", func() bool {
		c, err := s.bus.JS.Consumer(context.Background(), events.StreamFeeds, ingest.Name+"-feeds")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	eventstest.WaitFor(t, time.Minute, fmt.Sprintf("%d events on ADVISORIES", want), func() bool { return s.count(t, events.StreamAdvisories) >= want })
}

func publish(t *testing.T, s *sys, sources ...string) feedpub.Result {
	t.Helper()
	var bads []string
	res, err := feedpub.Run(context.Background(), feedpub.Config{Sources: sources}, s.bus.JS, func(b feed.Bad) { bads = append(bads, b.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	if len(bads) > 0 {
		t.Logf("bad records: %v", bads)
	}
	return res
}

// feedpub → FEEDS → advisory-ingest → ADVISORIES: each sample once; publishing again
// publishes nothing new; a changed advisory becomes revision 2; queries answer over NATS
// and HTTP.
func TestPublishedFeedIsIngestedOnceAndQueryable(t *testing.T) {
	s := start(t)
	res := publish(t, s, samples)
	if res.Read != 21 || res.Published != 21 || res.Bad != 0 || res.ExitCode(nil) != feedpub.ExitOK {
		t.Fatalf("first publish: %+v", res)
	}
	s.settled(t, 21)

	again := publish(t, s, samples)
	if again.Duplicate != 21 {
		t.Errorf("second publish: %+v, want 21 duplicates", again)
	}
	s.settled(t, 21)
	if n := s.count(t, events.StreamAdvisories); n != 21 {
		t.Fatalf("%d events on ADVISORIES after publishing again, want 21", n)
	}

	// A changed advisory: a new FEEDS event (its content hash differs), revision 2.
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(samples, "osv", "DSA-135.json"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `"fixed": "2.8.9-2"`, `"fixed": "2.8.9-3"`, 1)
	changed = strings.Replace(changed, `"modified": "2023-10-16T00:05:19.431840Z"`, `"modified": "2024-01-01T00:00:00Z"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "DSA-135.json"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	publish(t, s, dir)
	s.settled(t, 22)
	envs := s.bus.Envelopes(t, events.StreamAdvisories)
	var last events.SecurityAdvisoryPublished
	if err := events.DecodeData(envs[len(envs)-1], &last); err != nil {
		t.Fatal(err)
	}
	if last.AdvisoryID != "DSA-135" || last.Revision != 2 {
		t.Errorf("last event: %s revision %d, want DSA-135 revision 2", last.AdvisoryID, last.Revision)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adv, err := s.q.Advisory(ctx, query.AdvisoryRequest{ID: "DSA-135"})
	if err != nil || adv.Revision != 2 || adv.Affected[0].FixedVersion != "2.8.9-3" || adv.ContentHash == "" {
		t.Errorf("advisory DSA-135: %+v, %v", adv, err)
	}
	if _, err := s.q.Advisory(ctx, query.AdvisoryRequest{ID: "DSA-0"}); err == nil || err.(*query.RemoteError).Code != 404 {
		t.Errorf("unknown advisory: %v", err)
	}
	byCVE, err := s.q.AdvisoriesByCVE(ctx, query.AdvisoriesByCVERequest{CVE: "CVE-2002-0653"})
	if err != nil || len(byCVE.Advisories) != 1 || byCVE.Advisories[0].AdvisoryID != "DSA-135" {
		t.Errorf("by CVE: %+v, %v", byCVE, err)
	}
	// Every advisory, three pages of at most 8, oldest first.
	var ids []string
	var prev time.Time
	req := query.AdvisoriesSinceRequest{Since: time.Time{}, Limit: 8}
	for page := 0; ; page++ {
		resp, err := s.q.AdvisoriesSince(ctx, req)
		if err != nil || page > 5 {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, a := range resp.Advisories {
			if a.Modified.Before(prev) {
				t.Errorf("%s out of order", a.AdvisoryID)
			}
			prev = a.Modified
			ids = append(ids, a.AdvisoryID)
		}
		if resp.NextCursor == "" {
			break
		}
		req.Cursor = resp.NextCursor
	}
	if len(ids) != 21 {
		t.Errorf("%d advisories over the pages, want 21", len(ids))
	}
	recent, err := s.q.AdvisoriesSince(ctx, query.AdvisoriesSinceRequest{Since: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	for _, a := range recent.Advisories {
		if a.Modified.Before(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s modified %s, before since", a.AdvisoryID, a.Modified)
		}
	}
	if err != nil || len(recent.Advisories) == 0 {
		t.Errorf("since 2024: %d, %v", len(recent.Advisories), err)
	}

	// The same over HTTP.
	for path, want := range map[string]string{
		"/advisories/DSA-135":                    `"advisory_id":"DSA-135"`,
		"/advisories?cve=CVE-2002-0653":          `"advisory_id":"DSA-135"`,
		"/advisories?since=2024-01-01T00:00:00Z": `"advisory_id":"DSA-135"`,
		"/advisories/NOPE-1":                     `"code":404`,
		"/advisories?since=yesterday":            `"code":400`,
	} {
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if !strings.Contains(body.String(), want) {
			t.Errorf("GET %s: %d %s, want %s", path, resp.StatusCode, body.String(), want)
		}
	}
}

func TestDryRunPrintsAndBadRecordsArePartial(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(samples, "osv", "DSA-135.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "DSA-135.json"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"id": "DSA-1", "modified": `), 0o644)
	var out, progress bytes.Buffer
	var bads []feed.Bad
	res, err := feedpub.Run(context.Background(), feedpub.Config{Sources: []string{dir}, DryRun: true, Out: &out, Progress: &progress},
		nil, func(b feed.Bad) { bads = append(bads, b) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 1 || res.Bad != 1 || res.ExitCode(nil) != feedpub.ExitPartial {
		t.Errorf("result %+v, exit %d", res, res.ExitCode(nil))
	}
	if len(bads) != 1 || !strings.HasSuffix(bads[0].Origin, "broken.json") {
		t.Errorf("bad records: %v", bads)
	}
	sc := bufio.NewScanner(&out)
	var lines []feedpub.DryRunLine
	for sc.Scan() {
		var l feedpub.DryRunLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0].Subject != "pf.feeds.AdvisorySubmitted.v1" {
		t.Fatalf("dry run printed %+v", lines)
	}
	env, err := events.DecodeEnvelope(lines[0].Envelope)
	if err != nil || env.ID != lines[0].MsgID {
		t.Fatalf("envelope %+v, %v", env, err)
	}
	var sub events.AdvisorySubmitted
	if err := events.DecodeData(env, &sub); err != nil || sub.AdvisoryID != "DSA-135" {
		t.Errorf("submission %+v, %v", sub, err)
	}
	if !strings.Contains(progress.String(), "feedpub: done: 1 read, 1 published") {
		t.Errorf("progress: %q", progress.String())
	}
	missing, err := feedpub.Run(context.Background(), feedpub.Config{Sources: []string{filepath.Join(dir, "missing")}, DryRun: true}, nil, nil)
	if missing.ExitCode(err) != feedpub.ExitFailure {
		t.Errorf("missing source: %v", err)
	}
}
