package drift

import (
	"reflect"
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

func pkg(name, arch, version, status string) query.Package {
	return query.Package{Name: name, Arch: arch, Version: version, SourceName: name, SourceVersion: version, Status: status}
}

func TestChanges(t *testing.T) {
	prev := []query.Package{pkg("curl", "amd64", "1", "ii"), pkg("libc6", "amd64", "2", "ii"), pkg("libc6", "i386", "2", "ii"),
		pkg("old", "all", "1", "ii"), pkg("conf", "all", "1", "rc")}
	cur := []query.Package{pkg("curl", "amd64", "1", "ii"), pkg("libc6", "amd64", "3", "ii"), pkg("libc6", "i386", "2", "ii"),
		pkg("new", "amd64", "1", "ii"), pkg("conf", "all", "1", "rc"), pkg("half", "all", "1", "iU")}
	want := []events.PackageChange{
		{Name: "libc6", Arch: "amd64", From: "2", To: "3", SourceName: "libc6", SourceVersion: "3"},
		{Name: "new", Arch: "amd64", To: "1", SourceName: "new", SourceVersion: "1"},
		{Name: "old", Arch: "all", From: "1", SourceName: "old", SourceVersion: "1"},
	}
	if got := Changes(prev, cur); !reflect.DeepEqual(got, want) {
		t.Errorf("Changes =\n%+v\nwant\n%+v", got, want)
	}
	if got := Changes(cur, cur); len(got) != 0 {
		t.Errorf("no change: %+v", got)
	}
}

func TestUnexplained(t *testing.T) {
	change := func(name, arch, from, to string) events.PackageChange {
		return events.PackageChange{Name: name, Arch: arch, From: from, To: to}
	}
	for _, tc := range []struct {
		name      string
		changes   []events.PackageChange
		installs  []Install
		wantDrift []string
		wantUsed  int
	}{
		{"all explained", []events.PackageChange{change("libc6", "amd64", "1", "2")}, []Install{{"libc6", "2"}}, nil, 1},
		{"manual upgrade", []events.PackageChange{change("curl", "amd64", "1", "2")}, []Install{{"libc6", "2"}}, []string{"curl"}, 0},
		{"other version than installed", []events.PackageChange{change("libc6", "amd64", "1", "3")}, []Install{{"libc6", "2"}}, []string{"libc6"}, 0},
		{"arch qualified", []events.PackageChange{change("libc6", "i386", "1", "2"), change("libc6", "amd64", "1", "2")},
			[]Install{{"libc6:i386", "2"}}, []string{"libc6"}, 1},
		{"removal explained", []events.PackageChange{change("old", "all", "1", "")}, []Install{{"old", ""}}, nil, 1},
		{"removal not explained", []events.PackageChange{change("old", "all", "1", "")}, nil, []string{"old"}, 0},
		{"one install, two arches", []events.PackageChange{change("libc6", "i386", "1", "2"), change("libc6", "amd64", "1", "2")},
			[]Install{{"libc6", "2"}}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drift, used := Unexplained(tc.changes, tc.installs)
			var names []string
			for _, d := range drift {
				names = append(names, d.Name)
			}
			if !reflect.DeepEqual(names, tc.wantDrift) || len(used) != tc.wantUsed {
				t.Errorf("drift %v used %v, want %v and %d used", names, used, tc.wantDrift, tc.wantUsed)
			}
		})
	}
}
