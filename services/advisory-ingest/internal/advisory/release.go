package advisory

import "strings"

// debianReleases maps codenames to the VERSION_ID a host's os-release
// reports. Releases older than os-release (7) keep the numbering OSV uses
// for them ("Debian:3.0"), so both feeds agree.
var debianReleases = map[string]string{
	"woody": "3.0", "sarge": "3.1", "etch": "4.0", "lenny": "5.0", "squeeze": "6.0",
	"wheezy": "7", "jessie": "8", "stretch": "9", "buster": "10", "bullseye": "11",
	"bookworm": "12", "trixie": "13", "forky": "14", "duke": "15",
	"sid": "unstable", "unstable": "unstable",
}

// DebianRelease maps a Debian codename ("bookworm") or number ("12") to its
// VERSION_ID. ok is false for names it does not know (experimental, a typo).
func DebianRelease(s string) (release string, ok bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if r, ok := debianReleases[s]; ok {
		return r, true
	}
	if releasePattern.MatchString(s) {
		return s, true
	}
	return "", false
}

var ubuntuReleases = map[string]string{
	"warty": "4.10", "hoary": "5.04", "breezy": "5.10", "dapper": "6.06", "edgy": "6.10",
	"feisty": "7.04", "gutsy": "7.10", "hardy": "8.04", "intrepid": "8.10", "jaunty": "9.04",
	"karmic": "9.10", "lucid": "10.04", "maverick": "10.10", "natty": "11.04", "oneiric": "11.10",
	"precise": "12.04", "quantal": "12.10", "raring": "13.04", "saucy": "13.10", "trusty": "14.04",
	"utopic": "14.10", "vivid": "15.04", "wily": "15.10", "xenial": "16.04", "yakkety": "16.10",
	"zesty": "17.04", "artful": "17.10", "bionic": "18.04", "cosmic": "18.10", "disco": "19.04",
	"eoan": "19.10", "focal": "20.04", "groovy": "20.10", "hirsute": "21.04", "impish": "21.10",
	"jammy": "22.04", "kinetic": "22.10", "lunar": "23.04", "mantic": "23.10", "noble": "24.04",
	"oracular": "24.10", "plucky": "25.04", "questing": "25.10",
}

// UbuntuRelease maps an Ubuntu codename ("jammy") or version ("22.04") to
// its VERSION_ID.
func UbuntuRelease(s string) (release string, ok bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if r, ok := ubuntuReleases[s]; ok {
		return r, true
	}
	if len(s) == 5 && s[2] == '.' && releasePattern.MatchString(s) {
		return s, true
	}
	return "", false
}
