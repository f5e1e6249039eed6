package exposure

import (
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

func TestCheck(t *testing.T) {
	deb := func(a events.Affected) events.Affected {
		a.Ecosystem, a.Release, a.Package = "debian", "12", "glibc"
		return a
	}
	for _, tc := range []struct {
		name      string
		a         events.Affected
		v         string
		affected  bool
		wantFixed string
	}{
		{"below fix", deb(events.Affected{FixedVersion: "2.36-9+deb12u15"}), "2.36-9+deb12u14", true, "2.36-9+deb12u15"},
		{"at fix", deb(events.Affected{FixedVersion: "2.36-9+deb12u15"}), "2.36-9+deb12u15", false, "2.36-9+deb12u15"},
		{"above fix", deb(events.Affected{FixedVersion: "2.36-9+deb12u15"}), "2.36-10", false, "2.36-9+deb12u15"},
		{"tilde sorts before", deb(events.Affected{FixedVersion: "1.0"}), "1.0~rc1", true, "1.0"},
		{"epoch wins", deb(events.Affected{FixedVersion: "1:1.0"}), "9.9", true, "1:1.0"},
		{"no fix yet", deb(events.Affected{}), "2.36-9", true, ""},
		{"range", deb(events.Affected{Ranges: []events.VersionRange{{Introduced: "2.0", Fixed: "2.5"}}}), "2.1", true, "2.5"},
		{"below introduced", deb(events.Affected{Ranges: []events.VersionRange{{Introduced: "2.0", Fixed: "2.5"}}}), "1.9", false, ""},
		{"last affected", deb(events.Affected{Ranges: []events.VersionRange{{Introduced: "0", LastAffected: "2.5"}}}), "2.5", true, ""},
		{"after last affected", deb(events.Affected{Ranges: []events.VersionRange{{LastAffected: "2.5"}}}), "2.5-1", false, ""},
		{"open range", deb(events.Affected{Ranges: []events.VersionRange{{Introduced: "2.0"}}}), "3.0", true, ""},
		{"listed only", deb(events.Affected{Versions: []string{"2.1-1"}}), "2.1-1", true, ""},
		{"not listed", deb(events.Affected{Versions: []string{"2.1-1"}}), "2.1-2", false, ""},
		{"listed outside ranges", deb(events.Affected{Versions: []string{"2.4.10-1.3.9-1potato2"},
			Ranges: []events.VersionRange{{Introduced: "0", Fixed: "2.8.9-2"}}}), "2.4.10-1.3.9-1potato2", true, "2.8.9-2"},
		{"gem range", events.Affected{Ecosystem: "rubygems", Package: "actionpack",
			Ranges: []events.VersionRange{{Introduced: "7.0.0", Fixed: "7.0.4.1"}}}, "7.0.4", true, "7.0.4.1"},
		{"gem fixed", events.Affected{Ecosystem: "rubygems", Package: "actionpack",
			Ranges: []events.VersionRange{{Introduced: "7.0.0", Fixed: "7.0.4.1"}}}, "7.0.4.1", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Check(tc.a, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if v.Affected != tc.affected || (v.Affected && v.Fixed != tc.wantFixed) {
				t.Errorf("Check(%s) = %+v, want affected %v fixed %q", tc.v, v, tc.affected, tc.wantFixed)
			}
		})
	}
}

func TestApplies(t *testing.T) {
	for _, tc := range []struct {
		a       events.Affected
		os, rel string
		want    bool
	}{
		{events.Affected{Ecosystem: "debian", Release: "12"}, "debian", "12", true},
		{events.Affected{Ecosystem: "debian", Release: "12"}, "debian", "11", false},
		{events.Affected{Ecosystem: "debian", Release: "12"}, "ubuntu", "12", false},
		{events.Affected{Ecosystem: "ubuntu", Release: "22.04"}, "ubuntu", "22.04", true},
		{events.Affected{Ecosystem: "ubuntu", Release: "22.04", Pro: true}, "ubuntu", "22.04", true},
		{events.Affected{Ecosystem: "ubuntu", Release: "22.04"}, "debian", "22.04", false},
		{events.Affected{Ecosystem: "debian", Release: ""}, "debian", "", false}, // testing/unstable has no VERSION_ID
		{events.Affected{Ecosystem: "rubygems"}, "debian", "12", false},
	} {
		if got := Applies(tc.a, tc.os, tc.rel); got != tc.want {
			t.Errorf("Applies(%+v, %s %s) = %v", tc.a, tc.os, tc.rel, got)
		}
	}
}

func TestPackagesBinaries(t *testing.T) {
	a := events.Affected{Ecosystem: "debian", Release: "12", Package: "glibc", FixedVersion: "2.36-9+deb12u15",
		Binaries: []events.BinaryPackage{{Name: "libc6", Version: "2.36-9+deb12u15+b1"}}}
	pkgs := []query.Package{
		{Name: "libc6", Arch: "amd64", Version: "2.36-9+deb12u14", SourceName: "glibc", SourceVersion: "2.36-9+deb12u14"},
		{Name: "libc-bin", Arch: "amd64", Version: "2.36-9+deb12u14", SourceName: "glibc", SourceVersion: "2.36-9+deb12u14"},
		{Name: "curl", Arch: "amd64", Version: "7.88.1-10", SourceName: "curl", SourceVersion: "7.88.1-10"},
		// A binNMU: the binary's version differs, the source's decides.
		{Name: "libc6", Arch: "i386", Version: "2.36-9+deb12u15+b1", SourceName: "glibc", SourceVersion: "2.36-9+deb12u15"},
	}
	got, err := Packages(a, "DSA-1", pkgs, map[string]Verdict{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "libc6" || got[0].Fixed != "2.36-9+deb12u15+b1" || got[1].Fixed != "2.36-9+deb12u15" || got[1].AdvisoryID != "DSA-1" {
		t.Errorf("Packages = %+v", got)
	}
}

func TestGemCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"7.0.4", "7.0.4.1", -1}, {"7.0.4.1", "7.0.4", 1}, {"7.0", "7.0.0", 0}, {"7.0.0.rc1", "7.0.0", -1},
		{"7.0.0-rc1", "7.0.0", -1}, {"10.0", "9.9", 1}, {"6.1.7.1", "6.1.7.10", -1},
	} {
		if got := GemCompare(tc.a, tc.b); got != tc.want {
			t.Errorf("GemCompare(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestGems(t *testing.T) {
	a := events.Affected{Ecosystem: "rubygems", Package: "actionpack", Ranges: []events.VersionRange{{Introduced: "7.0.0", Fixed: "7.0.4.1"}}}
	if got, _ := Gems(a, "GHSA-1", "7.0.4"); len(got) != 1 || got[0].Fixed != "7.0.4.1" {
		t.Errorf("rails 7.0.4: %+v", got)
	}
	if got, _ := Gems(a, "GHSA-1", ""); got != nil {
		t.Errorf("no rails: %+v", got)
	}
	other := a
	other.Package = "nokogiri"
	if got, _ := Gems(other, "GHSA-1", "7.0.4"); got != nil {
		t.Errorf("gem outside rails: %+v", got)
	}
}
