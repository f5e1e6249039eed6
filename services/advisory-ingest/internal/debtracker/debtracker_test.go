package debtracker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

var snapshot = time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC)

func decode(t *testing.T, in string) (map[string]advisory.Advisory, []*RecordError) {
	t.Helper()
	got := map[string]advisory.Advisory{}
	var bads []*RecordError
	err := Decode(strings.NewReader(in), Options{Modified: snapshot}, func(a advisory.Advisory) error {
		got[a.ID] = a
		return nil
	}, func(e *RecordError) { bads = append(bads, e) })
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return got, bads
}

func sample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "debian", "debian.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSample(t *testing.T) {
	got, bads := decode(t, sample(t))
	if len(bads) != 0 {
		t.Fatalf("bad records: %v", bads)
	}
	// CVE-2007-2383 is "0" (not affected) everywhere and CVE-2022-0358 has
	// releases: [] — neither is an advisory.
	want := []string{"CVE-2005-3111", "CVE-2008-7220", "CVE-2013-1444", "CVE-2022-0456"}
	if len(got) != len(want) {
		t.Fatalf("got %d advisories, want %v", len(got), want)
	}
	for _, id := range want {
		a, ok := got[id]
		if !ok {
			t.Fatalf("%s missing", id)
		}
		for _, af := range a.Affected {
			if af.Ecosystem != events.EcosystemDebian {
				t.Errorf("%s: ecosystem %s", id, af.Ecosystem)
			}
		}
		if err := a.Event(1).Validate(); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}

	c := got["CVE-2022-0456"]
	byRelease := map[string]string{}
	for _, af := range c.Affected {
		if af.Package != "chromium" {
			t.Errorf("package %s", af.Package)
		}
		byRelease[af.Release] = af.FixedVersion
	}
	wantRel := map[string]string{
		"12": "98.0.4758.80-1", "11": "98.0.4758.80-1~deb11u1", "unstable": "98.0.4758.80-1",
		"10": "", "9": "", // open: no fix yet
	}
	if len(byRelease) != len(wantRel) {
		t.Errorf("releases %v, want %v", byRelease, wantRel)
	}
	for r, v := range wantRel {
		if fv, ok := byRelease[r]; !ok || fv != v {
			t.Errorf("release %s fixed = %q (present %v), want %q", r, fv, ok, v)
		}
	}
	if c.Severity != events.SeverityUnknown {
		t.Errorf("not yet assigned → %s", c.Severity)
	}

	p := got["CVE-2008-7220"]
	if p.Severity != events.SeverityHigh || p.SourceSeverity != "high**" {
		t.Errorf("CVE-2008-7220 severity %s (%s)", p.Severity, p.SourceSeverity)
	}
	if len(p.Affected) != 4 || p.Affected[0].FixedVersion != "1.6.0.2-1" {
		t.Errorf("CVE-2008-7220 affected %+v", p.Affected)
	}
	if !p.Modified.Equal(snapshot) || !strings.HasPrefix(p.Summary, "Unspecified vulnerability in Prototype") {
		t.Errorf("modified %v summary %q", p.Modified, p.Summary)
	}
}

func TestOneAdvisoryPerCVEAcrossPackages(t *testing.T) {
	in := `{
	  "openssl": {"CVE-2024-1": {"description": "d", "releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.11-1~deb12u2", "urgency": "medium"}}}},
	  "openssl1.0": {"CVE-2024-1": {"releases": {"buster": {"status": "open", "urgency": "low**"}}}}
	}`
	got, _ := decode(t, in)
	a := got["CVE-2024-1"]
	if len(a.Affected) != 2 || a.Affected[0].Package != "openssl1.0" || a.Affected[1].Package != "openssl" {
		t.Fatalf("affected %+v", a.Affected)
	}
	if a.Severity != events.SeverityMedium {
		t.Errorf("severity %s", a.Severity)
	}
}

func TestBadIssuesDoNotStopTheRest(t *testing.T) {
	in := `{
	  "a1": {"CVE-2024-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "1.0;reboot"}}}},
	  "a2": {"CVE-2024-2": {"releases": {"bookworm": {"status": "resolved", "fixed_version": 12}}}},
	  "a3": "not an object",
	  "a4": {"CVE-2024-3": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "2.0-1"}}}},
	  "a5": {"CVE-2024-1": {"releases": {"trixie": {"status": "resolved", "fixed_version": "1.1-1"}}}}
	}`
	got, bads := decode(t, in)
	if len(got) != 1 || got["CVE-2024-3"].Affected[0].FixedVersion != "2.0-1" {
		t.Errorf("good advisories %v", got)
	}
	msgs := ""
	for _, b := range bads {
		msgs += b.Error() + "\n"
	}
	for _, want := range []string{
		`debian tracker CVE-2024-1: advisory CVE-2024-1: affected[0] debian 12 a1: fixed version: invalid version "1.0;reboot"`,
		`debian tracker CVE-2024-2: package "a2": releases: json: cannot unmarshal number`,
		`debian tracker package a3: json: cannot unmarshal string`,
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("bad records\n%s\nlack %q", msgs, want)
		}
	}
}

func TestSyntaxErrorEnds(t *testing.T) {
	err := Decode(strings.NewReader(`{"a": {"CVE-1": `), Options{Modified: snapshot},
		func(advisory.Advisory) error { return nil }, func(*RecordError) {})
	if err == nil {
		t.Fatal("truncated document decoded")
	}
	stop := errors.New("stop")
	err = Decode(strings.NewReader(sample(t)), Options{Modified: snapshot},
		func(advisory.Advisory) error { return stop }, func(*RecordError) {})
	if !errors.Is(err, stop) {
		t.Errorf("emit's error not returned: %v", err)
	}
}

func TestHashStable(t *testing.T) {
	a, _ := decode(t, sample(t))
	b, _ := decode(t, sample(t))
	for id := range a {
		if a[id].ContentHash() != b[id].ContentHash() {
			t.Errorf("%s: hash differs across re-read", id)
		}
	}
	c, _ := decode(t, strings.Replace(sample(t), `"98.0.4758.80-1~deb11u1"`, `"98.0.4758.80-1~deb11u2"`, 1))
	if c["CVE-2022-0456"].ContentHash() == a["CVE-2022-0456"].ContentHash() {
		t.Error("changed fixed version kept the hash")
	}
}

func FuzzDecode(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "debian", "debian.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"p": {"CVE-1": {"releases": []}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Decode(strings.NewReader(string(data)), Options{Modified: snapshot}, func(a advisory.Advisory) error {
			if err := a.Validate(); err != nil {
				t.Fatalf("emitted advisory does not validate: %v", err)
			}
			return nil
		}, func(e *RecordError) {
			if e.Err == nil || e.Record == "" {
				t.Fatalf("bad record without reason: %+v", e)
			}
		})
	})
}
