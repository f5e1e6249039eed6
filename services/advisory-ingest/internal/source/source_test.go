package source

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

const testdata = "../../testdata"

func collect(t *testing.T, path string, opts Options) ([]Record, []BadRecord) {
	t.Helper()
	var recs []Record
	var bads []BadRecord
	err := ReadPath(context.Background(), path, opts, func(r Record) error {
		recs = append(recs, r)
		return nil
	}, func(b BadRecord) { bads = append(bads, b) })
	if err != nil {
		t.Fatalf("ReadPath(%s): %v", path, err)
	}
	return recs, bads
}

func TestAllSharedSamples(t *testing.T) {
	recs, bads := collect(t, testdata, Options{})
	byOrigin := map[string]Record{}
	for _, r := range recs {
		byOrigin[r.Origin] = r
	}
	// 17 OSV records, 4 tracker advisories; the 2004 notices name no source
	// package and are skipped.
	if len(recs) != 21 {
		t.Errorf("%d records, want 21", len(recs))
	}
	for _, b := range bads {
		if !b.Skipped() || !strings.Contains(b.Origin, "usn") {
			t.Errorf("bad record: %v", b)
		}
	}
	for _, r := range recs {
		want := ""
		switch {
		case strings.Contains(r.Origin, "/debian/"), strings.Contains(r.Origin, "/DSA-"), strings.Contains(r.Origin, "/DLA-"):
			want = events.EcosystemDebian
		case strings.Contains(r.Origin, "/GHSA-"):
			want = events.EcosystemRubyGems
		default:
			want = events.EcosystemUbuntu
		}
		for _, af := range r.Advisory.Affected {
			if af.Ecosystem != want {
				t.Errorf("%s: %s %s is %s, want %s", r.Origin, af.Package, af.Release, af.Ecosystem, want)
			}
		}
	}
	dla := byOrigin[filepath.Join(testdata, "osv", "DLA-0010-1.json")]
	if dla.Advisory.ID != "DLA-0001-1" {
		t.Errorf("DLA-0010-1.json read as %q", dla.Advisory.ID)
	}
	if _, ok := byOrigin[filepath.Join(testdata, "debian", "debian.json")+"#CVE-2022-0456"]; !ok {
		t.Errorf("tracker origin missing; origins: %v", keys(byOrigin))
	}
}

