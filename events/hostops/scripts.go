package hostops

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/hostfacts"
)

// prelude follows the header of every script: the scan's (hostfacts.Prelude).
// Each step runs with stdin from /dev/null (the script itself is read from
// stdin by sh -s), in one subshell (pf_run) unless it only reads files
// (pf_quick); its stdout goes out as it comes (people follow a long apt run
// live) and a newline after it, and its stderr and exit status follow;
// $pf_rc holds pf_run's status afterwards.
const prelude = hostfacts.Prelude + "pf_main=0\n"

// footer ends the report and exits with the main step's status.
const footer = `printf '==> patchfleet:end\n'
exit "$pf_main"
`

// aptEnv keeps apt, dpkg, debconf, ucf, apt-listchanges and Ubuntu's
// needrestart from ever asking a question: nobody is there to answer.
const aptEnv = `DEBIAN_FRONTEND=noninteractive
NEEDRESTART_MODE=a
NEEDRESTART_SUSPEND=1
APT_LISTCHANGES_FRONTEND=none
UCF_FORCE_CONFFOLD=1
export DEBIAN_FRONTEND NEEDRESTART_MODE NEEDRESTART_SUSPEND APT_LISTCHANGES_FRONTEND UCF_FORCE_CONFFOLD
`

// pkgFuncs: pf_packages NAME... prints one line per package (see README.md),
// or "<name>\tabsent" when dpkg has never heard of it; pf_unfinished prints
// the line of every package dpkg left unfinished. Both read dpkg's database
// with one awk (hostfacts.DpkgFuncs).
const pkgFuncs = hostfacts.DpkgFuncs + `pf_packages() {
	[ "$#" -gt 0 ] || return 0
	pf_dpkg_db packages "$@"
}
pf_unfinished() { pf_dpkg_db unfinished; }
pf_reboot_required() {
	if [ -e /var/run/reboot-required ]; then echo yes; else echo no; fi
	if [ -e /var/run/reboot-required.pkgs ]; then pf_cat /var/run/reboot-required.pkgs; fi
}
`

// aptGet returns an apt-get command line that never prompts, keeps local
// conffiles and waits up to lock seconds for the dpkg locks.
func aptGet(sub string, lock int, extra ...string) string {
	args := []string{"apt-get", sub, "-y", "-q", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
		fmt.Sprintf("-o DPkg::Lock::Timeout=%d", lock)}
	return strings.Join(append(args, extra...), " ")
}

// StateScript returns the script of op state: boot id, the given packages'
// dpkg state (holds included), whether dpkg was interrupted, free space on /
// and /var, reboot-required, and whether op reboot has scheduled a reboot
// during this boot (RebootMarkerPath exists). It changes nothing and runs as
// any user.
func StateScript(packages ...string) (string, error) {
	for _, p := range packages {
		if err := deb.ValidPackageName(p); err != nil {
			return "", fmt.Errorf("state script: %w", err)
		}
	}
	var b strings.Builder
	header(&b, OpState, StateArgs{Packages: packages})
	b.WriteString(pkgFuncs)
	b.WriteString(stateFuncs)
	b.WriteString("pf_quick boot-id pf_boot_id\n")
	b.WriteString("pf_run packages pf_packages" + quoteAll(packages) + "\n")
	// No apt-mark showhold: a held package's dpkg status says hold (the first letter),
	// and apt-mark would load the whole apt cache to say the same.
	b.WriteString(`pf_run dpkg-unfinished pf_unfinished
pf_quick dpkg-updates pf_dpkg_updates
pf_run df df -Pk / /var
pf_quick reboot-required pf_reboot_required
pf_quick reboot-scheduled pf_reboot_scheduled
`)
	b.WriteString(footer)
	return b.String(), nil
}

// RebootMarkerPath is the file op reboot creates before it schedules the
// reboot. It lives on /run, a tmpfs that every boot starts empty, so it exists
// exactly when a reboot was asked for during the current boot and has not
// happened yet.
const RebootMarkerPath = "/run/patchfleet/reboot-scheduled"

