package hostops

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/patchfleet/patchfleet/events/deb"
)

// PackageState is one package as dpkg sees it.
type PackageState struct {
	Name string
	// Present is false when dpkg has no version of it: never installed,
	// or removed and purged.
	Present       bool
	Version       string
	Arch          string
	Status        string // db:Status-Abbrev without its trailing space, e.g. "ii", "iF"
	Installed     bool   // configured: state i, or triggers pending (t) or awaited (W)
	SourceName    string // the binary's name when dpkg does not say
	SourceVersion string // the binary's version when dpkg does not say
}

// Held reports whether the package is on hold (desired action h).
func (p PackageState) Held() bool { return strings.HasPrefix(p.Status, "h") }

// stateWords are dpkg's names of the states in db:Status-Abbrev's second letter.
var stateWords = map[byte]string{'n': "not-installed", 'c': "config-files", 'H': "half-installed", 'U': "unpacked",
	'F': "half-configured", 'W': "triggers-awaited", 't': "triggers-pending", 'i': "installed"}

// Describe names the package with dpkg's words for its state: "pf-broken 1.1
// half-configured", "libfoo 2.0 installed, reinstreq".
func (p PackageState) Describe() string {
	s := p.Name
	if p.Version != "" {
		s += " " + p.Version
	}
	if len(p.Status) >= 2 {
		s += " " + stateWords[p.Status[1]]
	}
	if len(p.Status) == 3 && p.Status[2] == 'R' {
		s += ", reinstreq"
	}
	return s
}

