package osv

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

func parseFile(t *testing.T, name string) advisory.Advisory {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "osv", name))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return a
}

func find(t *testing.T, a advisory.Advisory, eco, release, pkg string) events.Affected {
	t.Helper()
	for _, af := range a.Affected {
		if af.Ecosystem == eco && af.Release == release && af.Package == pkg {
			return af
		}
	}
	t.Fatalf("%s: no affected %s %s %s in %+v", a.ID, eco, release, pkg, a.Affected)
	return events.Affected{}
}

func TestAllSamplesParseInTheirOwnEcosystem(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "osv", "*.json"))
	if len(files) < 17 {
		t.Fatalf("found %d samples, want 17", len(files))
	}
	for _, f := range files {
		a := parseFile(t, filepath.Base(f))
		want := events.EcosystemUbuntu
		switch {
		case strings.HasPrefix(a.ID, "DSA-"), strings.HasPrefix(a.ID, "DLA-"):
			want = events.EcosystemDebian
		case strings.HasPrefix(a.ID, "GHSA-"):
			want = events.EcosystemRubyGems
		}
		for _, af := range a.Affected {
			if af.Ecosystem != want {
				t.Errorf("%s: affected %s in ecosystem %s, want %s", a.ID, af.Package, af.Ecosystem, want)
			}
		}
		if err := a.Event(1).Validate(); err != nil {
			t.Errorf("%s: event does not validate: %v", a.ID, err)
		}
	}
}

func TestUSN6409(t *testing.T) {
	a := parseFile(t, "USN-6409-1.json")
	if a.ID != "USN-6409-1" || a.Title != "glibc vulnerabilities" {
		t.Errorf("id/title = %q/%q", a.ID, a.Title)
	}
	if !slices.Equal(a.Aliases, []string{"CVE-2023-4527", "CVE-2023-4911"}) {
		t.Errorf("aliases = %v", a.Aliases)
	}
	if len(a.Affected) != 1 {
		t.Fatalf("affected = %+v, want only 22.04", a.Affected)
	}
	af := find(t, a, events.EcosystemUbuntu, "22.04", "glibc")
	if af.FixedVersion != "2.35-0ubuntu3.4" || af.Pro {
		t.Errorf("fixed = %q pro = %v", af.FixedVersion, af.Pro)
	}
	if len(af.Binaries) != 28 || len(af.Versions) != 5 {
		t.Errorf("%d binaries, %d versions; want 28, 5", len(af.Binaries), len(af.Versions))
	}
	if !slices.Contains(af.Binaries, events.BinaryPackage{Name: "libc6", Version: "2.35-0ubuntu3.4"}) {
		t.Errorf("libc6 missing from binaries")
	}
	if got := a.Published.Format("2006-01-02"); got != "2023-10-03" {
		t.Errorf("published = %s", got)
	}
}

func TestUbuntuPro(t *testing.T) {
	a := parseFile(t, "USN-5570-1.json")
	pro := find(t, a, events.EcosystemUbuntu, "14.04", "zlib")
	if !pro.Pro || pro.FixedVersion != "1:1.2.8.dfsg-1ubuntu1.1+esm2" {
		t.Errorf("14.04 zlib = %+v", pro)
	}
	if plain := find(t, a, events.EcosystemUbuntu, "18.04", "zlib"); plain.Pro {
		t.Errorf("18.04 is not Pro")
	}
}

func TestDebianSamples(t *testing.T) {
	a := parseFile(t, "DSA-135.json")
	af := find(t, a, events.EcosystemDebian, "3.0", "libapache-mod-ssl")
	if af.FixedVersion != "2.8.9-2" || len(a.Affected) != 1 {
		t.Errorf("DSA-135 = %+v", a.Affected)
	}
	if !slices.Equal(a.Aliases, []string{"CVE-2002-0653"}) {
		t.Errorf("aliases = %v", a.Aliases)
	}
	// The file is named DLA-0010-1 but holds DLA-0001-1: the id inside wins.
	d := parseFile(t, "DLA-0010-1.json")
	if d.ID != "DLA-0001-1" {
		t.Errorf("id = %q, want DLA-0001-1", d.ID)
	}
	if af := find(t, d, events.EcosystemDebian, "6.0", "gnutls26"); af.FixedVersion != "2.8.6-1+squeeze4" {
		t.Errorf("gnutls26 fixed = %q", af.FixedVersion)
	}
}

