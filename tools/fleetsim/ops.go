package fleetsim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/hostops"
)

// report writes output in the format of the real scripts: hostops' and
// hostfacts' pf_run prints a step's stdout with trailing newlines removed
// and one added, then its stderr the same way, then its status.
type report struct{ b strings.Builder }

func (r *report) line(s string) { r.b.WriteString(s + "\n") }

func (r *report) section(name, stdout, stderr string, status int) {
	r.line("==> patchfleet:section " + name)
	if s := strings.TrimRight(stdout, "\n"); s != "" {
		r.line(s)
	}
	if s := strings.TrimRight(stderr, "\n"); s != "" {
		r.line("==> patchfleet:stderr")
		r.line(s)
	}
	r.line(fmt.Sprintf("==> patchfleet:status %d", status))
}

func (r *report) end() { r.line("==> patchfleet:end") }

// outcome is what a simulated command printed and how it exited, plus how
// long the host "worked" on it before answering.
type outcome struct {
	stdout, stderr string
	status         int
	work           time.Duration
	after          func() // runs once the exit status is sent (reboot)
	lost           bool   // the connection closes before the script runs
}

// dpkgLockHolder is the process a simulated held lock names.
const dpkgLockHolder = "It is held by process 4242 (unattended-upgr)"

// run executes one script on the host. Unknown scripts exit 127 like a
// shell that cannot find the command.
func (h *Host) run(script string, now time.Time) outcome {
	op, args, ok := hostops.ParseOp(script)
	if !ok {
		first, _, _ := strings.Cut(strings.TrimSpace(script), "\n")
		return outcome{stderr: fmt.Sprintf("sh: 1: %.60s: not found\n", first), status: 127}
	}
	decode := func(v any) bool { return args != nil && json.Unmarshal(args, v) == nil }
	h.mu.Lock()
	defer h.mu.Unlock()
	switch op {
	case hostops.OpScan:
		return h.scan(scanApps(script))
	case hostops.OpState:
		var a hostops.StateArgs
		if args != nil && !decode(&a) {
			break
		}
		return h.state(a)
	case hostops.OpRepair:
		return h.repair()
	case hostops.OpInstall:
		var a hostops.InstallArgs
		if decode(&a) {
			return h.withUpdate(a.Update, h.install(a.Targets, false, time.Duration(a.LockTimeoutS)*time.Second, now))
		}
	case hostops.OpFullUpgrade:
		var a hostops.AptArgs
		if decode(&a) {
			return h.withUpdate(a.Update, h.install(nil, true, time.Duration(a.LockTimeoutS)*time.Second, now))
		}
	case hostops.OpSecurityUpgrade:
		var a hostops.AptArgs
		if decode(&a) {
			return h.withUpdate(a.Update, h.securityUpgrade(time.Duration(a.LockTimeoutS)*time.Second, now))
		}
	case hostops.OpUnattended:
		var a hostops.UnattendedArgs
		if decode(&a) {
			return h.unattended(a, now)
		}
	case hostops.OpReboot:
		var a hostops.RebootArgs
		if h.faults&FaultRebootLost != 0 {
			return outcome{lost: true}
		}
		if decode(&a) {
			return h.reboot(a)
		}
	case hostops.OpHealth:
		var a hostops.HealthArgs
		if decode(&a) {
			return h.health()
		}
	case hostops.OpDocker:
		var a hostops.DockerArgs
		if decode(&a) {
			return h.withUpdate(a.Update, h.docker(a, now))
		}
	}
	return outcome{stderr: fmt.Sprintf("fleetsim: op %q with arguments %.200s is not simulated\n", op, args), status: 127}
}

// pkgLocked returns the host's view of a package: its own change, else
// the image's.
func (h *Host) pkgLocked(name string) (pkg, bool) {
	if p, ok := h.over[name]; ok {
		return p, true
	}
	return h.image.lookup(name)
}

func (h *Host) setPkgLocked(p pkg) {
	if h.over == nil {
		h.over = map[string]pkg{}
	}
	h.over[p.Name] = p
}

