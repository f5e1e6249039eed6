// Package hostfacts defines the agentless inventory scan — one POSIX sh
// script run over a single SSH exec — and parses its output.
//
// The same output is the offline ("push") report for hosts the scanner
// cannot reach: an operator runs the script by hand and uploads what it
// printed (see README.md). Parse reads both.
//
// The report is a series of sections:
//
//	==> patchfleet:scan 1
//	==> patchfleet:section <name>
//	<stdout of the probe>
//	==> patchfleet:stderr          (only when the probe wrote to stderr)
//	<stderr of the probe>
//	==> patchfleet:status <exit status>
//	...
//	==> patchfleet:end
//
// Each command runs with stdin from /dev/null, in its own subshell, so a
// probe that fails, or reads stdin, cannot stop the others or eat the
// script when it is fed to sh -s. Sections the shell answers by reading
// files itself run without a subshell.
package hostfacts

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/patchfleet/patchfleet/events/shell"
)

// FormatVersion is the report format this package writes and reads.
const FormatVersion = "1"

const markerPrefix = "==> patchfleet:"

// Probe detects one component. Probes are data so that adding a component
// is one table entry.
type Probe struct {
	Name string // component name, [a-z0-9-]
	// Requires is the executable that must be on PATH; without it the
	// component is absent. Empty for probes that decide for themselves.
	Requires string
	// Command is the body of a sh function. Status 127 means the component
	// is absent (POSIX "command not found"). Per-app probes get the app
	// directory in $1. pf_t runs a command with a timeout when timeout(1)
	// exists.
	Command string
	// Pattern's first submatch, found in stdout, is the version.
	Pattern *regexp.Regexp
	// PerApp probes run once per application directory given to
	// ScanScript, for components bundled with an app rather than installed
	// on the host.
	PerApp bool
}

var probes = []Probe{
	{
		Name:     "ruby",
		Requires: "ruby",
		Command:  "pf_t ruby -v",
		// ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]
		Pattern: regexp.MustCompile(`(?m)^ruby ([0-9][0-9A-Za-z.]*)`),
	},
	{
		Name: "rails",
		// The lockfile, not "bundle exec rails -v": reading a file runs no
		// application code as the scanning user and cannot hang.
		Command: `cd "$1" || return 2
[ -f Gemfile.lock ] || return 127
grep -E '^    rails \(' Gemfile.lock
pf_rc=$?
[ "$pf_rc" -eq 1 ] && return 127
return "$pf_rc"`,
		// "    rails (7.0.8.1)" under GEM specs.
		Pattern: regexp.MustCompile(`(?m)^    rails \(([0-9][0-9A-Za-z.]*)\)`),
		PerApp:  true,
	},
	{
		Name:     "passenger",
		Requires: "passenger",
		Command:  "pf_t passenger --version",
		// Phusion Passenger(R) 6.0.17
		Pattern: regexp.MustCompile(`(?m)^Phusion Passenger\S*(?: Enterprise)? ([0-9][0-9A-Za-z.]*)`),
	},
	{
		Name:     "docker",
		Requires: "docker",
		// The daemon's version is what matters; a non-root user usually
		// cannot reach the socket, so fall back to the client's, which
		// comes from the same package on a normal install.
		Command: `pf_t docker version --format '{{.Server.Version}}' 2>/dev/null || pf_t docker --version`,
		// "28.2.2" or "Docker version 28.2.2, build e6534b4"
		Pattern: regexp.MustCompile(`(?m)^(?:Docker version )?([0-9]+\.[0-9][0-9A-Za-z.+~-]*)`),
	},
	{
		Name:     "weave",
		Requires: "weave",
		// weave prints its own version first, then asks Docker about the
		// router, which fails without access to the socket.
		Command: "pf_t weave version",
		Pattern: regexp.MustCompile(`(?m)^weave script ([0-9][0-9A-Za-z.+~-]*)`),
	},
	{
		Name:     "nginx",
		Requires: "nginx",
		Command:  "pf_t nginx -v 2>&1", // nginx prints its version on stderr
		// nginx version: nginx/1.22.1
		Pattern: regexp.MustCompile(`nginx/([0-9][0-9A-Za-z.]*)`),
	},
}

