// Package drift compares two observations of a host: which packages changed, and which of
// those changes no Patchfleet upgrade explains. It is pure; the store feeds it the previous
// and current package lists and the versions Patchfleet installed.
package drift

import (
	"cmp"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

type key struct{ name, arch string }

// Changes lists the packages installed, removed or changed between prev and cur, by name and
// architecture. Packages that are listed but not installed (config files only, half
// installed) count as absent.
func Changes(prev, cur []query.Package) []events.PackageChange {
	index := func(ps []query.Package) map[key]query.Package {
		m := make(map[key]query.Package, len(ps))
		for _, p := range ps {
			if installed(p.Status) {
				m[key{p.Name, p.Arch}] = p
			}
		}
		return m
	}
	before, after := index(prev), index(cur)
	var out []events.PackageChange
	for k, a := range after {
		b, had := before[k]
		if had && b.Version == a.Version {
			continue
		}
		out = append(out, events.PackageChange{Name: k.name, Arch: k.arch, From: b.Version, To: a.Version,
			SourceName: a.SourceName, SourceVersion: a.SourceVersion})
	}
	for k, b := range before {
		if _, kept := after[k]; !kept {
			out = append(out, events.PackageChange{Name: k.name, Arch: k.arch, From: b.Version,
				SourceName: b.SourceName, SourceVersion: b.SourceVersion})
		}
	}
	slices.SortFunc(out, func(x, y events.PackageChange) int {
		return cmp.Or(strings.Compare(x.Name, y.Name), strings.Compare(x.Arch, y.Arch))
	})
	return out
}

// installed mirrors hostfacts: dpkg state i, or triggers pending or awaited.
func installed(status string) bool {
	return len(status) >= 2 && strings.ContainsRune("itW", rune(status[1]))
}

// Install is a package version a Patchfleet upgrade put on the host (Version "" for a package
// it removed). Name may carry an architecture qualifier ("libc6:amd64").
type Install struct {
	Name    string
	Version string
}

// Unexplained splits changes into drift (what no Patchfleet upgrade explains) and the installs
// that explained the rest. A change is explained only when Patchfleet installed exactly the
// version now found; any other version of the same package is drift.
func Unexplained(changes []events.PackageChange, installs []Install) (drift []events.PackageChange, used []Install) {
	type nv struct{ name, version string }
	by := map[nv]Install{}
	for _, in := range installs {
		// "libc6" explains any architecture's libc6, "libc6:i386" only the i386 one.
		by[nv{in.Name, in.Version}] = in
	}
	seen := map[Install]bool{}
	for _, c := range changes {
		in, ok := by[nv{c.Name + ":" + c.Arch, c.To}]
		if !ok {
			in, ok = by[nv{c.Name, c.To}]
		}
		if !ok {
			drift = append(drift, c)
			continue
		}
		if !seen[in] {
			seen[in] = true
			used = append(used, in)
		}
	}
	return drift, used
}