// parsePackages reads pf_packages lines:
//
//	${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\t${source:Package}\t${source:Version}
//	<name>\tabsent
func parsePackages(r *Report, sect string, lines []string) []PackageState {
	var out []PackageState
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		p, err := parsePackageLine(l)
		if err != nil {
			r.problem("section %s line %d: %v", sect, i+1, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

func parsePackageLine(l string) (PackageState, error) {
	f := strings.Split(l, "\t")
	if len(f) == 2 && f[1] == "absent" {
		if err := deb.ValidPackageName(f[0]); err != nil {
			return PackageState{}, err
		}
		return PackageState{Name: f[0]}, nil
	}
	if len(f) != 6 {
		return PackageState{}, fmt.Errorf("want 6 tab-separated fields, got %d", len(f))
	}
	name, version, arch, status, srcName, srcVersion := f[0], f[1], f[2], strings.TrimRight(f[3], " "), f[4], f[5]
	if err := deb.ValidPackageName(name); err != nil {
		return PackageState{}, err
	}
	if err := validStatus(status); err != nil {
		return PackageState{}, fmt.Errorf("package %s: %w", name, err)
	}
	p := PackageState{Name: name, Status: status}
	if status[1] == 'n' || version == "" {
		// dpkg only remembers it (not-installed): no version on the host.
		return p, nil
	}
	if err := deb.ValidVersion(version); err != nil {
		return PackageState{}, fmt.Errorf("package %s: %w", name, err)
	}
	if err := deb.ValidArchitecture(arch); err != nil {
		return PackageState{}, fmt.Errorf("package %s: %w", name, err)
	}
	if srcName == "" {
		srcName = name
	} else if err := deb.ValidPackageName(srcName); err != nil {
		return PackageState{}, fmt.Errorf("package %s: source: %w", name, err)
	}
	if srcVersion == "" {
		srcVersion = version
	} else if err := deb.ValidVersion(srcVersion); err != nil {
		return PackageState{}, fmt.Errorf("package %s: source: %w", name, err)
	}
	p.Present, p.Version, p.Arch = true, version, arch
	p.SourceName, p.SourceVersion = srcName, srcVersion
	p.Installed = strings.IndexByte("itW", status[1]) >= 0
	return p, nil
}

// validStatus checks a db:Status-Abbrev: desired action, state, optional
// error flag R (reinstall required).
func validStatus(s string) error {
	if len(s) != 2 && len(s) != 3 {
		return fmt.Errorf("status %.16q: want 2 or 3 characters", s)
	}
	if strings.IndexByte("uihrp", s[0]) < 0 {
		return fmt.Errorf("status %q: unknown desired action %q", s, s[0])
	}
	if strings.IndexByte("ncHUFWti", s[1]) < 0 {
		return fmt.Errorf("status %q: unknown state %q", s, s[1])
	}
	if len(s) == 3 && s[2] != 'R' {
		return fmt.Errorf("status %q: unknown error flag %q", s, s[2])
	}
	return nil
}

// findPackage returns the first state of name.
func findPackage(ps []PackageState, name string) (PackageState, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p, true
		}
	}
	return PackageState{}, false
}

// parseUnfinished reads the dpkg-unfinished section. Any line at all means dpkg was left
// unfinished, also one the parser cannot read (reported as a problem). A failed read is a
// problem too, and says nothing either way: apt finds out.
func parseUnfinished(r *report) ([]PackageState, bool) {
	sec, ok := r.ok("dpkg-unfinished")
	if !ok {
		return nil, false
	}
	unfinished := slices.ContainsFunc(sec.body, func(l string) bool { return strings.TrimSpace(l) != "" })
	return parsePackages(&r.Report, "dpkg-unfinished", sec.body), unfinished
}

// parseUpdates reads the dpkg-updates section: the files in dpkg's journal.
func parseUpdates(sec *section) []string {
	if sec == nil || sec.status != 0 {
		return nil
	}
	var out []string
	for _, l := range sec.body {
		if t := strings.TrimSpace(l); t != "" {
			out = append(out, clean(t))
		}
	}
	return out
}

// State is what op state found.
type State struct {
	Report
	BootID   string
	Packages []PackageState
	Held     []string // the asked packages whose dpkg selection is hold (older reports: apt-mark showhold, name or name:arch)
	// Unfinished are the packages dpkg left between states (half-installed,
	// unpacked, half-configured, triggers awaited or pending) or marked for
	// reinstallation.
	Unfinished []PackageState
	// PendingUpdates are the files in /var/lib/dpkg/updates: dpkg stopped
	// before it could fold them into its database.
	PendingUpdates []string
	// DpkgInterrupted: an earlier dpkg run did not finish; apt refuses to
	// work until dpkg --configure -a (op repair) runs.
	DpkgInterrupted bool
	Disks           []Disk // for / and /var, in that order
	RebootRequired  bool
	RebootPackages  []string
	// RebootScheduled: op reboot ran during this boot (RebootMarkerPath
	// exists), so a reboot is on its way. RebootScheduledKnown is false when
	// the report does not say (an older script, or the step failed).
	RebootScheduled      bool
	RebootScheduledKnown bool
}

// Package returns the state of the named package.
func (s State) Package(name string) (PackageState, bool) { return findPackage(s.Packages, name) }

// Disk returns the free space of the file system holding path ("/" or
// "/var").
func (s State) Disk(path string) (Disk, bool) {
	for _, d := range s.Disks {
		if d.Path == path {
			return d, true
		}
	}
	return Disk{}, false
}

// Disk is one line of df -Pk.
type Disk struct {
	Path       string // the path asked about
	Filesystem string
	Mount      string
	TotalKB    int64
	UsedKB     int64
	AvailKB    int64
}

// dfPaths are the paths op state asks df about, in order.
var dfPaths = []string{"/", "/var"}

// ParseState reads the output of StateScript.
func ParseState(out []byte) (State, error) {
	r, err := parseReport(out, OpState)
	if err != nil {
		return State{}, fmt.Errorf("parse state: %w", err)
	}
	s := State{}
	if sec, ok := r.ok("boot-id"); ok {
		s.BootID = strings.TrimSpace(sec.stdout())
		if err := validBootID(s.BootID); err != nil {
			r.problem("section boot-id: %v", err)
			s.BootID = ""
		}
	}
	if sec, ok := r.ok("packages"); ok {
		s.Packages = parsePackages(&r.Report, "packages", sec.body)
	} else if sec != nil {
		s.Packages = parsePackages(&r.Report, "packages", sec.body) // partial is better than none
	}
	// Reports of earlier scripts have a held section (apt-mark showhold); the packages'
	// dpkg status says the same of the packages asked about.
	if r.sections["held"] != nil {
		if sec, ok := r.ok("held"); ok {
			s.Held = parseHeld(&r.Report, sec.body)
		}
	}
	if s.Held == nil {
		for _, p := range s.Packages {
			if p.Held() {
				s.Held = append(s.Held, p.Name)
			}
		}
	}
	var unfinished bool
	s.Unfinished, unfinished = parseUnfinished(&r)
	s.PendingUpdates = parseUpdates(r.get("dpkg-updates"))
	s.DpkgInterrupted = unfinished || len(s.PendingUpdates) > 0
	if sec := r.get("df"); sec != nil {
		s.Disks = parseDF(&r.Report, sec.body, dfPaths)
	}
	if sec, ok := r.ok("reboot-required"); ok {
		s.RebootRequired, s.RebootPackages = parseRebootRequired(&r.Report, sec.body)
	}
	// Older scripts have no reboot-scheduled section: that is not a problem.
	if r.sections["reboot-scheduled"] != nil {
		if sec, ok := r.ok("reboot-scheduled"); ok {
			switch l := strings.TrimSpace(firstLine(sec.body)); l {
			case "yes", "no":
				s.RebootScheduled, s.RebootScheduledKnown = l == "yes", true
			default:
				r.problem("section reboot-scheduled: want yes or no, got %.32q", clean(l))
			}
		}
	}
	s.Report = r.Report
	return s, nil
}

func parseHeld(r *Report, lines []string) []string {
	var out []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		if _, _, err := deb.SplitArchQualifier(t); err != nil {
			r.problem("section held: %v", err)
			continue
		}
		out = append(out, t)
	}
	return out
}