func TestGHSARanges(t *testing.T) {
	a := parseFile(t, "GHSA-8xww-x3g3-6jcv.json")
	if len(a.Affected) != 1 {
		t.Fatalf("affected = %+v, want the four entries merged into one actionpack", a.Affected)
	}
	af := a.Affected[0]
	want := []events.VersionRange{
		{Fixed: "5.2.8.15"},
		{Introduced: "6.0.0", Fixed: "6.0.6.1"},
		{Introduced: "6.1.0", Fixed: "6.1.7.1"},
		{Introduced: "7.0.0", Fixed: "7.0.4.1"},
	}
	if af.Package != "actionpack" || af.Release != "" || !slices.Equal(af.Ranges, want) {
		t.Errorf("actionpack = %+v", af)
	}
	if af.FixedVersion != "7.0.4.1" {
		t.Errorf("fixed = %q, want the newest line's fix", af.FixedVersion)
	}
	if a.Severity != events.SeverityLow || a.SourceSeverity != "LOW" {
		t.Errorf("severity = %s (%s)", a.Severity, a.SourceSeverity)
	}
}

func TestSeverities(t *testing.T) {
	tests := []struct {
		file string
		sev  events.Severity
		raw  string
	}{
		{"UBUNTU-CVE-2023-4911.json", events.SeverityHigh, "high"}, // ubuntu_priority
		{"USN-5844-1.json", events.SeverityHigh, "high"},           // cves_map: CVE-2023-0286 is high
		{"USN-6039-1.json", events.SeverityLow, "low"},             // max of low and negligible
		{"CVE-2009-3560.json", events.SeverityMedium, "medium"},    // old layout
		{"USN-6409-1.json", events.SeverityUnknown, ""},            // states none
		{"DSA-135.json", events.SeverityUnknown, ""},               // states none
		{"USN-6719-1.json", events.SeverityUnknown, ""},            // empty cves_map
		{"GHSA-8xww-x3g3-6jcv.json", events.SeverityLow, "LOW"},    // GitHub label
		{"USN-6429-1.json", events.SeverityHigh, "high"},           // Ubuntu priority beats CVSS
	}
	for _, tt := range tests {
		a := parseFile(t, tt.file)
		if a.Severity != tt.sev || a.SourceSeverity != tt.raw {
			t.Errorf("%s: severity %s (%q), want %s (%q)", tt.file, a.Severity, a.SourceSeverity, tt.sev, tt.raw)
		}
	}
}

func TestOldBinariesLayoutAndMalformedPurl(t *testing.T) {
	// CVE-2009-3560 has "purl": "...?arch=src?distro=focal" and binaries as
	// one {name: version} object.
	a := parseFile(t, "CVE-2009-3560.json")
	af := find(t, a, events.EcosystemUbuntu, "20.04", "coin3")
	if af.FixedVersion != "4.0.0+ds-1build1" || len(af.Binaries) != 5 {
		t.Errorf("coin3 20.04 = %+v", af)
	}
	if !slices.Contains(af.Binaries, events.BinaryPackage{Name: "libcoin80c", Version: "4.0.0+ds-1build1"}) {
		t.Errorf("libcoin80c missing: %+v", af.Binaries)
	}
	// Open: no fix yet.
	if open := find(t, a, events.EcosystemUbuntu, "24.04", "audacity"); open.FixedVersion != "" || len(open.Versions) != 5 {
		t.Errorf("audacity = %+v", open)
	}
	// An empty versions list is fine.
	if j := find(t, a, events.EcosystemUbuntu, "22.04", "coin3"); j.Versions != nil {
		t.Errorf("versions = %v", j.Versions)
	}
}