func keys(m map[string]Record) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDSAListFile(t *testing.T) {
	recs, bads := collect(t, filepath.Join(testdata, "debian", "DSA"), Options{})
	if len(recs) != 7 || len(bads) != 3 || recs[0].Origin != filepath.Join(testdata, "debian", "DSA")+"#DSA-141" {
		t.Errorf("%d records (first %q), %d bad", len(recs), recs[0].Origin, len(bads))
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		in   string
		want Format
	}{
		{`{"schema_version": "1.7.0", "id": "USN-1"}`, FormatOSV},
		{`{"id": "DSA-135", "summary": "x"}`, FormatOSV},
		{"\n {\n\t\"notices\": [", FormatUbuntuNotices},
		{`{"limit": 20, "notices": []}`, FormatUbuntuNotices},
		{`{"prototypejs": {"CVE-2008-7220": {`, FormatDebianTracker},
		{"[31 Jul 2025] DSA-5970-1 sope - security update\n", FormatDebianDSAList},
		{`{"x": 1}`, ""},
		{`[1, 2]`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		got, err := Detect([]byte(tt.in))
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("Detect(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDirectoryWithBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile(filepath.Join(testdata, "osv", "DSA-135.json"))
	write := func(name, data string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/good.json", string(good))
	write("b/broken.json", `{"id": "X-1", "modified": `)
	write("b/evil.json", strings.Replace(string(good), `"fixed": "2.8.9-2"`, `"fixed": "2.8.9-2$(reboot)"`, 1))
	write("c/notes.txt", "not a feed")
	recs, bads := collect(t, dir, Options{})
	if len(recs) != 1 || recs[0].Advisory.ID != "DSA-135" {
		t.Errorf("records %+v", recs)
	}
	if len(bads) != 2 {
		t.Fatalf("bad records %v", bads)
	}
	for _, b := range bads {
		if !strings.Contains(b.Error(), "broken.json: osv record X-1: decode") &&
			!strings.Contains(b.Error(), `evil.json: osv record DSA-135: advisory DSA-135: affected[0] debian 3.0 libapache-mod-ssl: fixed version: invalid version "2.8.9-2$(reboot)"`) {
			t.Errorf("unexpected: %v", b)
		}
	}
}

func TestSyntheticZipDump(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSyntheticDump(&buf, 400); err != nil {
		t.Fatal(err)
	}
	// Add a bad entry and a non-JSON one to the dump.
	zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		zw.Copy(f)
	}
	w, _ := zw.Create("BAD-1.json")
	w.Write([]byte(`{"id": "BAD-1", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Debian:12", "name": "x;y"}}]}`))
	w, _ = zw.Create("README")
	w.Write([]byte("hello"))
	zw.Close()
	path := filepath.Join(t.TempDir(), "all.zip")
	os.WriteFile(path, out.Bytes(), 0o644)

	recs, bads := collect(t, path, Options{})
	if len(recs) != 400 {
		t.Errorf("%d records, want 400", len(recs))
	}
	ids := map[string]bool{}
	hashes := map[string]bool{}
	for _, r := range recs {
		ids[r.Advisory.ID] = true
		hashes[r.Advisory.ContentHash()] = true
		if err := r.Advisory.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) != 400 || len(hashes) != 400 {
		t.Errorf("%d ids, %d hashes; want 400 distinct", len(ids), len(hashes))
	}
	if len(bads) != 1 || bads[0].Origin != path+"!BAD-1.json" || !strings.Contains(bads[0].Error(), `invalid package name "x;y"`) {
		t.Errorf("bad records %v", bads)
	}
}

func TestYieldErrorStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := ReadPath(context.Background(), testdata, Options{}, func(Record) error {
		n++
		return stop
	}, func(BadRecord) {})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("err %v after %d records", err, n)
	}
}

func TestPollConditional(t *testing.T) {
	body, _ := os.ReadFile(filepath.Join(testdata, "osv", "USN-6409-1.json"))
	var requests, notModified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("If-None-Match") == `"v1"` {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Tue, 03 Oct 2023 18:04:23 GMT")
		w.Write(body)
	}))
	defer srv.Close()

	p := &Poller{URL: srv.URL + "/USN-6409-1.json", TempDir: t.TempDir()}
	var got []Record
	yield := func(r Record) error { got = append(got, r); return nil }
	bad := func(b BadRecord) { t.Errorf("bad: %v", b) }
	changed, err := p.Poll(context.Background(), yield, bad)
	if err != nil || !changed || len(got) != 1 || got[0].Advisory.ID != "USN-6409-1" {
		t.Fatalf("first poll: changed %v err %v records %d", changed, err, len(got))
	}
	changed, err = p.Poll(context.Background(), yield, bad)
	if err != nil || changed || len(got) != 1 || notModified.Load() != 1 {
		t.Fatalf("second poll: changed %v err %v records %d 304s %d", changed, err, len(got), notModified.Load())
	}
	if got[0].Origin != p.URL {
		t.Errorf("origin %q", got[0].Origin)
	}
}

func TestRunBacksOffAndRecovers(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSyntheticDump(&buf, 10); err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		w.Write(buf.Bytes())
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := &Poller{URL: srv.URL + "/all.zip", Interval: time.Hour, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, TempDir: t.TempDir()}
	var failures []error
	n := 0
	err := p.Run(ctx, func(r Record) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	}, func(b BadRecord) { t.Errorf("bad: %v", b) }, func(err error) { failures = append(failures, err) })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if n != 10 || len(failures) != 2 || !strings.Contains(failures[0].Error(), "500") {
		t.Errorf("%d records, failures %v", n, failures)
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		if got := Backoff(time.Second, time.Minute, tt.n); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// A dump is read on several goroutines but handed over in its own order, and a yield error
// stops the read.
func TestZipEntriesInDumpOrder(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSyntheticDump(&buf, 300); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "all.zip")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	recs, bads := collect(t, path, Options{})
	if len(recs) != len(zr.File) || len(bads) != 0 {
		t.Fatalf("%d records, %d bad; want %d, 0", len(recs), len(bads), len(zr.File))
	}
	for i, r := range recs {
		if want := path + "!" + zr.File[i].Name; r.Origin != want {
			t.Fatalf("record %d from %s, want %s", i, r.Origin, want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err = ReadPath(context.Background(), path, Options{}, func(Record) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	}, func(BadRecord) {})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("read after a yield error: %d records, %v", n, err)
	}
}