// parseDF reads df -Pk: a header, then one line per path asked, in order.
func parseDF(r *Report, lines []string, paths []string) []Disk {
	var out []Disk
	i := 0
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] == "Filesystem" {
			continue
		}
		if len(f) < 6 || i >= len(paths) {
			r.problem("section df: unexpected line %.64q", clean(l))
			continue
		}
		var n [3]int64
		bad := false
		for j := range n {
			v, err := strconv.ParseInt(f[1+j], 10, 64)
			if err != nil || v < 0 {
				bad = true
			}
			n[j] = v
		}
		if bad {
			r.problem("section df: bad numbers in %.64q", clean(l))
			i++
			continue
		}
		out = append(out, Disk{Path: paths[i], Filesystem: clean(f[0]), Mount: clean(strings.Join(f[5:], " ")),
			TotalKB: n[0], UsedKB: n[1], AvailKB: n[2]})
		i++
	}
	return out
}

// parseRebootRequired reads "yes" or "no", then reboot-required.pkgs.
func parseRebootRequired(r *Report, lines []string) (bool, []string) {
	if len(lines) == 0 {
		r.problem("section reboot-required: empty")
		return false, nil
	}
	var req bool
	switch strings.TrimSpace(lines[0]) {
	case "yes":
		req = true
	case "no":
	default:
		r.problem("section reboot-required: want yes or no, got %.32q", clean(lines[0]))
	}
	var pkgs []string
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		t := strings.TrimSpace(l)
		if t == "" || seen[t] {
			continue
		}
		if err := deb.ValidPackageName(t); err != nil {
			r.problem("section reboot-required: %v", err)
			continue
		}
		seen[t] = true
		pkgs = append(pkgs, t)
	}
	return req, pkgs
}