// Probes returns the component probes the scan runs, in order.
func Probes() []Probe { return append([]Probe(nil), probes...) }

// Prelude starts every Patchfleet report script, the scan's and the executor's
// ops' (events/hostops): the C locale, a PATH with the sbin directories,
// pf_run and pf_quick, which print one section of the report, pf_cat and
// pf_boot_id.
const Prelude = `LC_ALL=C
export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH
pf_nl='
'
exec 3>&1

# pf_run NAME FUNCTION [ARG...] prints one section. The body goes straight
# to fd 3 (the real stdout), followed by a newline in case it lacked one;
# stderr is captured and printed after it, so they cannot interleave, then
# the exit status, which is the command substitution's. A command alone in
# the substitution is exec'd by its subshell: one process, not two.
pf_run() {
	pf_name=$1
	shift
	printf '==> patchfleet:section %s\n' "$pf_name"
	pf_err=$("$@" </dev/null 2>&1 >&3 3>&-)
	pf_rc=$?
	printf '\n'
	if [ -n "$pf_err" ]; then printf '==> patchfleet:stderr\n%s\n' "$pf_err"; fi
	printf '==> patchfleet:status %s\n' "$pf_rc"
}

# pf_quick NAME FUNCTION prints a section whose function reads files with
# shell builtins: it runs in this shell, without pf_run's subshell. A
# failure shows in the status; its message is dropped. These scripts run on
# every host of a fleet, and each process they spare is spared a thousand
# times.
pf_quick() {
	printf '==> patchfleet:section %s\n' "$1"
	"$2" </dev/null 2>/dev/null
	printf '\n==> patchfleet:status %s\n' "$?"
}

# pf_cat FILE prints a small text file as cat would, without a process.
pf_cat() {
	{ while IFS= read -r pf_l || [ -n "$pf_l" ]; do printf '%s\n' "$pf_l"; done; } <"$1"
}

# pf_boot_id prints the boot id: every report names the boot it describes.
pf_boot_id() { read -r pf_v </proc/sys/kernel/random/boot_id && printf '%s\n' "$pf_v"; }
`

// scanBody is the fixed part of the script. Names start with pf_ so they
// cannot clash with anything in the environment.
// The first line names the op for dispatchers such as fleetsim (see
// hostops.ParseOp); sh reads it as a comment.
const scanBody = `# patchfleet:op scan v1
# Patchfleet inventory scan, report format ` + FormatVersion + `.
# POSIX sh, runs as any user, changes nothing. Arguments: Rails application
# directories to probe. See README.md in events/hostfacts.
` + Prelude + DpkgFuncs + `
# pf_absent NAME prints the section of a component whose executable is not
# on PATH, as the probe would (status 127), without running anything.
pf_absent() { printf '==> patchfleet:section %s\n==> patchfleet:status 127\n' "$1"; }

if command -v timeout >/dev/null 2>&1; then
	pf_t() { timeout 30 "$@"; }
else
	pf_t() { "$@"; }
fi

pf_os_release() { pf_cat /etc/os-release || pf_cat /usr/lib/os-release; }
# Where Linux has the answer in a file, the shell reads it.
pf_kernel() { if read -r pf_v </proc/sys/kernel/osrelease; then printf '%s\n' "$pf_v"; else uname -r; fi; }
pf_arch() { if read -r pf_v </proc/sys/kernel/arch; then printf '%s\n' "$pf_v"; else uname -m; fi; }
pf_dpkg_arch() { dpkg --print-architecture; }
pf_hostname() { if read -r pf_v </proc/sys/kernel/hostname; then printf '%s\n' "$pf_v"; else hostname 2>/dev/null || uname -n; fi; }
# Held packages are those whose dpkg selection is hold: the first letter of
# db:Status-Abbrev, which Parse reads (apt-mark showhold would load the
# whole apt cache to say the same).
pf_packages() { pf_dpkg_db scan; }
pf_reboot_required() {
	if [ -e /var/run/reboot-required ]; then echo yes; else echo no; fi
}
pf_reboot_required_pkgs() {
	if [ -e /var/run/reboot-required.pkgs ]; then pf_cat /var/run/reboot-required.pkgs; fi
}

printf '==> patchfleet:scan %s\n' ` + FormatVersion + `
pf_quick os-release pf_os_release
pf_quick kernel pf_kernel
pf_quick arch pf_arch
pf_run dpkg-arch pf_dpkg_arch
pf_quick boot-id pf_boot_id
pf_quick hostname pf_hostname
pf_run packages pf_packages
pf_quick reboot-required pf_reboot_required
pf_quick reboot-required-pkgs pf_reboot_required_pkgs
`

