package hostfacts

import "fmt"

// Facts is what one scan found on a host.
type Facts struct {
	OS       OSRelease
	Kernel   string // uname -r: the running kernel
	Arch     string // uname -m, e.g. x86_64
	DpkgArch string // dpkg --print-architecture, e.g. amd64
	BootID   string // changes on every boot
	Hostname string

	Packages []Package
	// Held lists packages held back from upgrades, as apt-mark prints them
	// (name, or name:arch for foreign-architecture packages).
	Held []string

	RebootRequired bool
	// RebootPackages are the packages that asked for the reboot, without
	// duplicates, in the order they asked.
	RebootPackages []string

	Components []Component

	// Problems lists what could not be read: malformed lines, failed
	// probes, missing sections. A scan with problems still carries every
	// fact that could be read.
	Problems []Problem
}

// OSRelease holds the fields of os-release(5) that identify a release.
type OSRelease struct {
	ID              string   // debian, ubuntu
	IDLike          []string // ID_LIKE, e.g. [debian] on Ubuntu
	Name            string
	PrettyName      string
	VersionID       string // 12, 22.04; empty on testing and unstable
	VersionCodename string // bookworm, jammy
}

// Package is one line of dpkg-query output.
type Package struct {
	Name          string
	Version       string
	Arch          string
	SourceName    string // the binary's name when dpkg does not say
	SourceVersion string // the binary's version when dpkg does not say
	// Status is dpkg's db:Status-Abbrev: desired action, package state and
	// error flag, e.g. "ii" (the trailing space of a clean state is
	// dropped).
	Status string
	// Installed is true when dpkg considers the package configured: state
	// i, or triggers pending (t) or awaited (W). Half-installed, unpacked
	// and config-files packages are listed but not Installed.
	Installed bool
}

// Component is a piece of software detected outside dpkg's view, or whose
// version matters on its own (Ruby, Rails, Docker…).
type Component struct {
	Name string
	// App is the application directory for per-app components (Rails);
	// empty for host-wide ones.
	App     string
	Present bool
	Version string // empty when absent
}

// Problem is one thing Parse could not read.
type Problem struct {
	Line    int    // 1-based line of the report; 0 for a whole section
	Section string // empty for problems outside any section
	Reason  string
}

func (p Problem) String() string {
	switch {
	case p.Line > 0 && p.Section != "":
		return fmt.Sprintf("line %d (%s): %s", p.Line, p.Section, p.Reason)
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
	case p.Section != "":
		return fmt.Sprintf("section %s: %s", p.Section, p.Reason)
	}
	return p.Reason
}