// AptOutcome is what one apt-get or dpkg run printed.
type AptOutcome struct {
	// Ran is false when the step never reported (the script was cut off,
	// or the op did not need it).
	Ran            bool
	Status         int
	Stdout, Stderr string
	Errors         []string // "E: " lines, without the prefix
	Warnings       []string // "W: " lines, without the prefix
	// Changes are the packages dpkg unpacked, from "Unpacking" lines.
	Changes []Change
	// Failed are the packages dpkg names after "Errors were encountered
	// while processing:".
	Failed []string
	// LockTimeout: apt gave up waiting for the dpkg lock.
	LockTimeout bool
	// LockWaited: apt found the dpkg lock held and waited for it.
	LockWaited bool
	// LockHolder is the holder apt last named while waiting or giving up, as apt put
	// it: "process 1234 (unattended-upgr)".
	LockHolder string
	// HeldPackages: apt refused because a package to change is held.
	HeldPackages bool
	// DpkgInterrupted: apt refused until dpkg --configure -a runs.
	DpkgInterrupted bool
}

// Change is one package dpkg unpacked.
type Change struct {
	Name string
	Arch string // when apt printed a qualifier
	From string // empty for a new install
	To   string
}

// Output returns stdout then stderr, for a failure's output tail.
func (a AptOutcome) Output() string { return a.Stdout + a.Stderr }

// failed reports whether the step ran and failed: for an op's update step, that nothing
// after it ran.
func (a AptOutcome) failed() bool { return a.Ran && a.Status != 0 }

func aptOutcome(s *section) AptOutcome {
	if s == nil {
		return AptOutcome{Status: -1}
	}
	a := AptOutcome{Ran: s.status >= 0, Status: s.status, Stdout: s.stdout(), Stderr: s.errout()}
	inFailed := false
	for _, l := range append(append([]string(nil), s.body...), s.stderr...) {
		if inFailed {
			if strings.HasPrefix(l, " ") {
				if name := strings.TrimSpace(l); deb.ValidPackageName(name) == nil {
					a.Failed = append(a.Failed, name)
				}
				continue
			}
			inFailed = false
		}
		if holder, ok := lockHolder(l); ok {
			a.LockHolder = holder
		}
		switch {
		case strings.HasPrefix(l, "E: "):
			msg := clean(l[3:])
			a.Errors = append(a.Errors, msg)
			a.LockTimeout = a.LockTimeout || strings.Contains(msg, "Could not get lock") ||
				strings.Contains(msg, "Unable to acquire the dpkg frontend lock") ||
				strings.Contains(msg, "Unable to lock the administration directory")
			a.HeldPackages = a.HeldPackages || strings.Contains(msg, "Held packages were changed")
			a.DpkgInterrupted = a.DpkgInterrupted || strings.Contains(msg, "dpkg was interrupted")
		case strings.HasPrefix(l, "W: "):
			a.Warnings = append(a.Warnings, clean(l[3:]))
		case strings.HasPrefix(l, "Waiting for cache lock"):
			a.LockWaited = true
		case strings.HasPrefix(l, "Unpacking "):
			if c, ok := parseUnpacking(l); ok {
				a.Changes = append(a.Changes, c)
			}
		case strings.HasPrefix(l, "Errors were encountered while processing:"):
			inFailed = true
		}
	}
	return a
}

// lockHolder finds the process apt names in "... It is held by process 1234 (name)...".
func lockHolder(l string) (string, bool) {
	_, rest, ok := strings.Cut(l, "It is held by process ")
	if !ok {
		return "", false
	}
	pid, rest, ok := strings.Cut(rest, " (")
	name, _, closed := strings.Cut(rest, ")")
	if !ok || !closed || pid == "" || strings.Trim(pid, "0123456789") != "" {
		return "", false
	}
	return "process " + pid + " (" + clean(name) + ")", true
}

