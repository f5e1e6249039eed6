package feeds_test

import (
	"archive/zip"
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/feeds"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/source"
)

// Every shared sample ingests, under its own distribution, and publishes exactly one
// SecurityAdvisoryPublished; reading the samples again publishes and writes nothing,
// whether the raw records are skipped or parsed and found unchanged.
func TestSharedSamplesPublishOnceAndRereadPublishesNothing(t *testing.T) {
	e := setup(t)
	first := e.read(testdata)
	if first.Bad != 0 || first.Published == 0 || first.Published != first.Read {
		t.Fatalf("first read: %+v", first)
	}
	envs := e.published()
	if len(envs) != first.Published {
		t.Fatalf("%d events on ADVISORIES, want %d", len(envs), first.Published)
	}
	seen := map[string]bool{}
	for _, env := range envs {
		var ev events.SecurityAdvisoryPublished
		if err := events.DecodeData(env, &ev); err != nil {
			t.Fatalf("event %s: %v", env.ID, err)
		}
		if seen[ev.AdvisoryID] || ev.Revision != 1 || env.CorrelationID != ev.AdvisoryID {
			t.Errorf("event %s: %s revision %d (seen before: %v)", env.ID, ev.AdvisoryID, ev.Revision, seen[ev.AdvisoryID])
		}
		seen[ev.AdvisoryID] = true
		stored, err := e.st.Advisory(e.ctx, ev.AdvisoryID)
		if err != nil {
			t.Fatal(err)
		}
		want := events.EcosystemUbuntu
		switch o := stored.Origin; {
		case strings.Contains(o, "/debian/"), strings.Contains(o, "/DSA-"), strings.Contains(o, "/DLA-"):
			want = events.EcosystemDebian
		case strings.Contains(o, "/GHSA-"):
			want = events.EcosystemRubyGems
		}
		for _, af := range ev.Affected {
			if af.Ecosystem != want {
				t.Errorf("%s (%s): %s %s is %s, want %s", ev.AdvisoryID, stored.Origin, af.Package, af.Release, af.Ecosystem, want)
			}
		}
	}
	revisions := e.count("advisory_revisions")

	// Again: the OSV records are skipped unparsed (same raw bytes); the tracker's are
	// parsed and found unchanged.
	again := e.read(testdata)
	if again.Published != 0 || again.Withdrawn != 0 || again.Unchanged != again.Read || again.Read >= first.Read {
		t.Errorf("second read: %+v", again)
	}
	// Without the raw digests every record is parsed, and still nothing changes.
	if _, err := e.pool.Exec(e.ctx, "delete from raw_records"); err != nil {
		t.Fatal(err)
	}
	third := e.read(testdata)
	if third.Published != 0 || third.Unchanged != first.Read {
		t.Errorf("read without raw digests: %+v", third)
	}
	if n := len(e.published()); n != len(envs) {
		t.Errorf("%d events after re-reading, want %d", n, len(envs))
	}
	if n := e.count("advisory_revisions"); n != revisions {
		t.Errorf("%d revisions after re-reading, want %d", n, revisions)
	}
}