func (h *Host) scan(apps []string) outcome {
	var r report
	r.b.Grow(len(h.image.scanPackages) + 4<<10) // the packages and the rest of the report
	r.line("==> patchfleet:scan 1")
	r.section("os-release", h.image.OSRelease, "", 0)
	r.section("kernel", h.image.Kernel, "", 0)
	r.section("arch", "x86_64", "", 0)
	r.section("dpkg-arch", "amd64", "", 0)
	r.section("boot-id", h.bootID, "", 0)
	r.section("hostname", h.Name, "", 0)
	// As the real script: no held section, a held package's status says hold.
	if len(h.over) == 0 && len(h.held) == 0 {
		r.line("==> patchfleet:section packages")
		r.b.Write(h.image.scanPackages)
		r.line("==> patchfleet:status 0")
	} else {
		var b strings.Builder
		for _, p := range h.packagesLocked() {
			p.Status = h.heldStatus(p.Name, p.Status)
			writePkgLine(&b, p)
		}
		r.section("packages", b.String(), "", 0)
	}
	r.section("reboot-required", yesNo(h.rebootRequired), "", 0)
	r.section("reboot-required-pkgs", strings.Join(h.rebootPkgs, "\n"), "", 0)
	comp := func(name, out string) {
		if out == "" {
			r.section("component "+name, "", "", 127)
		} else {
			r.section("component "+name, out, "", 0)
		}
	}
	comp("ruby", "")
	for _, app := range apps {
		r.section("component rails "+app, "", "sh: 1: cd: can't cd to "+app, 2)
	}
	comp("passenger", "")
	docker := ""
	if p, ok := h.pkgLocked("docker-ce"); ok {
		docker = upstream(p.Version)
	}
	comp("docker", docker)
	comp("weave", "")
	nginx := ""
	if p, ok := h.pkgLocked("nginx"); ok {
		nginx = "nginx version: nginx/" + upstream(p.Version)
	}
	comp("nginx", nginx)
	r.end()
	return outcome{stdout: r.b.String()}
}