// parseUnpacking reads "Unpacking name[:arch] (new) over (old) ..." or
// "Unpacking name[:arch] (new) ...".
func parseUnpacking(l string) (Change, bool) {
	f := strings.Fields(l)
	if len(f) < 3 {
		return Change{}, false
	}
	name, arch, err := deb.SplitArchQualifier(f[1])
	if err != nil {
		return Change{}, false
	}
	to, ok := parenVersion(f[2])
	if !ok {
		return Change{}, false
	}
	c := Change{Name: name, Arch: arch, To: to}
	if len(f) >= 5 && f[3] == "over" {
		if c.From, ok = parenVersion(f[4]); !ok {
			return Change{}, false
		}
	}
	return c, true
}

func parenVersion(s string) (string, bool) {
	v, ok := strings.CutPrefix(s, "(")
	if !ok {
		return "", false
	}
	v, ok = strings.CutSuffix(v, ")")
	if !ok || deb.ValidVersion(v) != nil {
		return "", false
	}
	return v, true
}

// RepairResult is what op repair did.
type RepairResult struct {
	Report
	Configure AptOutcome // dpkg --configure -a
	// Unfinished, PendingUpdates and Interrupted as in State, afterwards.
	Unfinished     []PackageState
	PendingUpdates []string
	Interrupted    bool
}

// ParseRepair reads the output of RepairScript.
func ParseRepair(out []byte) (RepairResult, error) {
	r, err := parseReport(out, OpRepair)
	if err != nil {
		return RepairResult{}, fmt.Errorf("parse repair: %w", err)
	}
	res := RepairResult{Configure: aptOutcome(r.get("configure"))}
	var unfinished bool
	res.Unfinished, unfinished = parseUnfinished(&r)
	res.PendingUpdates = parseUpdates(r.get("dpkg-updates"))
	res.Interrupted = unfinished || len(res.PendingUpdates) > 0
	res.Report = r.Report
	return res, nil
}

// InstallResult is what op install or full-upgrade did.
type InstallResult struct {
	Report
	// Update is apt-get update's outcome when the op was asked to run it first (Ran is
	// false otherwise). When it failed, nothing else ran.
	Update AptOutcome
	// Before is the selected packages' dpkg state before (security-upgrade only: op install
	// leaves it to the state look that precedes it); After the targets' state afterwards
	// (install and security-upgrade).
	Before, After  []PackageState
	Apt            AptOutcome
	RebootRequired bool
	RebootPackages []string
}

// BeforeVersion and AfterVersion return a target's versions ("" when
// absent).
func (r InstallResult) BeforeVersion(name string) string {
	p, _ := findPackage(r.Before, name)
	return p.Version
}

func (r InstallResult) AfterVersion(name string) string {
	p, _ := findPackage(r.After, name)
	return p.Version
}

// ParseInstall reads the output of InstallScript.
func ParseInstall(out []byte) (InstallResult, error) {
	return parseInstall(out, OpInstall, "install")
}

// ParseFullUpgrade reads the output of FullUpgradeScript.
func ParseFullUpgrade(out []byte) (InstallResult, error) {
	return parseInstall(out, OpFullUpgrade, "upgrade")
}

func parseInstall(out []byte, op, step string) (InstallResult, error) {
	r, err := parseReport(out, op)
	if err != nil {
		return InstallResult{}, fmt.Errorf("parse %s: %w", op, err)
	}
	res := InstallResult{Update: aptOutcome(r.sections["update"])}
	if res.Update.failed() {
		res.Report = r.Report
		return res, nil
	}
	if op == OpInstall {
		if sec := r.get("after"); sec != nil {
			res.After = parsePackages(&r.Report, "after", sec.body)
		}
	}
	res.Apt = aptOutcome(r.get(step))
	if sec, ok := r.ok("reboot-required"); ok {
		res.RebootRequired, res.RebootPackages = parseRebootRequired(&r.Report, sec.body)
	}
	res.Report = r.Report
	return res, nil
}

// Upgrade is one package op security-upgrade selected: its installed and
// candidate versions and the releases apt takes the candidate from, as apt
// prints them ("Debian-Security:12/stable-security").
type Upgrade struct {
	Name     string
	Arch     string // when apt printed a qualifier (a foreign architecture)
	From, To string
	Releases string
}