func TestChangedAdvisoryPublishesNextRevisionAndWithdrawal(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	orig := readTestdata(t, "osv/DSA-135.json")
	path := writeFile(t, dir, "DSA-135.json", orig)
	if st := e.read(dir); st.Published != 1 {
		t.Fatalf("first read: %+v", st)
	}

	// Only the modified time moves: not a new revision.
	writeFile(t, dir, "DSA-135.json", replace(t, orig, `"modified": "2023-10-16T00:05:19.431840Z"`, `"modified": "2023-10-17T00:00:00Z"`))
	if st := e.read(dir); st.Published != 0 || st.Unchanged != 1 {
		t.Fatalf("read with a new modified time only: %+v", st)
	}

	changed := replace(t, orig, `"fixed": "2.8.9-2"`, `"fixed": "2.8.9-3"`)
	changed = replace(t, changed, `"modified": "2023-10-16T00:05:19.431840Z"`, `"modified": "2023-11-01T00:00:00Z"`)
	writeFile(t, dir, "DSA-135.json", changed)
	if st := e.read(dir); st.Published != 1 {
		t.Fatalf("read of the changed advisory: %+v", st)
	}

	withdrawn := replace(t, changed, `"modified": "2023-11-01T00:00:00Z"`, `"modified": "2023-12-01T00:00:00Z", "withdrawn": "2023-12-01T00:00:00Z"`)
	writeFile(t, dir, "DSA-135.json", withdrawn)
	if st := e.read(dir); st.Withdrawn != 1 {
		t.Fatalf("read of the withdrawn advisory: %+v", st)
	}

	envs := e.published()
	if len(envs) != 3 {
		t.Fatalf("%d events, want 3", len(envs))
	}
	var r1, r2 events.SecurityAdvisoryPublished
	var w events.AdvisoryWithdrawn
	for i, dst := range []events.Event{&r1, &r2, &w} {
		if err := events.DecodeData(envs[i], dst); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if r1.Revision != 1 || r2.Revision != 2 || w.Revision != 3 || w.AdvisoryID != "DSA-135" {
		t.Errorf("revisions %d, %d, withdrawn %d (%s)", r1.Revision, r2.Revision, w.Revision, w.AdvisoryID)
	}
	if r2.Affected[0].FixedVersion != "2.8.9-3" {
		t.Errorf("revision 2 fixed in %q", r2.Affected[0].FixedVersion)
	}
	stored, err := e.st.Advisory(e.ctx, "DSA-135")
	if err != nil || stored.Withdrawn == nil || stored.Revision != 3 || stored.Origin != path {
		t.Errorf("stored %+v, %v", stored, err)
	}
	if n := e.count("advisory_revisions"); n != 3 {
		t.Errorf("%d revisions stored, want 3", n)
	}
}

func TestBadRecordsAreReportedAndTheRestIngests(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	writeFile(t, dir, "DSA-135.json", readTestdata(t, "osv/DSA-135.json"))
	writeFile(t, dir, "GHSA.json", readTestdata(t, "osv/GHSA-8xww-x3g3-6jcv.json"))
	writeFile(t, dir, "broken.json", `{"id": "DSA-999", "modified": `)
	badVersion := replace(t, readTestdata(t, "osv/DSA-135.json"), `"fixed": "2.8.9-2"`, `"fixed": "2.8.9-2;rm -rf /"`)
	writeFile(t, dir, "badversion.json", replace(t, badVersion, `"id": "DSA-135"`, `"id": "DSA-136"`))

	st := e.read(dir)
	if st.Published != 2 || st.Bad != 2 {
		t.Fatalf("stats %+v, want 2 published and 2 bad", st)
	}
	rows, err := e.pool.Query(e.ctx, "select source, origin, reason from ingest_errors order by origin")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var src, origin, reason string
		if err := rows.Scan(&src, &origin, &reason); err != nil {
			t.Fatal(err)
		}
		if src != dir || reason == "" {
			t.Errorf("error row %q %q %q", src, origin, reason)
		}
		got = append(got, filepath.Base(origin)+": "+reason)
	}
	if len(got) != 2 || !strings.Contains(got[0], "DSA-136") || !strings.Contains(got[0], "version") || !strings.Contains(got[1], "broken.json: osv record DSA-999") {
		t.Errorf("ingest errors:\n%s", strings.Join(got, "\n"))
	}
	if n := len(e.published()); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// A polled URL is fetched in full once; after that the stored validators make every poll a
// 304, also for a new poller (a restarted service).
func TestPolledFeedIsNotRefetchedWhenUnchanged(t *testing.T) {
	e := setup(t)
	var zipBody bytes.Buffer
	zw := zip.NewWriter(&zipBody)
	for _, name := range []string{"osv/DSA-135.json", "osv/USN-6409-1.json"} {
		w, err := zw.Create(filepath.Base(name))
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(readTestdata(t, name)))
	}
	zw.Close()
	var full, notModified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		full.Add(1)
		w.Header().Set("ETag", `"v1"`)
		w.Write(zipBody.Bytes())
	}))
	defer srv.Close()
	feed := feeds.Feed{Location: srv.URL + "/all.zip"}

	changed, st, err := e.reader.Poll(e.ctx, &source.Poller{URL: feed.Location}, feed)
	if err != nil || !changed || st.Published != 2 {
		t.Fatalf("first poll: changed %v, %+v, %v", changed, st, err)
	}
	for range 2 { // the same poller, then a new one
		changed, st, err = e.reader.Poll(e.ctx, &source.Poller{URL: feed.Location}, feed)
		if err != nil || changed || st.Read != 0 {
			t.Fatalf("poll of the unchanged feed: changed %v, %+v, %v", changed, st, err)
		}
	}
	if full.Load() != 1 || notModified.Load() != 2 {
		t.Errorf("%d full responses and %d 304s, want 1 and 2", full.Load(), notModified.Load())
	}
	var etag string
	if err := e.pool.QueryRow(e.ctx, "select etag from feed_state where url = $1", feed.Location).Scan(&etag); err != nil || etag != `"v1"` {
		t.Errorf("stored etag %q, %v", etag, err)
	}
	if n := len(e.published()); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// A batch whose transaction fails is retried whole; until it commits nothing of it is