// updatesFunc: pf_dpkg_updates lists /var/lib/dpkg/updates as ls -A would (a
// file there is a dpkg run that did not finish), with the shell's globs: the
// state look runs before every change on every host, and a process it spares is
// spared on all of them. A directory that is missing or unreadable fails.
const updatesFunc = `pf_dpkg_updates() {
	[ -d /var/lib/dpkg/updates ] && [ -r /var/lib/dpkg/updates ] && [ -x /var/lib/dpkg/updates ] || return 2
	for pf_f in /var/lib/dpkg/updates/* /var/lib/dpkg/updates/.[!.]* /var/lib/dpkg/updates/..?*; do
		if [ -e "$pf_f" ] || [ -L "$pf_f" ]; then printf '%s\n' "${pf_f##*/}"; fi
	done
}
`

// stateFuncs are updatesFunc and pf_reboot_scheduled. The state look has no dpkg lock
// check: no decision reads one, and apt, when it finds the lock held, waits and names the
// holder itself (AptOutcome LockHolder), where it matters. A check cost a stat and an awk
// on every host before every step.
const stateFuncs = updatesFunc + `pf_reboot_scheduled() { if [ -e ` + RebootMarkerPath + ` ]; then echo yes; else echo no; fi; }
`

func quoteAll(ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(" " + quote(s))
	}
	return b.String()
}

// RepairScript returns the script of op repair: dpkg --configure -a without
// prompts, keeping local conffiles, then the unfinished packages and the
// updates directory again so the caller sees whether dpkg is still interrupted.
// Exit status: dpkg's.
func RepairScript() string {
	var b strings.Builder
	header(&b, OpRepair, nil)
	b.WriteString(aptEnv)
	b.WriteString(pkgFuncs)
	b.WriteString(updatesFunc)
	b.WriteString(`pf_run configure dpkg --force-confdef --force-confold --configure -a
pf_main=$pf_rc
pf_run dpkg-unfinished pf_unfinished
pf_quick dpkg-updates pf_dpkg_updates
`)
	b.WriteString(footer)
	return b.String()
}

// Apt is how an op that changes packages runs apt-get.
type Apt struct {
	LockTimeout time.Duration // how long apt-get waits for the dpkg lock
	// Update runs apt-get update first, in the same script: one command on the host where
	// a separate update would be two. When it fails the op ends there, having changed
	// nothing, and its report says so (AptOutcome Update).
	Update bool
}

func (a Apt) lockS() int { return seconds(a.LockTimeout, 0) }

// update writes the update step when a asks for it. apt-get update takes apt's lists lock,
// not dpkg's: DPkg::Lock::Timeout is passed for uniformity but does not make it wait for a
// running update.
func (a Apt) update(b *strings.Builder) {
	if !a.Update {
		return
	}
	fmt.Fprintf(b, "pf_run update apt-get update -q -o DPkg::Lock::Timeout=%d\n", a.lockS())
	b.WriteString("if [ \"$pf_rc\" -ne 0 ]; then\npf_main=$pf_rc\n" + footer + "fi\n")
}

// InstallScript returns the script of op install: upgrade exactly targets (to
// their Version when given) and nothing that is not already installed
// (--only-upgrade), waiting up to a.LockTimeout for the dpkg lock. The
// report carries the targets' dpkg state after, and reboot-required. Their
// state before is the state look's, which comes before every install: a
// second dpkg-query here would read dpkg's whole database again on every
// host. Exit status: apt-get's.
func InstallScript(targets []Target, a Apt) (string, error) {
	if len(targets) == 0 {
		return "", fmt.Errorf("install script: no packages")
	}
	names := make([]string, len(targets))
	var apt []string
	for i, t := range targets {
		if err := t.Validate(); err != nil {
			return "", fmt.Errorf("install script: %w", err)
		}
		names[i] = t.Name
		apt = append(apt, quote(t.arg()))
	}
	lock := a.lockS()
	var b strings.Builder
	header(&b, OpInstall, InstallArgs{Targets: targets, LockTimeoutS: lock, Update: a.Update})
	b.WriteString(aptEnv)
	a.update(&b)
	b.WriteString(pkgFuncs)
	fmt.Fprintf(&b, "pf_run install %s\npf_main=$pf_rc\n", aptGet("install", lock, append([]string{"--only-upgrade"}, apt...)...))
	fmt.Fprintf(&b, "pf_run after pf_packages%s\n", quoteAll(names))
	b.WriteString("pf_quick reboot-required pf_reboot_required\n")
	b.WriteString(footer)
	return b.String(), nil
}