func TestTwoSourceNamesForOnePackage(t *testing.T) {
	a := parseFile(t, "USN-7095-1.json")
	n := find(t, a, events.EcosystemUbuntu, "24.04", "linux-nvidia")
	l := find(t, a, events.EcosystemUbuntu, "24.04", "linux-nvidia-lowlatency")
	j := find(t, a, events.EcosystemUbuntu, "22.04", "linux-nvidia-6.8")
	if n.FixedVersion != "6.8.0-1017.19" || l.FixedVersion != "6.8.0-1017.19.1" || j.FixedVersion != "6.8.0-1017.19~22.04.1" {
		t.Errorf("fixed versions: %q %q %q", n.FixedVersion, l.FixedVersion, j.FixedVersion)
	}
	if len(a.Aliases) < 100 || slices.ContainsFunc(a.Aliases, func(s string) bool { return strings.HasPrefix(s, "UBUNTU-") }) {
		t.Errorf("aliases: %d, want plain CVE ids", len(a.Aliases))
	}
}

func TestHashStableAndSensitive(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "osv", "USN-5380-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Parse(data)
	b, _ := Parse(data)
	if a.ContentHash() != b.ContentHash() {
		t.Fatal("hash differs across re-parse")
	}
	bumped, err := Parse([]byte(strings.Replace(string(data), `"modified": "`, `"modified": "2099-01-01T00:00:00Z", "x_old_modified": "`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if bumped.ContentHash() != a.ContentHash() {
		t.Error("a modified bump alone changed the hash")
	}
	changed, err := Parse([]byte(strings.ReplaceAll(string(data), "5.0-6ubuntu1.2", "5.0-6ubuntu1.3")))
	if err != nil {
		t.Fatal(err)
	}
	if changed.ContentHash() == a.ContentHash() {
		t.Error("a changed fixed version kept the hash")
	}
}

func TestBadRecords(t *testing.T) {
	good := `{"id":"USN-1-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"bash"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":%s}]}]}]}`
	tests := []struct {
		name, in, want string
	}{
		{"semicolon version", strings.Replace(good, "%s", `"1.0;reboot"`, 1), `osv record USN-1-1: advisory USN-1-1: affected[0] ubuntu 22.04 bash: fixed version: invalid version "1.0;reboot"`},
		{"command substitution", strings.Replace(good, "%s", `"1.0$(id)"`, 1), `invalid version "1.0$(id)"`},
		{"wrong type", strings.Replace(good, "%s", `12`, 1), `osv record USN-1-1: decode: json: …within "/affected/0/ranges/0/events/1": member "fixed" is number, want a string`},
		{"missing id", `{"modified":"2024-01-01T00:00:00Z","affected":[]}`, `osv record (no id): id is missing`},
		{"missing modified", `{"id":"X-1","affected":[]}`, `osv record X-1: modified is missing`},
		{"bad time", `{"id":"X-1","modified":"yesterday"}`, `modified "yesterday" is not an RFC 3339 time`},
		{"bad package", `{"id":"X-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"Bash;rm"}}]}`, `invalid package name "Bash;rm"`},
		{"bad gem version", `{"id":"G-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"RubyGems","name":"rack"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.0 ; x"}]}]}]}`, `invalid gem version "2.0 ; x"`},
		{"not json", `{"id":"X-2",`, `osv record X-2: decode: jsontext: unexpected EOF`},
		{"two documents", `{"id":"X-1","modified":"2024-01-01T00:00:00Z"} }`, `after top-level value`},
		{"unknown event", strings.Replace(good, `{"fixed":%s}`, `{"fixd":"1"}`, 1), `unknown kind "fixd"`},
	}
	// A want's parts (split at "…") must appear in the error in order: the decoder words
	// its errors "cannot" or "unable to", chosen at random once per process.
	contains := func(err error, want string) bool {
		rest := err.Error()
		for _, part := range strings.Split(want, "…") {
			i := strings.Index(rest, part)
			if i < 0 {
				return false
			}
			rest = rest[i+len(part):]
		}
		return true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse([]byte(tt.in))
			if err == nil || !contains(err, tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if a.ID != "" || a.Affected != nil {
				t.Errorf("a half-built advisory came back: %+v", a)
			}
		})
	}
}

func TestUnknownEcosystemIsSkippedWithANote(t *testing.T) {
	in := `{"id":"X-1","modified":"2024-01-01T00:00:00Z","affected":[
	  {"package":{"ecosystem":"PyPI","name":"django"}},
	  {"package":{"ecosystem":"Ubuntu:Pro:FIPS:20.04:LTS","name":"openssl"}},
	  {"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u1"}]}]},
	  {"package":{"ecosystem":"Debian:bookworm","name":"curl"},"ranges":[{"type":"GIT","repo":"x","events":[{"introduced":"abc"}]}]}]}`
	a, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Affected) != 2 || len(a.Notes) != 2 {
		t.Fatalf("affected %+v, notes %q", a.Affected, a.Notes)
	}
	if c := find(t, a, events.EcosystemDebian, "12", "curl"); c.Ranges != nil {
		t.Errorf("a GIT range leaked: %+v", c)
	}
	only := `{"id":"X-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"x"}}]}`
	if _, err := Parse([]byte(only)); !errors.Is(err, advisory.ErrNoAffected) {
		t.Errorf("err = %v, want ErrNoAffected", err)
	}
}

func TestWithdrawn(t *testing.T) {
	a, err := Parse([]byte(`{"id":"X-1","modified":"2024-01-02T00:00:00Z","withdrawn":"2024-01-02T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Withdrawn.IsZero() {
		t.Error("withdrawn not read")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "osv", "*.json"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		// Large seeds make mutation and minimisation crawl; the small
		// samples cover every layout.
		if len(data) < 7000 {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"id":"X","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"RubyGems","name":"rack"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.0-a"},{"last_affected":"2"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data)
		if err != nil {
			if a.ID != "" || a.Affected != nil {
				t.Fatalf("error with a half-built advisory: %v", err)
			}
			return
		}
		// Whatever gets through is safe to hand on.
		if err := a.Validate(); err != nil {
			t.Fatalf("parsed advisory does not validate: %v", err)
		}
		if err := a.Event(1).Validate(); err != nil && a.Withdrawn.IsZero() {
			t.Fatalf("event does not validate: %v", err)
		}
		if a.ContentHash() != a.Normalized().ContentHash() {
			t.Fatal("hash changes under normalisation")
		}
	})
}

// Range events and Ubuntu's binaries are decoded without maps, as a map would be: a
// repeated name keeps its last value, null is empty, and a member that is not a string is
// an error naming it.
func TestObjectsOfStrings(t *testing.T) {
	rec := func(events, binaries string) string {
		return `{"id":"USN-2-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"bash"},` +
			`"ranges":[{"type":"ECOSYSTEM","events":` + events + `}],"ecosystem_specific":{"binaries":` + binaries + `}}]}`
	}
	a, err := Parse([]byte(rec(`[{"introduced":"0"},{"fixed":"1.0","fixed":"1.2"}]`,
		`[{"b2":"1.2","b1":"1.2"},null,{"binary_name":"b3","binary_version":"1.2"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	af := a.Affected[0]
	if af.FixedVersion != "1.2" || len(af.Ranges) != 1 || af.Ranges[0].Fixed != "1.2" {
		t.Errorf("ranges %+v, fixed %q: the repeated fixed should keep 1.2", af.Ranges, af.FixedVersion)
	}
	want := []events.BinaryPackage{{Name: "b1", Version: "1.2"}, {Name: "b2", Version: "1.2"}, {Name: "b3", Version: "1.2"}} // sorted by Normalized
	if !slices.Equal(af.Binaries, want) {
		t.Errorf("binaries %+v, want %+v", af.Binaries, want)
	}
	for _, bad := range []struct{ events, binaries, want string }{
		{`[{"introduced":"0"},{"fixed":"1.0","limit":"2.0"}]`, `[]`, `range event 1 has 2 keys, want 1`},
		{`[{"introduced":"0"},null]`, `[]`, `range event 1 has 0 keys, want 1`},
		{`[{"introduced":"0"},[]]`, `[]`, `[ where an object of strings belongs`},
		{`[{"introduced":"0"}]`, `[{"b1":true}]`, `member "b1" is true, want a string`},
	} {
		if _, err := Parse([]byte(rec(bad.events, bad.binaries))); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("events %s, binaries %s: err = %v, want it to contain %q", bad.events, bad.binaries, err, bad.want)
		}
	}
}
