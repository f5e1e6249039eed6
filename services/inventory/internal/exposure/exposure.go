// Package exposure decides whether installed packages are affected by an advisory's affected
// entries. It is pure: the caller fetches candidate packages (installed binaries whose source
// package an entry names) and the host's release, and gets back what is exposed.
package exposure

import (
	"fmt"
	"slices"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/query"
)

// OSEcosystem is the advisory ecosystem of a host's os-release ID: Debian hosts match only
// debian entries, Ubuntu hosts only ubuntu entries. ok is false for any other distribution.
func OSEcosystem(osID string) (eco string, ok bool) {
	switch osID {
	case "debian":
		return events.EcosystemDebian, true
	case "ubuntu":
		return events.EcosystemUbuntu, true
	}
	return "", false
}

// HostOS is the os-release ID a host must have to match an entry of ecosystem eco
// (the inverse of OSEcosystem).
func HostOS(eco string) (string, bool) {
	switch eco {
	case events.EcosystemDebian:
		return "debian", true
	case events.EcosystemUbuntu:
		return "ubuntu", true
	}
	return "", false
}

// Applies reports whether an entry concerns a host with this os-release ID and VERSION_ID.
// Ubuntu Pro (ESM) entries apply to every Ubuntu host of the release: whether a host has Pro
// attached is not in the inventory, and a host without it is exposed all the same (it simply
// cannot get the fix from the public archive).
func Applies(a events.Affected, osID, release string) bool {
	eco, ok := OSEcosystem(osID)
	return ok && a.Ecosystem == eco && a.Release == release && release != ""
}

// Verdict says whether one source version is affected and which version fixes it ("" when no
// fix exists yet).
type Verdict struct {
	Affected bool
	Fixed    string
}

// Check decides for a Debian/Ubuntu source version. Ranges decide when present: affected at or
// above Introduced and below Fixed (or at or below LastAffected, or everything above
// Introduced when the range has neither). Without ranges, FixedVersion decides; without
// either, only the listed Versions are affected, and an entry with nothing at all means
// "affected, no fix yet".
func Check(a events.Affected, sourceVersion string) (Verdict, error) {
	cmp := func(x, y string) (int, error) { return deb.Compare(x, y) }
	if a.Ecosystem == events.EcosystemRubyGems {
		cmp = func(x, y string) (int, error) { return GemCompare(x, y), nil }
	}
	listed := slices.Contains(a.Versions, sourceVersion)
	if len(a.Ranges) > 0 {
		for _, r := range a.Ranges {
			in, err := inRange(cmp, r, sourceVersion)
			if err != nil {
				return Verdict{}, err
			}
			if in {
				fixed := r.Fixed
				if fixed == "" && r.LastAffected == "" {
					fixed = a.FixedVersion
				}
				return Verdict{Affected: true, Fixed: fixed}, nil
			}
		}
		if listed {
			// Listed but outside every range: the lowest fix above it is the one to install.
			return Verdict{Affected: true, Fixed: fixAbove(cmp, a, sourceVersion)}, nil
		}
		return Verdict{}, nil
	}
	if listed {
		return Verdict{Affected: true, Fixed: a.FixedVersion}, nil
	}
	if a.FixedVersion != "" {
		c, err := cmp(sourceVersion, a.FixedVersion)
		if err != nil {
			return Verdict{}, fmt.Errorf("compare %s with fixed %s: %w", sourceVersion, a.FixedVersion, err)
		}
		return Verdict{Affected: c < 0, Fixed: a.FixedVersion}, nil
	}
	if len(a.Versions) > 0 {
		return Verdict{}, nil
	}
	return Verdict{Affected: true}, nil
}

func fixAbove(cmp func(x, y string) (int, error), a events.Affected, v string) string {
	best := a.FixedVersion
	for _, r := range a.Ranges {
		if r.Fixed == "" {
			continue
		}
		if c, err := cmp(r.Fixed, v); err != nil || c <= 0 {
			continue
		}
		if c, err := cmp(r.Fixed, best); best == "" || err == nil && c < 0 {
			best = r.Fixed
		}
	}
	return best
}

func inRange(cmp func(x, y string) (int, error), r events.VersionRange, v string) (bool, error) {
	if r.Introduced != "" && r.Introduced != "0" {
		c, err := cmp(v, r.Introduced)
		if err != nil {
			return false, fmt.Errorf("compare %s with introduced %s: %w", v, r.Introduced, err)
		}
		if c < 0 {
			return false, nil
		}
	}
	switch {
	case r.Fixed != "":
		c, err := cmp(v, r.Fixed)
		if err != nil {
			return false, fmt.Errorf("compare %s with fixed %s: %w", v, r.Fixed, err)
		}
		return c < 0, nil
	case r.LastAffected != "":
		c, err := cmp(v, r.LastAffected)
		if err != nil {
			return false, fmt.Errorf("compare %s with last affected %s: %w", v, r.LastAffected, err)
		}
		return c <= 0, nil
	}
	return true, nil
}

// Affects reports whether any of pkgs is built from the entry's source package at an affected
// version: Packages without building the list. memo is as for Packages.
func Affects(a events.Affected, pkgs []query.Package, memo map[string]Verdict) (bool, error) {
	for _, p := range pkgs {
		if p.SourceName != a.Package {
			continue
		}
		v, err := verdict(a, p.SourceVersion, memo)
		if err != nil {
			return false, err
		}
		if v.Affected {
			return true, nil
		}
	}
	return false, nil
}

func verdict(a events.Affected, sourceVersion string, memo map[string]Verdict) (Verdict, error) {
	if v, ok := memo[sourceVersion]; ok {
		return v, nil
	}
	v, err := Check(a, sourceVersion)
	if err != nil {
		return Verdict{}, fmt.Errorf("%s %s: %w", a.Package, sourceVersion, err)
	}
	if memo != nil {
		memo[sourceVersion] = v
	}
	return v, nil
}

// Packages returns the installed binaries built from the entry's source package at an affected
// source version, each with the version that fixes it: the binary's own fixed version when the
// advisory lists it (binNMUs and epochs make them differ), else the source's. pkgs may hold
// other sources' packages; they are skipped. memo (may be nil) keeps verdicts by source
// version across calls for the same entry: a fleet holds few versions of one source, in
// many package sets.
func Packages(a events.Affected, advisoryID string, pkgs []query.Package, memo map[string]Verdict) ([]query.ExposedPackage, error) {
	var out []query.ExposedPackage
	for _, p := range pkgs {
		if p.SourceName != a.Package {
			continue
		}
		v, err := verdict(a, p.SourceVersion, memo)
		if err != nil {
			return nil, err
		}
		if !v.Affected {
			continue
		}
		fixed := v.Fixed
		if fixed != "" {
			for _, b := range a.Binaries {
				if b.Name == p.Name && b.Version != "" {
					fixed = b.Version
				}
			}
		}
		out = append(out, query.ExposedPackage{Name: p.Name, Arch: p.Arch, Installed: p.Version,
			SourceName: p.SourceName, SourceVersion: p.SourceVersion, Fixed: fixed, AdvisoryID: advisoryID})
	}
	return out, nil
}