// FullUpgradeScript returns the script of op full-upgrade: apt-get dist-upgrade
// with the options of Install, for a new host that gets everything.
func FullUpgradeScript(a Apt) string {
	lock := a.lockS()
	var b strings.Builder
	header(&b, OpFullUpgrade, AptArgs{LockTimeoutS: lock, Update: a.Update})
	b.WriteString(aptEnv)
	a.update(&b)
	b.WriteString(pkgFuncs)
	fmt.Fprintf(&b, "pf_run upgrade %s\npf_main=$pf_rc\n", aptGet("dist-upgrade", lock))
	b.WriteString("pf_quick reboot-required pf_reboot_required\n")
	b.WriteString(footer)
	return b.String()
}

// SecurityUpgradeScript returns the script of op security-upgrade ("apply
// security upgrades"): list the upgrades apt would make (apt-get -s
// dist-upgrade), keep those whose candidate version comes from a security
// origin, and install exactly those, each pinned to that version, with
// --only-upgrade and the options of Install. A package whose candidate comes
// from elsewhere is left alone, even when a security origin also has a newer
// version of it (see README.md). The report carries the selection, the
// selected packages' dpkg state before and after, and reboot-required.
// Exit status: the update's or the listing's when it failed, else apt-get install's.
func SecurityUpgradeScript(a Apt) string {
	lock := a.lockS()
	var b strings.Builder
	header(&b, OpSecurityUpgrade, AptArgs{LockTimeoutS: lock, Update: a.Update})
	b.WriteString(aptEnv)
	a.update(&b)
	b.WriteString(pkgFuncs)
	fmt.Fprintf(&b, `pf_codename() { ( . /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-${UBUNTU_CODENAME:-}}" ); }
pf_list() {
	pf_sim=$(apt-get -s -q -o Debug::NoLocking=1 dist-upgrade) || return $?
	printf '%%s\n' "$pf_sim" | awk -v cn="$(pf_codename)" %s >"$1"
	cat "$1"
}
pf_sel=$(mktemp) || exit 1
pf_run security pf_list "$pf_sel"
pf_main=$pf_rc
if [ "$pf_main" -eq 0 ]; then
	set -f
	pf_names=$(cut -f1 "$pf_sel")
	set --
	while IFS='	' read -r pf_n pf_from pf_to pf_rel; do set -- "$@" "$pf_n=$pf_to"; done <"$pf_sel"
	pf_run before pf_packages $pf_names
	if [ $# -gt 0 ]; then
		pf_run install %s "$@"
		pf_main=$pf_rc
	else
		pf_run install echo 'no upgrades from the security origins'
	fi
	pf_run after pf_packages $pf_names
	set +f
fi
rm -f "$pf_sel"
pf_quick reboot-required pf_reboot_required
`, quote(securityAwk), aptGet("install", lock, "--only-upgrade"))
	b.WriteString(footer)
	return b.String()
}