// SecurityUpgradeResult is what op security-upgrade did. Before, After and
// Apt are about the selected packages only; Apt.Ran is true with no
// Changes when nothing was selected.
type SecurityUpgradeResult struct {
	InstallResult
	// List is the listing step (apt-get -s dist-upgrade, filtered); when it
	// failed, nothing was installed.
	List     AptOutcome
	Selected []Upgrade
}

// ParseSecurityUpgrade reads the output of SecurityUpgradeScript.
func ParseSecurityUpgrade(out []byte) (SecurityUpgradeResult, error) {
	r, err := parseReport(out, OpSecurityUpgrade)
	if err != nil {
		return SecurityUpgradeResult{}, fmt.Errorf("parse security-upgrade: %w", err)
	}
	var res SecurityUpgradeResult
	if res.Update = aptOutcome(r.sections["update"]); res.Update.failed() {
		res.Report = r.Report
		return res, nil
	}
	sec := r.get("security")
	res.List = aptOutcome(sec)
	if sec != nil {
		res.Selected = parseUpgrades(&r.Report, sec.body)
	}
	if res.List.Ran && res.List.Status == 0 {
		if sec := r.get("before"); sec != nil {
			res.Before = parsePackages(&r.Report, "before", sec.body)
		}
		if sec := r.get("after"); sec != nil {
			res.After = parsePackages(&r.Report, "after", sec.body)
		}
		res.Apt = aptOutcome(r.get("install"))
	}
	if sec, ok := r.ok("reboot-required"); ok {
		res.RebootRequired, res.RebootPackages = parseRebootRequired(&r.Report, sec.body)
	}
	res.Report = r.Report
	return res, nil
}

// parseUpgrades reads the security section: name[:arch] TAB from TAB to TAB releases.
func parseUpgrades(r *Report, lines []string) []Upgrade {
	var out []Upgrade
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Split(l, "\t")
		if len(f) != 4 {
			r.problem("section security line %d: want 4 tab-separated fields, got %d", i+1, len(f))
			continue
		}
		name, arch, err := deb.SplitArchQualifier(f[0])
		if err == nil {
			err = deb.ValidVersion(f[1])
		}
		if err == nil {
			err = deb.ValidVersion(f[2])
		}
		if err != nil {
			r.problem("section security line %d: %v", i+1, err)
			continue
		}
		out = append(out, Upgrade{Name: name, Arch: arch, From: f[1], To: f[2], Releases: clean(f[3])})
	}
	return out
}

// UnattendedResult is what op unattended did and read back.
type UnattendedResult struct {
	Report
	// Install is apt-get's run when the package was missing; Ran is false
	// when it was already installed.
	Install AptOutcome
	Package PackageState // unattended-upgrades, afterwards
	// Changed lists the files written because they differed.
	Changed []string
	// Files holds AutoUpgradesPath and UnattendedPath as read back.
	Files    map[string]string
	Settings UnattendedSettings
}

// UnattendedSettings are apt's effective settings (apt-config dump).
type UnattendedSettings struct {
	UpdatePackageLists string // APT::Periodic::Update-Package-Lists, days
	UnattendedUpgrade  string // APT::Periodic::Unattended-Upgrade, days
	AutomaticReboot    bool
	OriginsPatterns    []string
	AllowedOrigins     []string
}