// upstream strips the epoch and Debian revision: 5:28.2.2-1~deb → 28.2.2.
func upstream(v string) string {
	if _, rest, ok := strings.Cut(v, ":"); ok {
		v = rest
	}
	if i := strings.LastIndexByte(v, '-'); i > 0 {
		v = v[:i]
	}
	return v
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// packagesLocked merges the image's table with the host's changes.
func (h *Host) packagesLocked() []pkg {
	out := make([]pkg, 0, len(h.image.pkgs)+len(h.over))
	for _, p := range h.image.pkgs {
		if o, ok := h.over[p.Name]; ok {
			p = o
		}
		out = append(out, p)
	}
	for name, p := range h.over {
		if _, ok := h.image.index[name]; !ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out[len(h.image.pkgs):], func(a, b pkg) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// heldStatus is a package's dpkg status with the hold selection where it is held.
func (h *Host) heldStatus(name, status string) string {
	if h.held[name] && status[0] == 'i' {
		return "h" + status[1:]
	}
	return status
}

// pkgLines renders the hostops package lines for names.
func (h *Host) pkgLines(names []string) string {
	var b strings.Builder
	for _, n := range names {
		p, ok := h.pkgLocked(n)
		if !ok {
			b.WriteString(n + "\tabsent\n")
			continue
		}
		st := h.heldStatus(n, p.Status)
		b.WriteString(p.Name + "\t" + p.Version + "\t" + p.Arch + "\t" + st + statusPad(st) + "\t" + p.SourceName + "\t" + p.SourceVersion + "\n")
	}
	return b.String()
}

func (h *Host) rebootSection(r *report) {
	out := yesNo(h.rebootRequired)
	if len(h.rebootPkgs) > 0 {
		out += "\n" + strings.Join(h.rebootPkgs, "\n")
	}
	r.section("reboot-required", out, "", 0)
}

// interruptedLocked lists packages dpkg left half-configured.
func (h *Host) interruptedLocked() []string {
	var out []string
	for n, p := range h.over {
		if p.Status == "iF" || p.Status == "iU" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (h *Host) state(a hostops.StateArgs) outcome {
	var r report
	r.line("==> patchfleet:op state 1")
	r.section("boot-id", h.bootID, "", 0)
	r.section("packages", h.pkgLines(a.Packages), "", 0) // a held package's status says so, as the real script's
	r.section("dpkg-unfinished", h.pkgLines(h.interruptedLocked()), "", 0)
	r.section("dpkg-updates", "", "", 0)
	r.section("df", "Filesystem     1024-blocks    Used Available Capacity Mounted on\n"+
		"/dev/vda1         20511312 6120448  13325904      32% /\n"+
		"/dev/vda1         20511312 6120448  13325904      32% /", "", 0)
	h.rebootSection(&r)
	r.section("reboot-scheduled", yesNo(h.rebootMarker), "", 0)
	r.end()
	return outcome{stdout: r.b.String()}
}

func (h *Host) repair() outcome {
	var r report
	r.line("==> patchfleet:op repair 1")
	var out strings.Builder
	// A simulated postinst failure is transient: configuring again works.
	for _, n := range h.interruptedLocked() {
		p := h.over[n]
		p.Status = "ii"
		h.over[n] = p
		fmt.Fprintf(&out, "Setting up %s (%s) ...\n", n, p.Version)
	}
	r.section("configure", out.String(), "", 0)
	r.section("dpkg-unfinished", h.pkgLines(h.interruptedLocked()), "", 0)
	r.section("dpkg-updates", "", "", 0)
	r.end()
	return outcome{stdout: r.b.String(), work: h.fleet.opts.AptLatency}
}

// withUpdate puts an op's apt-get update step (hostops.Apt Update) first in its report, as
// the real script does, and adds the time apt takes. The simulated update always works.
func (h *Host) withUpdate(update bool, o outcome) outcome {
	if !update || o.lost {
		return o
	}
	var r report
	r.section("update", "Hit:1 http://deb.debian.org/debian bookworm InRelease\n"+
		"Hit:2 http://deb.debian.org/debian bookworm-updates InRelease\n"+
		"Get:3 http://security.debian.org/debian-security bookworm-security InRelease [48.0 kB]\n"+
		"Fetched 48.0 kB in 0s (0 B/s)\nReading package lists...", "", 0)
	head, rest, _ := strings.Cut(o.stdout, "\n")
	o.stdout = head + "\n" + r.b.String() + rest
	o.work += h.fleet.opts.AptLatency
	return o
}

// lockWait says how long apt waits for a simulated held lock, and whether
// it gives up.
func (h *Host) lockWait(timeout time.Duration, now time.Time) (time.Duration, bool) {
	left := h.lockUntil.Sub(now)
	if left <= 0 {
		return 0, false
	}
	if left > timeout {
		return timeout, true
	}
	return left, false
}

const lockWaitLine = "Waiting for cache lock: Could not get lock /var/lib/dpkg/lock-frontend. " + dpkgLockHolder + "..."

// install upgrades targets (or everything, for a full upgrade) from the
// simulated repository, as apt-get install --only-upgrade / dist-upgrade.
func (h *Host) install(targets []hostops.Target, full bool, timeout time.Duration, now time.Time) outcome {
	op := hostops.OpInstall
	if full {
		op = hostops.OpFullUpgrade
	}
	var r report
	r.line("==> patchfleet:op " + op + " 1")
	return h.upgrade(&r, targets, full, timeout, now)
}

// securityRelease is how apt-get -s names the simulated security archive.
const securityRelease = "Debian-Security:12/stable-security"

// securityUpgrade selects, as the real script does from apt-get -s, the
// packages whose newest version is a security update, and installs exactly
// those versions.
func (h *Host) securityUpgrade(timeout time.Duration, now time.Time) outcome {
	var r report
	r.line("==> patchfleet:op " + hostops.OpSecurityUpgrade + " 1")
	var sel strings.Builder
	var targets []hostops.Target
	var names []string
	for _, u := range h.fleet.updates {
		p, ok := h.pkgLocked(u.Name)
		if !ok || h.held[u.Name] || !u.Security || !newer(u.Version, p.Version) {
			continue
		}
		fmt.Fprintf(&sel, "%s\t%s\t%s\t%s\n", u.Name, p.Version, u.Version, securityRelease)
		targets = append(targets, hostops.Target{Name: u.Name, Version: u.Version})
		names = append(names, u.Name)
	}
	r.section("security", sel.String(), "", 0)
	r.section("before", h.pkgLines(names), "", 0)
	if len(targets) == 0 {
		r.section("install", "no upgrades from the security origins", "", 0)
		r.section("after", "", "", 0)
		h.rebootSection(&r)
		r.end()
		return outcome{stdout: r.b.String(), work: h.fleet.opts.AptLatency}
	}
	return h.upgrade(&r, targets, false, timeout, now)
}

// upgrade writes the sections of an install (targets) or a full upgrade
// after r's header and changes the host as apt would.
func (h *Host) upgrade(r *report, targets []hostops.Target, full bool, timeout time.Duration, now time.Time) outcome {
	step := "install"
	if full {
		step = "upgrade"
	}
	var names []string
	for _, t := range targets {
		names = append(names, t.Name)
	}
	wait, gaveUp := h.lockWait(timeout, now)
	var out, errOut strings.Builder
	if wait > 0 {
		out.WriteString(lockWaitLine + "\n")
	}
	status := 0
	apply := func() {}
	switch {
	case gaveUp:
		// As apt 2.6: a wait names the holder in its lines only; without one, an error does.
		if wait == 0 {
			errOut.WriteString("E: Could not get lock /var/lib/dpkg/lock-frontend. " + dpkgLockHolder + "\n")
		}
		errOut.WriteString("E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?\n")
		status = 100
	default:
		out.WriteString("Reading package lists...\nBuilding dependency tree...\nReading state information...\n")
		type change struct {
			p  pkg
			up Update
		}
		var changes []change
		var heldHit []string
		if full {
			for _, u := range h.fleet.updates {
				if p, ok := h.pkgLocked(u.Name); ok && !h.held[u.Name] && newer(u.Version, p.Version) {
					changes = append(changes, change{p: p, up: u})
				}
			}
		}
		for _, t := range targets {
			p, ok := h.pkgLocked(t.Name)
			if !ok {
				fmt.Fprintf(&out, "Skipping %s, it is not installed and only upgrades are requested.\n", t.Name)
				continue
			}
			u, ok := h.fleet.update(t.Name)
			if t.Version != "" && (!ok || u.Version != t.Version) && t.Version != p.Version {
				fmt.Fprintf(&errOut, "E: Version '%s' for '%s' was not found\n", t.Version, t.Name)
				status = 100
				continue
			}
			if !ok || !newer(u.Version, p.Version) || t.Version == p.Version {
				fmt.Fprintf(&out, "%s is already the newest version (%s).\n", t.Name, p.Version)
				continue
			}
			if h.held[t.Name] {
				heldHit = append(heldHit, t.Name)
			}
			changes = append(changes, change{p: p, up: u})
		}
		if status != 0 {
			break
		}
		if len(heldHit) > 0 {
			fmt.Fprintf(&out, "The following held packages will be changed:\n  %s\n", strings.Join(heldHit, " "))
		}
		if len(changes) > 0 {
			var list []string
			for _, c := range changes {
				list = append(list, c.p.Name)
			}
			fmt.Fprintf(&out, "The following packages will be upgraded:\n  %s\n", strings.Join(list, " "))
		}
		fmt.Fprintf(&out, "%d upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n", len(changes))
		if len(heldHit) > 0 {
			errOut.WriteString("E: Held packages were changed and -y was used without --allow-change-held-packages.\n")
			status = 100
			break
		}
		if len(changes) == 0 {
			break
		}
		fail := h.faults&FaultAptFail != 0
		out.WriteString("(Reading database ... 98765 files and directories currently installed.)\n")
		for _, c := range changes {
			fmt.Fprintf(&out, "Preparing to unpack .../%s_%s_%s.deb ...\n", c.p.Name, strings.ReplaceAll(c.up.Version, ":", "%3a"), c.p.Arch)
			fmt.Fprintf(&out, "Unpacking %s (%s) over (%s) ...\n", c.p.Name, c.up.Version, c.p.Version)
		}
		var failed string
		for i, c := range changes {
			fmt.Fprintf(&out, "Setting up %s (%s) ...\n", c.p.Name, c.up.Version)
			if fail && i == 0 {
				failed = c.p.Name
				fmt.Fprintf(&out, "dpkg: error processing package %s (--configure):\n installed %s package post-installation script subprocess returned error exit status 1\n", failed, failed)
			}
		}
		if failed != "" {
			fmt.Fprintf(&out, "Errors were encountered while processing:\n %s\n", failed)
			errOut.WriteString("E: Sub-process /usr/bin/dpkg returned an error code (1)\n")
			status = 100
		}
		apply = func() {
			h.rec.installs++
			for _, c := range changes {
				p := c.p
				p.Version, p.Status = c.up.Version, "ii"
				if p.SourceVersion == c.p.Version {
					p.SourceVersion = c.up.Version
				}
				if p.Name == failed {
					p.Status = "iF"
				}
				h.setPkgLocked(p)
				if c.up.Reboot && p.Name != failed {
					h.rebootRequired = true
					if !slices.Contains(h.rebootPkgs, p.Name) {
						h.rebootPkgs = append(h.rebootPkgs, p.Name)
					}
				}
			}
		}
	}
	apply()
	r.section(step, out.String(), errOut.String(), status)
	if !full {
		r.section("after", h.pkgLines(names), "", 0)
	}
	h.rebootSection(r)
	r.end()
	return outcome{stdout: r.b.String(), status: status, work: wait + h.fleet.opts.AptLatency}
}

func newer(a, b string) bool {
	c, err := deb.Compare(a, b)
	return err == nil && c > 0
}

func (h *Host) unattended(a hostops.UnattendedArgs, now time.Time) outcome {
	var r report
	r.line("==> patchfleet:op unattended 1")
	status := 0
	const uu = "unattended-upgrades"
	if p, ok := h.pkgLocked(uu); ok && p.Status == "ii" {
		r.section("install-package", "already installed", "", 0)
	} else if wait, gaveUp := h.lockWait(time.Duration(a.LockTimeoutS)*time.Second, now); gaveUp {
		r.section("install-package", lockWaitLine, "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?", 100)
		status = 100
		_ = wait
	} else {
		const v = "2.9.1+nmu3"
		h.setPkgLocked(pkg{Name: uu, Version: v, Arch: "all", SourceName: uu, SourceVersion: v, Status: "ii"})
		r.section("install-package", "Reading package lists...\nBuilding dependency tree...\n"+
			"The following NEW packages will be installed:\n  "+uu+"\n0 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\n"+
			"Selecting previously unselected package "+uu+".\nUnpacking "+uu+" ("+v+") ...\nSetting up "+uu+" ("+v+") ...", "", 0)
	}
	conf := hostops.UnattendedConf(a.AutoReboot)
	write := func(path, content string, cur *string) {
		res := "unchanged"
		if *cur != content {
			*cur, res = content, "changed"
		}
		r.section("write "+path, res, "", 0)
	}
	write(hostops.AutoUpgradesPath, hostops.AutoUpgradesConf, &h.autoUpgrades)
	write(hostops.UnattendedPath, conf, &h.unattendedConf)
	r.section("file "+hostops.AutoUpgradesPath, h.autoUpgrades, "", 0)
	r.section("file "+hostops.UnattendedPath, h.unattendedConf, "", 0)
	var s strings.Builder
	s.WriteString("APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\nUnattended-Upgrade::Origins-Pattern \"\";\n")
	for _, o := range hostops.SecurityOrigins {
		fmt.Fprintf(&s, "Unattended-Upgrade::Origins-Pattern:: %q;\n", o)
	}
	fmt.Fprintf(&s, "Unattended-Upgrade::Automatic-Reboot \"%t\";", a.AutoReboot)
	r.section("settings", s.String(), "", 0)
	r.section("package", h.pkgLines([]string{uu}), "", 0)
	r.end()
	return outcome{stdout: r.b.String(), status: status, work: h.fleet.opts.AptLatency}
}

func (h *Host) reboot(a hostops.RebootArgs) outcome {
	var r report
	r.line("==> patchfleet:op reboot 1")
	r.section("boot-id", h.bootID, "", 0)
	r.section("reboot", fmt.Sprintf("scheduled in %d s: reboot", a.DelayS), "", 0)
	r.end()
	delay := time.Duration(a.DelayS) * time.Second
	return outcome{stdout: r.b.String(), after: func() {
		h.mu.Lock()
		h.rebootMarker = true
		h.mu.Unlock()
		h.fleet.rebootLater(h, delay)
	}}
}

func (h *Host) health() outcome {
	var r report
	r.line("==> patchfleet:op health 1")
	status := 0
	if h.faults&FaultHealthFail != 0 {
		status = 1
		r.section("health", "", "fleetsim: simulated health check failure", status)
	} else {
		r.section("health", "ok", "", 0)
	}
	r.end()
	return outcome{stdout: r.b.String(), status: status}
}

// docker upgrades pinned Docker packages that are installed; any pinned
// version newer than the installed one counts as available (Docker's
// repository keeps every release).
func (h *Host) docker(a hostops.DockerArgs, now time.Time) outcome {
	var names []string
	for _, p := range a.Packages {
		names = append(names, p.Name)
	}
	var r report
	r.line("==> patchfleet:op docker 1")
	if len(names) > 0 {
		r.section("before", h.pkgLines(names), "", 0)
	}
	r.section("weave-before", "absent", "", 0)
	status := 0
	if len(names) > 0 {
		var out strings.Builder
		out.WriteString("Reading package lists...\nBuilding dependency tree...\n")
		for _, t := range a.Packages {
			p, ok := h.pkgLocked(t.Name)
			switch {
			case !ok:
				fmt.Fprintf(&out, "Skipping %s, it is not installed and only upgrades are requested.\n", t.Name)
			case !newer(t.Version, p.Version):
				fmt.Fprintf(&out, "%s is already the newest version (%s).\n", t.Name, p.Version)
			default:
				fmt.Fprintf(&out, "Unpacking %s (%s) over (%s) ...\nSetting up %s (%s) ...\n", t.Name, t.Version, p.Version, t.Name, t.Version)
				p.Version, p.SourceVersion = t.Version, t.Version
				h.setPkgLocked(p)
			}
		}
		r.section("upgrade", out.String(), "", status)
	}
	if a.Weave != "" {
		r.section("weave-upgrade", "weave not installed", "", 0)
	}
	if len(names) > 0 {
		r.section("after", h.pkgLines(names), "", 0)
	}
	r.section("weave-after", "absent", "", 0)
	r.end()
	return outcome{stdout: r.b.String(), status: status, work: h.fleet.opts.AptLatency}
}

// scanApps reads the Rails application directories ScanScript quoted into
// its "set --" line.
func scanApps(script string) []string {
	for line := range strings.SplitSeq(script, "\n") {
		rest, ok := strings.CutPrefix(line, "set -- ")
		if !ok {
			continue
		}
		var apps []string
		var cur strings.Builder
		in, started := false, false
		for i := 0; i < len(rest); i++ {
			c := rest[i]
			switch {
			case c == '\'':
				in, started = !in, true
			case c == '\\' && !in && i+1 < len(rest):
				cur.WriteByte(rest[i+1])
				i++
			case c == ' ' && !in:
				if started {
					apps = append(apps, cur.String())
				}
				cur.Reset()
				started = false
			default:
				cur.WriteByte(c)
			}
		}
		if started {
			apps = append(apps, cur.String())
		}
		return apps
	}
	return nil
}
