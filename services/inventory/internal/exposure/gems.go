package exposure

import (
	"strconv"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// RailsGems are the gems released in lockstep with Rails: the scan's Rails component (the
// rails line of Gemfile.lock) stands for all of them.
var RailsGems = []string{"rails", "railties", "actionpack", "actionview", "activesupport",
	"activerecord", "activemodel", "activejob", "actionmailer", "actioncable", "activestorage",
	"actiontext", "actionmailbox"}

// GemCompare orders RubyGems versions: dot-separated segments, numbers numerically, and a
// segment with letters (a pre-release, "1.0.0.rc1" or "1.0.0-rc1") sorts before any number.
func GemCompare(a, b string) int {
	as, bs := gemSegments(a), gemSegments(b)
	for i := 0; i < max(len(as), len(bs)); i++ {
		x, y := "0", "0"
		if i < len(as) {
			x = as[i]
		}
		if i < len(bs) {
			y = bs[i]
		}
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn != yn {
				if xn < yn {
					return -1
				}
				return 1
			}
		case xerr == nil:
			return 1
		case yerr == nil:
			return -1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return 0
}

// gemSegments splits "1.2.0.rc1" or "1.2.0-rc1" into 1 2 0 rc 1, as RubyGems does.
func gemSegments(v string) []string {
	v = strings.ReplaceAll(strings.TrimSpace(v), "-", ".pre.")
	var out []string
	for part := range strings.SplitSeq(v, ".") {
		start := 0
		for i := 1; i <= len(part); i++ {
			if i == len(part) || isDigit(part[i]) != isDigit(part[i-1]) {
				out = append(out, part[start:i])
				start = i
			}
		}
	}
	return out
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Gems returns what a rubygems entry exposes on a host running Rails at version: entries for
// gems outside Rails are skipped (the inventory knows no other gem versions).
func Gems(a events.Affected, advisoryID, railsVersion string) ([]query.ExposedPackage, error) {
	if a.Ecosystem != events.EcosystemRubyGems || railsVersion == "" {
		return nil, nil
	}
	rails := false
	for _, g := range RailsGems {
		rails = rails || g == a.Package
	}
	if !rails {
		return nil, nil
	}
	v, err := Check(a, railsVersion)
	if err != nil || !v.Affected {
		return nil, err
	}
	return []query.ExposedPackage{{Name: a.Package, Installed: railsVersion, SourceName: a.Package,
		SourceVersion: railsVersion, Fixed: v.Fixed, AdvisoryID: advisoryID}}, nil
}