// Check reports whether the settings are what op unattended configures:
// daily, security origins only, and the wanted Automatic-Reboot.
func (s UnattendedSettings) Check(autoReboot bool) error {
	switch {
	case s.UpdatePackageLists != "1":
		return fmt.Errorf("unattended-upgrades: Update-Package-Lists is %q, want \"1\"", s.UpdatePackageLists)
	case s.UnattendedUpgrade != "1":
		return fmt.Errorf("unattended-upgrades: Unattended-Upgrade is %q, want \"1\"", s.UnattendedUpgrade)
	case s.AutomaticReboot != autoReboot:
		return fmt.Errorf("unattended-upgrades: Automatic-Reboot is %t, want %t", s.AutomaticReboot, autoReboot)
	case len(s.AllowedOrigins) > 0:
		return fmt.Errorf("unattended-upgrades: Allowed-Origins %q set besides the security patterns", s.AllowedOrigins)
	case len(s.OriginsPatterns) == 0:
		return fmt.Errorf("unattended-upgrades: no origins patterns")
	}
	for _, o := range s.OriginsPatterns {
		if !contains(SecurityOrigins, o) {
			return fmt.Errorf("unattended-upgrades: origins pattern %q is not a security origin", o)
		}
	}
	return nil
}

// ParseUnattended reads the output of UnattendedScript.
func ParseUnattended(out []byte) (UnattendedResult, error) {
	r, err := parseReport(out, OpUnattended)
	if err != nil {
		return UnattendedResult{}, fmt.Errorf("parse unattended: %w", err)
	}
	res := UnattendedResult{Files: map[string]string{}}
	if sec := r.get("install-package"); sec != nil {
		if sec.status == 0 && strings.TrimSpace(sec.stdout()) == "already installed" {
			res.Install = AptOutcome{Status: 0}
		} else {
			res.Install = aptOutcome(sec)
		}
	}
	for _, path := range []string{AutoUpgradesPath, UnattendedPath} {
		if sec, ok := r.ok("write " + path); ok && strings.TrimSpace(sec.stdout()) == "changed" {
			res.Changed = append(res.Changed, path)
		}
		if sec, ok := r.ok("file " + path); ok {
			res.Files[path] = sec.stdout()
		}
	}
	if sec, ok := r.ok("settings"); ok {
		res.Settings = parseSettings(&r.Report, sec.body)
	}
	if sec, ok := r.ok("package"); ok {
		if ps := parsePackages(&r.Report, "package", sec.body); len(ps) > 0 {
			res.Package = ps[0]
		}
	}
	res.Report = r.Report
	return res, nil
}

// parseSettings reads apt-config dump lines: Key "value"; where list
// items are Key:: "value";.
func parseSettings(r *Report, lines []string) UnattendedSettings {
	var s UnattendedSettings
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		key, raw, ok := strings.Cut(l, " ")
		v, ok2 := strings.CutPrefix(raw, `"`)
		v, ok3 := strings.CutSuffix(v, `";`)
		if !ok || !ok2 || !ok3 {
			r.problem("section settings: want Key \"value\"; got %.64q", clean(l))
			continue
		}
		v = clean(v)
		switch key {
		case "APT::Periodic::Update-Package-Lists":
			s.UpdatePackageLists = v
		case "APT::Periodic::Unattended-Upgrade":
			s.UnattendedUpgrade = v
		case "Unattended-Upgrade::Automatic-Reboot":
			s.AutomaticReboot = v == "true" || v == "1" || v == "yes"
		case "Unattended-Upgrade::Origins-Pattern::":
			s.OriginsPatterns = append(s.OriginsPatterns, v)
		case "Unattended-Upgrade::Allowed-Origins::":
			s.AllowedOrigins = append(s.AllowedOrigins, v)
		}
	}
	return s
}

// RebootResult is what op reboot did before the connection dropped.
type RebootResult struct {
	Report
	BootID    string // the boot id before the reboot: a new one proves it
	Scheduled bool
	Message   string
}

// ParseReboot reads the output of RebootScript.
func ParseReboot(out []byte) (RebootResult, error) {
	r, err := parseReport(out, OpReboot)
	if err != nil {
		return RebootResult{}, fmt.Errorf("parse reboot: %w", err)
	}
	var res RebootResult
	if sec, ok := r.ok("boot-id"); ok {
		res.BootID = strings.TrimSpace(sec.stdout())
		if err := validBootID(res.BootID); err != nil {
			r.problem("section boot-id: %v", err)
			res.BootID = ""
		}
	}
	if sec, ok := r.ok("reboot"); ok {
		res.Message = firstLine(sec.body)
		res.Scheduled = strings.HasPrefix(res.Message, "scheduled")
	}
	res.Report = r.Report
	return res, nil
}

