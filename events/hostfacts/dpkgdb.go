package hostfacts

// DpkgFuncs defines pf_dpkg_db MODE [NAME...], which prints dpkg's package lines
// (${Package}, ${Version}, ${Architecture}, ${db:Status-Abbrev}, ${source:Package},
// ${source:Version}, tab-separated, as dpkg-query prints them) read from dpkg's database
// by one awk, as dpkg itself reads it: the status file, then the journal files of
// /var/lib/dpkg/updates (names of digits only) in order, a later stanza of a package and
// architecture replacing an earlier one (deb-status(5)). MODE is
//
//   - packages: the lines of the NAMEs' stanzas in the order asked, "<name>\tabsent" for a
//     name without one (what the ops read before and after a change);
//   - unfinished: the line of every package dpkg left unfinished, reinstreq or in a state
//     between half-installed and triggers-pending: what dpkg --audit reports of packages'
//     states (its checks of missing control files are damage that dpkg --configure -a
//     would not repair, not dpkg being interrupted);
//   - scan: every package dpkg-query -W lists (all but not-installed), in the scan's
//     field order (the source's two fields before the status).
//
// On a test host (130 packages) awk costs 3.5 ms of CPU where dpkg-query costs 13 and
// dpkg --audit 14: both load more of the database than the status file. The scan and the
// state look before every step run on every host. Tests point pf_admindir elsewhere.
const DpkgFuncs = `pf_admindir=/var/lib/dpkg
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
	awk -v RS= -v FS='\n' -v mode="$pf_mode" -v names="$pf_asked" '` + dpkgAwk + `' $pf_db
}
`

// dpkgAwk is pf_dpkg_db's program. A status word it does not know prints as "?", for the
// parser to reject. No single quote: the shell quotes it with them.
const dpkgAwk = `function val(l) { sub(/^[^:]*:[ \t]*/, "", l); sub(/[ \t]+$/, "", l); return l }
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
}`