// securityAwk selects, from apt-get -s output, the upgrades of installed
// packages whose candidate comes from a security origin, one line each:
// name[:arch] TAB installed TAB candidate TAB where apt takes it from.
//
//	Inst libssl3 [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])
//
// The parenthesis names every release that has the candidate as
// Label:Version/Archive, comma-separated: a release labelled
// Debian-Security (Debian's archive is stable-security, oldstable-security…),
// or an archive <codename>-security (Ubuntu, and Ubuntu Pro's
// -infra-security and -apps-security) counts. These are the releases
// SecurityOrigins lets unattended-upgrades use; apt prints no Origin here.
const securityAwk = `$1 == "Inst" && $3 ~ /^\[/ {
	i = index($0, "(")
	if (i == 0) next
	rest = substr($0, i + 1)
	j = index(rest, ")")
	if (j == 0) next
	rest = substr(rest, 1, j - 1)
	sp = index(rest, " ")
	if (sp == 0) next
	cand = substr(rest, 1, sp - 1)
	rels = substr(rest, sp + 1)
	sub(/ \[[a-z0-9-]*\]$/, "", rels)
	n = split(rels, r, ", ")
	sec = 0
	for (k = 1; k <= n; k++) {
		lab = ""
		arc = r[k]
		c = index(arc, ":")
		if (c > 0) { lab = substr(arc, 1, c - 1); arc = substr(arc, c + 1) }
		while ((s = index(arc, "/")) > 0) arc = substr(arc, s + 1)
		if (lab == "Debian-Security") sec = 1
		if (cn != "" && (arc == cn "-security" || arc == cn "-infra-security" || arc == cn "-apps-security")) sec = 1
	}
	if (sec) printf "%s\t%s\t%s\t%s\n", $2, substr($3, 2, length($3) - 2), cand, rels
}`

// Files the unattended op owns.
const (
	AutoUpgradesPath = "/etc/apt/apt.conf.d/20auto-upgrades"
	UnattendedPath   = "/etc/apt/apt.conf.d/52patchfleet-unattended-upgrades"
)

// AutoUpgradesConf is what the unattended op writes to AutoUpgradesPath:
// update the lists and run unattended-upgrade once a day.
const AutoUpgradesConf = `APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";`

// SecurityOrigins are the only origins unattended-upgrades may install
// from: Debian's and Ubuntu's security archives (and Ubuntu Pro's
// security pockets). ${distro_codename} is expanded by unattended-upgrades.
var SecurityOrigins = []string{
	"origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
	"origin=Ubuntu,archive=${distro_codename}-security",
	"origin=UbuntuESMApps,archive=${distro_codename}-apps-security",
	"origin=UbuntuESM,archive=${distro_codename}-infra-security",
}

// UnattendedConf returns what the unattended op writes to UnattendedPath.
// It sorts after the distribution's 50unattended-upgrades and clears its
// origin lists first, because Debian's default also allows the stable
// point-release updates, which policy keeps off running servers.
func UnattendedConf(autoReboot bool) string {
	var b strings.Builder
	b.WriteString("// Written by patchfleet: security updates only. Local changes are overwritten.\n")
	b.WriteString("#clear Unattended-Upgrade::Allowed-Origins;\n#clear Unattended-Upgrade::Origins-Pattern;\n")
	b.WriteString("Unattended-Upgrade::Origins-Pattern {\n")
	for _, o := range SecurityOrigins {
		fmt.Fprintf(&b, "\t%q;\n", o)
	}
	b.WriteString("};\n")
	fmt.Fprintf(&b, "Unattended-Upgrade::Automatic-Reboot \"%t\";", autoReboot)
	return b.String()
}

