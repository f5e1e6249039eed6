package inventory_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

// advisoryFromOSV converts an OSV record the way advisory-ingest normalises it, enough for
// these tests: "Debian:3.0" → (debian, "3.0"), RubyGems → rubygems, ECOSYSTEM ranges.
func advisoryFromOSV(t *testing.T, path string) events.SecurityAdvisoryPublished {
	t.Helper()
	var rec struct {
		ID       string    `json:"id"`
		Aliases  []string  `json:"aliases"`
		Related  []string  `json:"related"`
		Modified time.Time `json:"modified"`
		Affected []struct {
			Package struct{ Name, Ecosystem string } `json:"package"`
			Ranges  []struct {
				Type   string              `json:"type"`
				Events []map[string]string `json:"events"`
			} `json:"ranges"`
			Versions []string `json:"versions"`
		} `json:"affected"`
	}
	if err := json.Unmarshal([]byte(readFile(t, path)), &rec); err != nil {
		t.Fatal(err)
	}
	adv := events.SecurityAdvisoryPublished{AdvisoryID: rec.ID, Revision: 1, Source: "osv", Modified: rec.Modified,
		Severity: events.SeverityHigh, Aliases: append(rec.Aliases, rec.Related...)}
	for _, a := range rec.Affected {
		eco, release, _ := strings.Cut(a.Package.Ecosystem, ":")
		af := events.Affected{Ecosystem: strings.ToLower(eco), Release: release, Package: a.Package.Name}
		if af.Ecosystem == events.EcosystemRubyGems {
			af.Release = ""
		} else {
			af.Versions = a.Versions
		}
		for _, r := range a.Ranges {
			var vr events.VersionRange
			for _, ev := range r.Events {
				if v, ok := ev["introduced"]; ok {
					vr.Introduced = v
				}
				if v, ok := ev["fixed"]; ok {
					vr.Fixed = v
				}
				if v, ok := ev["last_affected"]; ok {
					vr.LastAffected = v
				}
			}
			af.Ranges = append(af.Ranges, vr)
		}
		adv.Affected = append(adv.Affected, af)
	}
	if err := adv.Validate(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return adv
}

// bookwormAdvisory is a Debian 12 advisory against the capture (synthetic; see
// testdata/PROVENANCE.md): glibc fixed one update above the captured 2.36-9+deb12u14, its
// libc6 binary with the same version; and libxml2 with no fix yet.
func bookwormAdvisory() events.SecurityAdvisoryPublished {
	return events.SecurityAdvisoryPublished{AdvisoryID: "DSA-9999-1", Revision: 1, Source: "test",
		Aliases: []string{"CVE-2099-0001"}, Modified: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Severity: events.SeverityHigh,
		Affected: []events.Affected{
			{Ecosystem: "debian", Release: "12", Package: "glibc", FixedVersion: "2.36-9+deb12u15",
				Binaries: []events.BinaryPackage{{Name: "libc6", Version: "2.36-9+deb12u15"}}},
			{Ecosystem: "debian", Release: "11", Package: "glibc", FixedVersion: "2.31-13+deb11u99"},
		}}
}
