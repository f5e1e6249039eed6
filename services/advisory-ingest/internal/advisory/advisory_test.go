package advisory

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

func TestFromCVSS(t *testing.T) {
	tests := []struct {
		vector string
		sev    events.Severity
		score  float64
	}{
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", events.SeverityCritical, 9.8},
		{"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", events.SeverityHigh, 7.8}, // CVE-2023-4911
		{"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", events.SeverityMedium, 5.9},
		{"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:L/A:N", events.SeverityLow, 3.7},
		{"CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", events.SeverityMedium, 6.1},
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", events.SeverityNegligible, 0},
		{"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", events.SeverityCritical, 9.3},
	}
	for _, tt := range tests {
		sev, score, err := FromCVSS(tt.vector)
		if err != nil || sev != tt.sev || score != tt.score {
			t.Errorf("FromCVSS(%s) = %s %v %v, want %s %v", tt.vector, sev, score, err, tt.sev, tt.score)
		}
	}
	for _, bad := range []string{"", "AV:N/AC:L", "CVSS:3.1/AV:X", "CVSS:2.0/AV:N"} {
		if sev, _, err := FromCVSS(bad); err == nil || sev != events.SeverityUnknown {
			t.Errorf("FromCVSS(%q) = %s, %v; want an error", bad, sev, err)
		}
	}
}

func TestFeedSeverities(t *testing.T) {
	debian := map[string]events.Severity{
		"unimportant": events.SeverityNegligible, "low": events.SeverityLow, "low**": events.SeverityLow,
		"medium": events.SeverityMedium, "high**": events.SeverityHigh, "not yet assigned": events.SeverityUnknown,
		"end-of-life": events.SeverityUnknown, "": events.SeverityUnknown,
	}
	for in, want := range debian {
		if got := FromDebianUrgency(in); got != want {
			t.Errorf("FromDebianUrgency(%q) = %s, want %s", in, got, want)
		}
	}
	ubuntu := map[string]events.Severity{
		"negligible": events.SeverityNegligible, "Low": events.SeverityLow, "medium": events.SeverityMedium,
		"high": events.SeverityHigh, "critical": events.SeverityCritical, "untriaged": events.SeverityUnknown,
	}
	for in, want := range ubuntu {
		if got := FromUbuntuPriority(in); got != want {
			t.Errorf("FromUbuntuPriority(%q) = %s, want %s", in, got, want)
		}
	}
	if FromGitHub("MODERATE") != events.SeverityMedium || FromGitHub("?") != events.SeverityUnknown {
		t.Error("FromGitHub")
	}
}

