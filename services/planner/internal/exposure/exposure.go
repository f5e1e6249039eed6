// Package exposure decides which installed packages of one host an advisory affects, in
// Debian version ordering and through the source → binary package mapping. The planner uses
// it to re-evaluate one host after an inventory change against the advisories it knows,
// rather than asking the inventory once per advisory.
package exposure

import (
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/query"
)

// Advisory is an advisory's id and what it affects.
type Advisory struct {
	ID       string
	Affected []events.Affected
}

// Match returns the host's exposed binary packages, one entry per (advisory, package). A
// package is exposed when its source package is affected for the host's distribution
// release and the installed source version is below the fix (or, without a fix, listed or
// inside a range). Fixed is the binary's own fixed version when the advisory names it, else
// the source's.
func Match(os events.OSRelease, pkgs []query.Package, advisories []Advisory) []query.ExposedPackage {
	index := map[string][]struct {
		adv string
		aff *events.Affected
	}{}
	for _, a := range advisories {
		for i := range a.Affected {
			af := &a.Affected[i]
			if af.Ecosystem != os.ID || af.Release != os.VersionID {
				continue
			}
			index[af.Package] = append(index[af.Package], struct {
				adv string
				aff *events.Affected
			}{a.ID, af})
		}
	}
	var out []query.ExposedPackage
	for _, p := range pkgs {
		if strings.Contains(p.Status, "config-files") || strings.Contains(p.Status, "not-installed") {
			continue
		}
		source, version := p.SourceName, p.SourceVersion
		if source == "" {
			source, version = p.Name, p.Version
		}
		for _, m := range index[source] {
			if !affected(version, m.aff) {
				continue
			}
			fixed := m.aff.FixedVersion
			for _, b := range m.aff.Binaries {
				if b.Name == p.Name && b.Version != "" {
					fixed = b.Version
				}
			}
			out = append(out, query.ExposedPackage{
				Name: p.Name, Arch: p.Arch, Installed: p.Version, SourceName: source, SourceVersion: version,
				Fixed: fixed, AdvisoryID: m.adv,
			})
		}
	}
	return out
}

func less(a, b string) bool {
	c, err := deb.Compare(a, b)
	return err == nil && c < 0
}

func affected(v string, a *events.Affected) bool {
	if a.FixedVersion != "" {
		return less(v, a.FixedVersion)
	}
	for _, x := range a.Versions {
		if c, err := deb.Compare(v, x); err == nil && c == 0 {
			return true
		}
	}
	for _, r := range a.Ranges {
		if r.Introduced != "" && r.Introduced != "0" && less(v, r.Introduced) {
			continue
		}
		switch {
		case r.Fixed != "" && less(v, r.Fixed):
			return true
		case r.LastAffected != "" && !less(r.LastAffected, v):
			return true
		case r.Fixed == "" && r.LastAffected == "":
			return true
		}
	}
	// Affected with no fix and no version information: every version is.
	return len(a.Versions) == 0 && len(a.Ranges) == 0
}
