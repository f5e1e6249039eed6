package query

import (
	"cmp"
	"reflect"
	"slices"
	"testing"

	"github.com/patchfleet/patchfleet/events"
)

func TestGroupExposure(t *testing.T) {
	bookworm := events.OSRelease{ID: "debian", VersionID: "12", Codename: "bookworm"}
	jammy := events.OSRelease{ID: "ubuntu", VersionID: "22.04", Codename: "jammy"}
	ssl := []ExposedPackage{{Name: "libssl3", Arch: "amd64", Installed: "3.0.11-1", SourceName: "openssl", SourceVersion: "3.0.11-1", Fixed: "3.0.13-1", AdvisoryID: "DSA-1"}}
	sslOther := []ExposedPackage{{Name: "libssl3", Arch: "amd64", Installed: "3.0.11-1", SourceName: "openssl", SourceVersion: "3.0.11-1", Fixed: "3.0.13-1", AdvisoryID: "DSA-2"}}
	// Field boundaries must count: "libssl3"+"amd64" is not "libssl"+"3amd64".
	shifted := []ExposedPackage{{Name: "libssl", Arch: "3amd64", Installed: "3.0.11-1", SourceName: "openssl", SourceVersion: "3.0.11-1", Fixed: "3.0.13-1", AdvisoryID: "DSA-1"}}
	hosts := []ExposedHost{
		{HostID: "a", Name: "web-a", Fleet: "web", OS: bookworm, Packages: ssl},
		{HostID: "b", Name: "db-b", Fleet: "db", OS: jammy, Packages: ssl},
		{HostID: "c", Name: "web-c", Fleet: "web", OS: bookworm, Packages: slices.Clone(ssl)},
		{HostID: "d", Name: "web-d", Fleet: "web", OS: bookworm, Packages: sslOther},
		{HostID: "e", Name: "web-e", Fleet: "web", OS: bookworm, Packages: shifted},
		{HostID: "f", Name: "web-f", Fleet: "web", OS: bookworm, Packages: nil},
		{HostID: "g", Name: "db-g", Fleet: "db", OS: bookworm, Packages: ssl},
	}
	groups := GroupExposure(hosts)
	var got [][]string
	for _, g := range groups {
		var ids []string
		for _, f := range g.Fleets {
			for _, id := range f.HostIDs {
				ids = append(ids, f.Fleet+"/"+id)
			}
		}
		got = append(got, ids)
	}
	// A group lists its fleets in the order of their first host.
	want := [][]string{{"web/a", "web/c", "db/g"}, {"db/b"}, {"web/d"}, {"web/e"}, {"web/f"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	// Every host comes back with its fleet, OS and packages (the grouped form has no names).
	if n := groups[0].Len(); n != 3 {
		t.Errorf("first group: Len %d, want 3", n)
	}
	var back []ExposedHost
	for _, g := range groups {
		for _, f := range g.Fleets {
			for _, id := range f.HostIDs {
				back = append(back, ExposedHost{HostID: id, Fleet: f.Fleet, OS: g.OS, Packages: g.Packages})
			}
		}
	}
	slices.SortFunc(back, func(x, y ExposedHost) int { return cmp.Compare(x.HostID, y.HostID) })
	for i := range hosts {
		hosts[i].Name = ""
	}
	if !reflect.DeepEqual(back, hosts) {
		t.Fatalf("flattened groups differ:\n got %+v\nwant %+v", back, hosts)
	}
}
