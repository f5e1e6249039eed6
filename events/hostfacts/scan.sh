# patchfleet:op scan v1
# Patchfleet inventory scan, report format 1.
# POSIX sh, runs as any user, changes nothing. Arguments: Rails application
# directories to probe. See README.md in events/hostfacts.
LC_ALL=C
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
pf_admindir=/var/lib/dpkg
pf_dpkg_db() {
	pf_db=$pf_admindir/status
	pf_o=$-
	set +f
	for pf_f in "$pf_admindir"/updates/*; do
		case ${pf_f##*/} in
		*[!0-9]*) ;;
		*) pf_db="$pf_db $pf_f" ;;
		esac
	done
	case $pf_o in *f*) set -f ;; esac
	pf_mode=$1
	shift
	pf_asked=
	for pf_p in "$@"; do pf_asked="$pf_asked $pf_p"; done
	awk -v RS= -v FS='\n' -v mode="$pf_mode" -v names="$pf_asked" 'function val(l) { sub(/^[^:]*:[ \t]*/, "", l); sub(/[ \t]+$/, "", l); return l }
BEGIN {
	split("unknown u install i hold h deinstall r purge p", w, " ")
	for (i = 1; i < 10; i += 2) want[w[i]] = w[i + 1]
	flag["ok"] = ""; flag["reinstreq"] = "R"
	split("not-installed n config-files c half-installed H unpacked U half-configured F triggers-awaited W triggers-pending t installed i", w, " ")
	for (i = 1; i < 16; i += 2) state[w[i]] = w[i + 1]
	n = split(names, asked, " ")
	for (i = 1; i <= n; i++) isasked[asked[i]] = 1
}
{
	# dpkg writes the Package field of a stanza first: the ops ask for a few packages, and
	# the stanzas of the others are passed over before their fields are read.
	if (mode == "packages" && $1 ~ /^Package:/ && !(val($1) in isasked)) next
	pkg = ver = arch = st = src = srcver = ""
	for (i = 1; i <= NF; i++) {
		if ($i !~ /^(Package|Version|Architecture|Status|Source):/) continue
		if ($i ~ /^Package:/) pkg = val($i)
		else if ($i ~ /^Version:/) ver = val($i)
		else if ($i ~ /^Architecture:/) arch = val($i)
		else if ($i ~ /^Status:/) st = val($i)
		else if ($i ~ /^Source:/) src = val($i)
	}
	if (pkg == "" || mode == "packages" && !(pkg in isasked)) next
	if (split(st, w, " ") != 3) w[1] = w[2] = w[3] = "?"
	abbrev = ((w[1] in want) ? want[w[1]] : "?") ((w[3] in state) ? state[w[3]] : "?") ((w[2] in flag) ? flag[w[2]] : "?")
	if (src ~ / \(/) { srcver = src; sub(/^[^(]*\(/, "", srcver); sub(/\).*$/, "", srcver); sub(/ .*$/, "", src) }
	if (src == "") src = pkg
	if (srcver == "") srcver = ver
	key = pkg ":" arch
	if (!(key in seen)) { seen[key] = 1; order[++keys] = key }
	name[key] = pkg
	if (mode == "scan") scan[key] = abbrev ~ /^.n/ ? "" : pkg "\t" ver "\t" arch "\t" src "\t" srcver "\t" abbrev
	else {
		line[key] = pkg "\t" ver "\t" arch "\t" abbrev "\t" src "\t" srcver
		unfinished[key] = abbrev ~ /^.[HUFWt?]/ || abbrev ~ /[R?]$/
	}
}
END {
	if (mode == "packages") {
		for (i = 1; i <= n; i++) {
			if (asked[i] in done) continue
			done[asked[i]] = 1
			found = 0
			for (k = 1; k <= keys; k++) if (name[order[k]] == asked[i]) { print line[order[k]]; found = 1 }
			if (!found) print asked[i] "\tabsent"
		}
	} else if (mode == "unfinished") {
		for (k = 1; k <= keys; k++) if (unfinished[order[k]]) print line[order[k]]
	} else if (mode == "scan") {
		for (k = 1; k <= keys; k++) if (scan[order[k]] != "") print scan[order[k]]
	} else {
		print "pf_dpkg_db: unknown mode " mode > "/dev/stderr"
		exit 2
	}
}' $pf_db
}

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

printf '==> patchfleet:scan %s\n' 1
pf_quick os-release pf_os_release
pf_quick kernel pf_kernel
pf_quick arch pf_arch
pf_run dpkg-arch pf_dpkg_arch
pf_quick boot-id pf_boot_id
pf_quick hostname pf_hostname
pf_run packages pf_packages
pf_quick reboot-required pf_reboot_required
pf_quick reboot-required-pkgs pf_reboot_required_pkgs
pf_probe_ruby() {
	pf_t ruby -v
}
pf_probe_rails() {
	cd "$1" || return 2
	[ -f Gemfile.lock ] || return 127
	grep -E '^    rails \(' Gemfile.lock
	pf_rc=$?
	[ "$pf_rc" -eq 1 ] && return 127
	return "$pf_rc"
}
pf_probe_passenger() {
	pf_t passenger --version
}
pf_probe_docker() {
	pf_t docker version --format '{{.Server.Version}}' 2>/dev/null || pf_t docker --version
}
pf_probe_weave() {
	pf_t weave version
}
pf_probe_nginx() {
	pf_t nginx -v 2>&1
}
if command -v ruby >/dev/null 2>&1; then pf_run 'component ruby' pf_probe_ruby; else pf_absent 'component ruby'; fi
for pf_app in "$@"; do pf_run "component rails $pf_app" pf_probe_rails "$pf_app"; done
if command -v passenger >/dev/null 2>&1; then pf_run 'component passenger' pf_probe_passenger; else pf_absent 'component passenger'; fi
if command -v docker >/dev/null 2>&1; then pf_run 'component docker' pf_probe_docker; else pf_absent 'component docker'; fi
if command -v weave >/dev/null 2>&1; then pf_run 'component weave' pf_probe_weave; else pf_absent 'component weave'; fi
if command -v nginx >/dev/null 2>&1; then pf_run 'component nginx' pf_probe_nginx; else pf_absent 'component nginx'; fi
printf '==> patchfleet:end\n'
