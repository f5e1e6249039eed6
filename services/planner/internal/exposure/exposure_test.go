package exposure

import (
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

func TestMatch(t *testing.T) {
	bookworm := events.OSRelease{ID: "debian", VersionID: "12"}
	pkgs := []query.Package{
		{Name: "libssl3", Version: "3.0.11-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1", Status: "install ok installed"},
		{Name: "openssl", Version: "3.0.11-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1", Status: "install ok installed"},
		{Name: "bash", Version: "5.2.15-2+b2", SourceName: "bash", SourceVersion: "5.2.15-2", Status: "install ok installed"},
		{Name: "curl", Version: "7.88.1-10+deb12u5", SourceName: "curl", SourceVersion: "7.88.1-10+deb12u5", Status: "deinstall ok config-files"},
		{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", SourceName: "zlib", SourceVersion: "1:1.2.13.dfsg-1"},
	}
	advs := []Advisory{
		{ID: "DSA-1", Affected: []events.Affected{
			{Ecosystem: "debian", Release: "12", Package: "openssl", FixedVersion: "3.0.13-1~deb12u1",
				Binaries: []events.BinaryPackage{{Name: "libssl3", Version: "3.0.13-1~deb12u1+b1"}}},
			{Ecosystem: "debian", Release: "11", Package: "bash", FixedVersion: "9"}, // other release
			{Ecosystem: "ubuntu", Release: "12", Package: "bash", FixedVersion: "9"}, // other distribution
		}},
		{ID: "DSA-2", Affected: []events.Affected{{Ecosystem: "debian", Release: "12", Package: "bash", FixedVersion: "5.2.15-2"}}}, // fixed already
		{ID: "DSA-3", Affected: []events.Affected{{Ecosystem: "debian", Release: "12", Package: "curl", FixedVersion: "9"}}},        // only config files left
		{ID: "DSA-4", Affected: []events.Affected{{Ecosystem: "debian", Release: "12", Package: "zlib", Ranges: []events.VersionRange{{Introduced: "0", LastAffected: "1:1.2.13.dfsg-1"}}}}},
	}
	got := Match(bookworm, pkgs, advs)
	want := map[string]string{ // name/advisory -> fixed
		"libssl3/DSA-1": "3.0.13-1~deb12u1+b1",
		"openssl/DSA-1": "3.0.13-1~deb12u1",
		"zlib1g/DSA-4":  "",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d exposed packages, want %d: %+v", len(got), len(want), got)
	}
	for _, e := range got {
		fixed, ok := want[e.Name+"/"+e.AdvisoryID]
		if !ok || fixed != e.Fixed {
			t.Errorf("unexpected %+v", e)
		}
	}
}