// UnattendedScript returns the script of op unattended: install
// unattended-upgrades if it is not installed, write AutoUpgradesConf and
// UnattendedConf (only when they differ, atomically), then print both
// files and apt's effective settings for the caller to verify. Exit
// status: the first step that failed.
func UnattendedScript(autoReboot bool, lockTimeout time.Duration) string {
	lock := seconds(lockTimeout, 0)
	var b strings.Builder
	header(&b, OpUnattended, UnattendedArgs{AutoReboot: autoReboot, LockTimeoutS: lock})
	b.WriteString(aptEnv)
	b.WriteString(pkgFuncs)
	fmt.Fprintf(&b, `pf_install_uu() {
	case $(dpkg-query -W -f='${db:Status-Abbrev}' unattended-upgrades 2>/dev/null) in
	"ii "*) echo "already installed"; return 0 ;;
	esac
	%s unattended-upgrades
}
`, aptGet("install", lock))
	b.WriteString(`pf_write() {
	if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then echo unchanged; return 0; fi
	printf '%s\n' "$2" >"$1.pf-new" && chmod 644 "$1.pf-new" && mv -f "$1.pf-new" "$1" && echo changed
}
pf_step() { if [ "$pf_rc" -ne 0 ] && [ "$pf_main" -eq 0 ]; then pf_main=$pf_rc; fi; }
pf_settings() {
	apt-config dump | grep -E '^(APT::Periodic::(Update-Package-Lists|Unattended-Upgrade)|Unattended-Upgrade::(Automatic-Reboot|Origins-Pattern|Allowed-Origins))( |::)'
	[ $? -le 1 ]
}
pf_run install-package pf_install_uu
pf_step
`)
	fmt.Fprintf(&b, "pf_run 'write %s' pf_write %s %s\npf_step\n", AutoUpgradesPath, AutoUpgradesPath, quote(AutoUpgradesConf))
	fmt.Fprintf(&b, "pf_run 'write %s' pf_write %s %s\npf_step\n", UnattendedPath, UnattendedPath, quote(UnattendedConf(autoReboot)))
	fmt.Fprintf(&b, "pf_run 'file %s' cat %s\npf_step\n", AutoUpgradesPath, AutoUpgradesPath)
	fmt.Fprintf(&b, "pf_run 'file %s' cat %s\npf_step\n", UnattendedPath, UnattendedPath)
	b.WriteString("pf_run settings pf_settings\npf_step\n")
	b.WriteString("pf_run package pf_packages unattended-upgrades\n")
	b.WriteString(footer)
	return b.String()
}

// RebootScript returns the script of op reboot: print the current boot id,
// create RebootMarkerPath (which the reboot clears), then schedule the reboot
// delay later in its own session, so the SSH command returns before the
// connection drops. No reboot is scheduled when the marker cannot be created. systemctl reboot where systemd
// runs, reboot(8) elsewhere. Needs root.
func RebootScript(delay time.Duration) string {
	d := seconds(delay, 1)
	var b strings.Builder
	header(&b, OpReboot, RebootArgs{DelayS: d})
	fmt.Fprintf(&b, `pf_schedule() {
	mkdir -p %[2]s && : >%[3]s || return 1
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		pf_cmd='systemctl reboot'
	else
		pf_cmd=reboot
	fi
	pf_detach=
	if command -v setsid >/dev/null 2>&1; then pf_detach=setsid; fi
	nohup $pf_detach sh -c "sleep %[1]d; exec $pf_cmd" </dev/null >/dev/null 2>&1 &
	echo "scheduled in %[1]d s: $pf_cmd"
}
pf_run boot-id pf_boot_id
pf_run reboot pf_schedule
pf_main=$pf_rc
`, d, quote(path.Dir(RebootMarkerPath)), quote(RebootMarkerPath))
	b.WriteString(footer)
	return b.String()
}

// HealthScript returns the script of op health: run the fleet's health-check
// command with sh -c under timeout(1). The command comes from fleet policy
// (trusted configuration); it is still passed as one quoted argument.
// Exit status: the command's (124 when it timed out).
func HealthScript(command string, timeout time.Duration) (string, error) {
	if err := validHealthCommand(command); err != nil {
		return "", fmt.Errorf("health script: %w", err)
	}
	t := seconds(timeout, 1)
	var b strings.Builder
	header(&b, OpHealth, HealthArgs{Command: command, TimeoutS: t})
	fmt.Fprintf(&b, `pf_health() {
	if command -v timeout >/dev/null 2>&1; then timeout %d sh -c "$1"; else sh -c "$1"; fi
}
pf_run health pf_health %s
pf_main=$pf_rc
`, t, quote(command))
	b.WriteString(footer)
	return b.String(), nil
}