// ScanScript returns the scan script. railsApps are application
// directories whose bundled components (Rails) are probed; they are
// shell-quoted into the script, and a path that is not absolute, or holds a
// control character or invalid UTF-8, is refused.
//
// Run the script with sh, for example by sending it on stdin to "sh -s" over
// one SSH exec. Without railsApps the script probes the directories given
// to it as arguments instead, which is how an operator runs it by hand.
func ScanScript(railsApps ...string) (string, error) {
	var b strings.Builder
	b.WriteString(scanBody)
	for _, p := range probes {
		fmt.Fprintf(&b, "pf_probe_%s() {\n", strings.ReplaceAll(p.Name, "-", "_"))
		if p.Requires != "" && p.PerApp {
			// Checked here, once per app; the others are checked before their subshell.
			fmt.Fprintf(&b, "\tcommand -v %s >/dev/null 2>&1 || return 127\n", p.Requires)
		}
		for line := range strings.SplitSeq(p.Command, "\n") {
			b.WriteString("\t" + line + "\n")
		}
		b.WriteString("}\n")
	}
	if len(railsApps) > 0 {
		b.WriteString("set --")
		for _, app := range railsApps {
			if err := validAppPath(app); err != nil {
				return "", err
			}
			b.WriteString(" " + shell.Quote(app))
		}
		b.WriteString("\n")
	}
	for _, p := range probes {
		fn := "pf_probe_" + strings.ReplaceAll(p.Name, "-", "_")
		if p.PerApp {
			fmt.Fprintf(&b, "for pf_app in \"$@\"; do pf_run \"component %s $pf_app\" %s \"$pf_app\"; done\n", p.Name, fn)
		} else if p.Requires != "" {
			fmt.Fprintf(&b, "if command -v %s >/dev/null 2>&1; then pf_run 'component %s' %s; else pf_absent 'component %s'; fi\n",
				p.Requires, p.Name, fn, p.Name)
		} else {
			fmt.Fprintf(&b, "pf_run 'component %s' %s\n", p.Name, fn)
		}
	}
	b.WriteString("printf '==> patchfleet:end\\n'\n")
	return b.String(), nil
}

// maxAppPath bounds an application directory (PATH_MAX on Linux).
const maxAppPath = 4096

func validAppPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("rails app path: empty")
	case len(p) > maxAppPath:
		return fmt.Errorf("rails app path %.64q...: longer than %d bytes", p, maxAppPath)
	case !utf8.ValidString(p):
		return fmt.Errorf("rails app path %q: not valid UTF-8", p)
	case p[0] != '/':
		return fmt.Errorf("rails app path %q: not absolute", p)
	}
	for i, r := range p {
		// Control characters would break the one-line section header and
		// have no business in a deployment path.
		if unicode.IsControl(r) {
			return fmt.Errorf("rails app path %q: control character %q at offset %d", p, r, i)
		}
	}
	return nil
}