func TestReleases(t *testing.T) {
	for in, want := range map[string]string{"bookworm": "12", "bullseye": "11", "buster": "10", "trixie": "13", "sid": "unstable", "12": "12", "3.0": "3.0", "woody": "3.0"} {
		if got, ok := DebianRelease(in); !ok || got != want {
			t.Errorf("DebianRelease(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if _, ok := DebianRelease("experimental"); ok {
		t.Error("experimental mapped")
	}
	for in, want := range map[string]string{"jammy": "22.04", "focal": "20.04", "noble": "24.04", "bionic": "18.04", "xenial": "16.04", "trusty": "14.04", "24.10": "24.10"} {
		if got, ok := UbuntuRelease(in); !ok || got != want {
			t.Errorf("UbuntuRelease(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if _, ok := UbuntuRelease("bookworm"); ok {
		t.Error("a Debian codename mapped to Ubuntu")
	}
}

func sample() Advisory {
	return Advisory{
		ID: "USN-1-1", Source: SourceOSV, Aliases: []string{"CVE-2024-2", "CVE-2024-1", "CVE-2024-2"},
		Modified: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Severity: events.SeverityHigh,
		Affected: []events.Affected{
			{Ecosystem: "ubuntu", Release: "22.04", Package: "openssl", FixedVersion: "3.0.2-0ubuntu1.10",
				Versions: []string{"3.0.2-0ubuntu1.9", "3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1"},
				Binaries: []events.BinaryPackage{{Name: "openssl", Version: "3.0.2-0ubuntu1.10"}, {Name: "libssl3", Version: "3.0.2-0ubuntu1.10"}}},
			{Ecosystem: "rubygems", Package: "rack", Ranges: []events.VersionRange{{Introduced: "3.0.0", Fixed: "3.0.9.1"}}, FixedVersion: "3.0.9.1"},
			{Ecosystem: "rubygems", Package: "rack", Ranges: []events.VersionRange{{Fixed: "2.2.8.1"}}, FixedVersion: "2.2.8.1"},
		},
	}
}

func TestNormalizedAndHash(t *testing.T) {
	a := sample()
	n := a.Normalized()
	if strings.Join(n.Aliases, ",") != "CVE-2024-1,CVE-2024-2" {
		t.Errorf("aliases %v", n.Aliases)
	}
	if len(n.Affected) != 2 || n.Affected[0].Package != "rack" || len(n.Affected[0].Ranges) != 2 || n.Affected[0].FixedVersion != "3.0.9.1" {
		t.Fatalf("affected %+v", n.Affected)
	}
	if got := strings.Join(n.Affected[1].Versions, " "); got != "3.0.2-0ubuntu1 3.0.2-0ubuntu1.9 3.0.2-0ubuntu1.10" {
		t.Errorf("versions not in dpkg order: %s", got)
	}
	if n.Affected[1].Binaries[0].Name != "libssl3" {
		t.Errorf("binaries %+v", n.Affected[1].Binaries)
	}
	// Input order and duplicates do not matter; Modified and Notes do not count.
	b := sample()
	b.Affected[0], b.Affected[2] = b.Affected[2], b.Affected[0]
	b.Aliases = []string{"CVE-2024-1", "CVE-2024-2"}
	b.Modified = b.Modified.Add(time.Hour)
	b.Notes = []string{"skipped"}
	if a.ContentHash() != b.ContentHash() {
		t.Error("hash depends on order, modified or notes")
	}
	if !strings.HasPrefix(a.ContentHash(), "sha256:") {
		t.Error(a.ContentHash())
	}
	c := sample()
	c.Affected[0].FixedVersion = "3.0.2-0ubuntu1.11"
	d := sample()
	d.Severity = events.SeverityCritical
	if c.ContentHash() == a.ContentHash() || d.ContentHash() == a.ContentHash() {
		t.Error("a meaningful change kept the hash")
	}
	// The input is left alone.
	if a.Affected[0].Package != "openssl" || len(a.Aliases) != 3 {
		t.Error("Normalized changed its receiver")
	}
}

func TestValidate(t *testing.T) {
	if err := sample().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := sample().Event(3).Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*Advisory)
		want   string
	}{
		{"no id", func(a *Advisory) { a.ID = "" }, "advisory (no id): id is empty"},
		{"shell in id", func(a *Advisory) { a.ID = "USN-1;ls" }, "not a plain identifier"},
		{"semicolon", func(a *Advisory) { a.Affected[0].FixedVersion = "1.0;reboot" }, `advisory USN-1-1: affected[0] ubuntu 22.04 openssl: fixed version: invalid version "1.0;reboot"`},
		{"substitution", func(a *Advisory) { a.Affected[0].Versions[0] = "$(id)" }, `affected version: invalid version "$(id)"`},
		{"binary", func(a *Advisory) { a.Affected[0].Binaries[0].Name = "libssl3 && x" }, `binary: invalid package name`},
		{"debian codename", func(a *Advisory) { a.Affected[0].Release = "jammy" }, `release "jammy" is not a VERSION_ID`},
		{"gem version", func(a *Advisory) { a.Affected[1].Ranges[0].Fixed = "3.0.9.1 `x`" }, `invalid gem version`},
		{"gem release", func(a *Advisory) { a.Affected[1].Release = "12" }, `a gem has no release`},
		{"ecosystem", func(a *Advisory) { a.Affected[1].Ecosystem = "npm" }, `unsupported ecosystem "npm"`},
		{"modified", func(a *Advisory) { a.Modified = time.Time{} }, `modified time is missing`},
		{"nothing affected", func(a *Advisory) { a.Affected = nil }, ErrNoAffected.Error()},
	}
	for _, tt := range tests {
		a := sample()
		tt.change(&a)
		err := a.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	a := sample()
	a.Affected = nil
	if !errors.Is(a.Validate(), ErrNoAffected) {
		t.Error("ErrNoAffected not matchable")
	}
	a.Withdrawn = time.Now()
	if err := a.Validate(); err != nil {
		t.Errorf("a withdrawn advisory need not list packages: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", maxSummaryLen)
	got := Truncate(long)
	if len(got) > maxSummaryLen+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "é") {
		t.Errorf("len %d", len(got))
	}
	if Truncate("  x \n") != "x" {
		t.Error("not trimmed")
	}
}

func TestWithdrawnEvent(t *testing.T) {
	a := sample()
	a.Withdrawn = time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	if err := a.WithdrawnEvent(2).Validate(); err != nil {
		t.Fatal(err)
	}
	if a.ContentHash() == sample().ContentHash() {
		t.Error("withdrawal kept the hash")
	}
}

func TestSubmissionRoundTrip(t *testing.T) {
	a := Advisory{
		ID: "DSA-1-1", Source: SourceOSV, Aliases: []string{"CVE-2024-2", "CVE-2024-1"},
		Modified: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), Severity: events.SeverityHigh,
		Withdrawn: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC),
		Affected:  []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12", Package: "openssl", FixedVersion: "3.0.1-1"}},
	}
	s := a.Submission("x.json")
	if s.Withdrawn == nil || s.Origin != "x.json" || s.Aliases[0] != "CVE-2024-1" {
		t.Fatalf("submission %+v", s)
	}
	if got := FromSubmission(s); got.ContentHash() != a.ContentHash() {
		t.Errorf("round trip changed the content: %+v", got)
	}
}