// stored or published, and it is published once.
func TestFailedBatchIsRetriedWholeAndPublishedOnce(t *testing.T) {
	e := setup(t)
	// The revisions insert fails the first two times: after the advisories were upserted in
	// the same transaction.
	if _, err := e.pool.Exec(e.ctx, `
		create sequence failures;
		create function fail_twice() returns trigger language plpgsql as $$
		begin
			if nextval('failures') <= 2 then raise exception 'injected failure'; end if;
			return new;
		end $$;
		create trigger fail_twice before insert on advisory_revisions for each statement execute function fail_twice();`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "DSA-135.json", readTestdata(t, "osv/DSA-135.json"))
	writeFile(t, dir, "USN-6409-1.json", readTestdata(t, "osv/USN-6409-1.json"))
	if st := e.read(dir); st.Published != 2 {
		t.Fatalf("read: %+v", st)
	}
	envs := e.published()
	if len(envs) != 2 || e.count("advisories") != 2 || e.count("advisory_revisions") != 2 {
		t.Errorf("%d events, %d advisories, %d revisions; want 2 each", len(envs), e.count("advisories"), e.count("advisory_revisions"))
	}
}

func TestBatchFailingEveryTimeLeavesNothingHalfWritten(t *testing.T) {
	e := setup(t)
	if _, err := e.pool.Exec(e.ctx, `
		create function always_fail() returns trigger language plpgsql as $$
		begin raise exception 'injected failure'; end $$;
		create trigger always_fail before insert on advisory_revisions for each statement execute function always_fail();`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "DSA-135.json", readTestdata(t, "osv/DSA-135.json"))
	_, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: dir})
	if err == nil || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("read error %v, want the injected failure naming the feed", err)
	}
	for _, table := range []string{"advisories", "advisory_revisions", "raw_records", "outbox"} {
		if n := e.count(table); n != 0 {
			t.Errorf("%d rows in %s after the failed batch", n, table)
		}
	}
}

// A zip dump read again skips its unchanged entries without decompressing them (their
// CRC-32 and size stand for the bytes); an entry whose bytes changed is read, and its new
// revision published.
func TestZipDumpRereadSkipsUnchangedEntries(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	dsa := readTestdata(t, "osv/DSA-135.json")
	dla := readTestdata(t, "osv/DLA-0010-1.json")
	writeZip := func(dsa string) {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for name, doc := range map[string]string{"DSA-135.json": dsa, "DLA-0010-1.json": dla} {
			w, err := zw.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(doc)); err != nil {
				t.Fatal(err)
			}
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, "all.zip", b.String())
	}
	writeZip(dsa)
	path := filepath.Join(dir, "all.zip")
	if st := e.read(path); st.Published != 2 {
		t.Fatalf("first read: %+v", st)
	}
	if st := e.read(path); st.Read != 0 || st.Published != 0 {
		t.Fatalf("unchanged dump read again: %+v, want nothing read", st)
	}
	// Same size, different bytes: "2.8.9-2" -> "2.8.9-3".
	writeZip(replace(t, dsa, `"fixed": "2.8.9-2"`, `"fixed": "2.8.9-3"`))
	if st := e.read(path); st.Read != 1 || st.Published != 1 {
		t.Fatalf("dump with one entry changed: %+v, want that entry read and published", st)
	}
	a, err := e.st.Advisory(e.ctx, "DSA-135")
	if err != nil || a.Revision != 2 || a.Affected[0].FixedVersion != "2.8.9-3" {
		t.Fatalf("DSA-135 after the change: revision %d, %+v, %v", a.Revision, a.Affected, err)
	}
}