// DockerPackages are the packages the docker op may upgrade.
var DockerPackages = []string{"docker-ce", "docker-ce-cli", "containerd.io",
	"docker-buildx-plugin", "docker-compose-plugin", "docker-ce-rootless-extras"}

var weaveVersion = regexp.MustCompile(`^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}$`)

// DockerScript returns the script of op docker: upgrade the pinned Docker
// packages (each needs an exact version) with --only-upgrade, and, when
// weave is not empty and the weave script is installed, replace it with
// that release and relaunch the router. The report carries versions
// before and after. Exit status: the first step that failed.
func DockerScript(pins []Target, weave string, a Apt) (string, error) {
	if len(pins) == 0 && weave == "" {
		return "", fmt.Errorf("docker script: nothing pinned")
	}
	var names, apt []string
	for _, p := range pins {
		if err := p.Validate(); err != nil {
			return "", fmt.Errorf("docker script: %w", err)
		}
		if p.Version == "" {
			return "", fmt.Errorf("docker script: package %s: no pinned version", p.Name)
		}
		if !contains(DockerPackages, p.Name) {
			return "", fmt.Errorf("docker script: package %s is not a Docker package", p.Name)
		}
		names = append(names, p.Name)
		apt = append(apt, quote(p.arg()))
	}
	if weave != "" && !weaveVersion.MatchString(weave) {
		return "", fmt.Errorf("docker script: weave version %.32q: want N.N.N", weave)
	}
	lock := a.lockS()
	var b strings.Builder
	header(&b, OpDocker, DockerArgs{Packages: pins, Weave: weave, LockTimeoutS: lock, Update: a.Update})
	b.WriteString(aptEnv)
	a.update(&b)
	b.WriteString(pkgFuncs)
	b.WriteString(`pf_step() { if [ "$pf_rc" -ne 0 ] && [ "$pf_main" -eq 0 ]; then pf_main=$pf_rc; fi; }
pf_weave_version() {
	command -v weave >/dev/null 2>&1 || { echo absent; return 0; }
	weave version 2>/dev/null | sed -n 's/^weave script //p'
}
`)
	q := quoteAll(names)
	if len(pins) > 0 {
		fmt.Fprintf(&b, "pf_run before pf_packages%s\n", q)
	}
	b.WriteString("pf_run weave-before pf_weave_version\n")
	if len(pins) > 0 {
		fmt.Fprintf(&b, "pf_run upgrade %s\npf_step\n", aptGet("install", lock, append([]string{"--only-upgrade"}, apt...)...))
	}
	if weave != "" {
		// Weave Net's documented upgrade: stop, replace the script,
		// launch (the router restores its peers from its own volume).
		fmt.Fprintf(&b, `pf_weave_upgrade() {
	pf_w=$(command -v weave) || { echo "weave not installed"; return 0; }
	[ "$(pf_weave_version)" = %[1]s ] && { echo "weave already %[1]s"; return 0; }
	curl -fsSL -o "$pf_w.pf-new" %[2]s || return 1
	chmod 755 "$pf_w.pf-new"
	if ! "$pf_w.pf-new" version 2>/dev/null | grep -qx 'weave script %[1]s'; then
		rm -f "$pf_w.pf-new"
		echo "downloaded weave script is not %[1]s" >&2
		return 1
	fi
	weave stop && mv -f "$pf_w.pf-new" "$pf_w" && weave launch
}
pf_run weave-upgrade pf_weave_upgrade
pf_step
`, weave, quote("https://github.com/weaveworks/weave/releases/download/v"+weave+"/weave"))
	}
	if len(pins) > 0 {
		fmt.Fprintf(&b, "pf_run after pf_packages%s\n", q)
	}
	b.WriteString("pf_run weave-after pf_weave_version\n")
	b.WriteString(footer)
	return b.String(), nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