// HealthResult is what the health check printed and how it exited.
type HealthResult struct {
	Report
	Ran            bool
	Status         int
	Stdout, Stderr string
	TimedOut       bool // timeout(1) stopped it (status 124)
}

// Healthy reports whether the check ran to the end and exited 0.
func (h HealthResult) Healthy() bool { return h.Complete && h.Ran && h.Status == 0 }

// ParseHealth reads the output of HealthScript.
func ParseHealth(out []byte) (HealthResult, error) {
	r, err := parseReport(out, OpHealth)
	if err != nil {
		return HealthResult{}, fmt.Errorf("parse health: %w", err)
	}
	res := HealthResult{Status: -1}
	if sec := r.get("health"); sec != nil {
		res.Ran, res.Status = sec.status >= 0, sec.status
		res.Stdout, res.Stderr = sec.stdout(), sec.errout()
		res.TimedOut = sec.status == 124
	}
	res.Report = r.Report
	return res, nil
}

// DockerResult is what op docker did.
type DockerResult struct {
	Report
	Update        AptOutcome // as InstallResult's
	Before, After []PackageState
	Upgrade       AptOutcome
	// WeaveBefore and WeaveAfter are the weave script's versions; empty
	// when weave is not installed.
	WeaveBefore, WeaveAfter string
	WeaveUpgrade            AptOutcome // the weave step's output; Ran is false without a weave pin
}

// Failed reports whether the pinned packages' upgrade or Weave's failed.
func (r DockerResult) Failed() bool {
	return r.Upgrade.Ran && r.Upgrade.Status != 0 || r.WeaveUpgrade.Ran && r.WeaveUpgrade.Status != 0
}

// ParseDocker reads the output of DockerScript.
func ParseDocker(out []byte) (DockerResult, error) {
	r, err := parseReport(out, OpDocker)
	if err != nil {
		return DockerResult{}, fmt.Errorf("parse docker: %w", err)
	}
	res := DockerResult{Update: aptOutcome(r.sections["update"])}
	if res.Update.failed() {
		res.Report = r.Report
		return res, nil
	}
	if sec := r.sections["before"]; sec != nil {
		res.Before = parsePackages(&r.Report, "before", sec.body)
	}
	if sec := r.sections["after"]; sec != nil {
		res.After = parsePackages(&r.Report, "after", sec.body)
	}
	if sec := r.sections["upgrade"]; sec != nil {
		res.Upgrade = aptOutcome(sec)
	}
	if sec := r.sections["weave-upgrade"]; sec != nil {
		res.WeaveUpgrade = aptOutcome(sec)
	}
	res.WeaveBefore = weaveVersionOf(&r, "weave-before")
	res.WeaveAfter = weaveVersionOf(&r, "weave-after")
	res.Report = r.Report
	return res, nil
}

func weaveVersionOf(r *report, name string) string {
	sec, ok := r.ok(name)
	if !ok {
		return ""
	}
	v := firstLine(sec.body)
	if v == "absent" || v == "" {
		return ""
	}
	if !weaveVersion.MatchString(v) {
		r.problem("section %s: bad weave version %.32q", name, v)
		return ""
	}
	return v
}

// validBootID accepts the kernel's boot id, a lowercase UUID.
func validBootID(s string) error {
	if len(s) != 36 {
		return fmt.Errorf("boot id %.64q: want a 36-character UUID", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return fmt.Errorf("boot id %q: want '-' at offset %d", s, i)
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("boot id %q: character %q at offset %d is not lowercase hex", s, c, i)
		}
	}
	return nil
}
