package hostfacts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events/shell"
)

// dpkgQueryFormat is what pf_dpkg_db packages prints, as dpkg-query prints it.
const scanFormat = `${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${db:Status-Abbrev}\n`

const dpkgQueryFormat = `${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\t${source:Package}\t${source:Version}\n`

// adminDir is a dpkg database: testdata/dpkg-status-debian12 (a test host's) as the status
// file, and journal entries in updates/, in order.
func adminDir(t *testing.T, journal ...string) string {
	t.Helper()
	dir := t.TempDir()
	status, err := os.ReadFile("testdata/dpkg-status-debian12")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"status": string(status), "available": ""}
	for i, j := range journal {
		files[filepath.Join("updates", fmt.Sprintf("%04d", i))] = j
	}
	// dpkg's temporary file, not yet part of the journal: dpkg ignores it.
	files["updates/tmp.i"] = "Package: pf-not-yet\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
	write(t, dir, files)
	// The control files dpkg --audit also looks for, in the format that names those of
	// Multi-Arch: same packages with :arch.
	out, err := exec.Command("dpkg-query", "--admindir="+dir, "-W", "-f=${binary:Package}\n").Output()
	if err != nil {
		t.Fatal(err)
	}
	info := map[string]string{"format": "1\n"}
	for _, p := range lines(string(out)) {
		info[p+".list"], info[p+".md5sums"] = "", ""
	}
	write(t, filepath.Join(dir, "info"), info)
	return dir
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stanza is the status stanza of pkg in testdata's status file with fields replaced.
func stanza(t *testing.T, pkg string, set map[string]string) string {
	t.Helper()
	status, err := os.ReadFile("testdata/dpkg-status-debian12")
	if err != nil {
		t.Fatal(err)
	}
	for s := range strings.SplitSeq(string(status), "\n\n") {
		if !strings.HasPrefix(s, "Package: "+pkg+"\n") {
			continue
		}
		for field, v := range set {
			re := regexp.MustCompile(`(?m)^` + field + `: .*$`)
			if re.MatchString(s) {
				s = re.ReplaceAllString(s, field+": "+v)
			} else {
				s = strings.Replace(s, "\n", "\n"+field+": "+v+"\n", 1)
			}
		}
		return s + "\n"
	}
	t.Fatalf("no stanza of %s", pkg)
	return ""
}

// runFuncs runs DpkgFuncs' shell function call over the database in dir.
func runFuncs(t *testing.T, dir, call string) []string {
	t.Helper()
	script := DpkgFuncs + "pf_admindir=" + shell.Quote(dir) + "\n" + call + "\n"
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("%s: %v", call, err)
	}
	return lines(string(out))
}

func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// dpkgQuery is dpkg-query's answer, the status's trailing space trimmed as ParseState does.
func dpkgQuery(t *testing.T, dir string, names []string) []string {
	t.Helper()
	cmd := exec.Command("dpkg-query", append([]string{"--admindir=" + dir, "-W", "-f=" + dpkgQueryFormat}, names...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	return lines(strings.ReplaceAll(string(out), " \t", "\t"))
}

func statusNames(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "--admindir="+dir, "-W", "-f=${Package}\n").Output()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Compact(lines(string(out)))
}

// TestPackagesReadsTheDatabaseAsDpkgQuery: pf_dpkg_db packages and scan print what dpkg-query prints for
// every package of a real status file, with and without journal entries that change a
// package, add a package (reinstreq, its source with a version) and add a second
// architecture of one; and a line "absent" for a name dpkg does not know.
func TestPackagesReadsTheDatabaseAsDpkgQuery(t *testing.T) {
	cases := map[string][]string{
		"status file": nil,
		"journal": {
			stanza(t, "apt", map[string]string{"Status": "install ok half-configured", "Version": "2.6.2"}),
			strings.ReplaceAll(stanza(t, "zlib1g", map[string]string{"Status": "install reinstreq half-installed"}), "Package: zlib1g\n", "Package: pf-extra\n") +
				"\n" + stanza(t, "libc6", map[string]string{"Architecture": "i386"}),
			stanza(t, "apt", map[string]string{"Status": "hold ok unpacked", "Version": "2.6.3"}),
			// Remembered only (purged), and removed with its conffiles kept.
			stanza(t, "gzip", map[string]string{"Status": "purge ok not-installed"}),
			stanza(t, "sed", map[string]string{"Status": "deinstall ok config-files"}),
		},
	}
	for name, journal := range cases {
		t.Run(name, func(t *testing.T) {
			dir := adminDir(t, journal...)
			names := statusNames(t, dir)
			if len(names) < 100 {
				t.Fatalf("%d packages in the database", len(names))
			}
			got := runFuncs(t, dir, "pf_dpkg_db packages "+strings.Join(names, " ")+" pf-surely-absent")
			want := append(dpkgQuery(t, dir, names), "pf-surely-absent\tabsent")
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("pf_dpkg_db packages and dpkg-query differ:\n%s", lineDiff(got, want))
			}
			// The scan: every package but those dpkg only remembers, as dpkg-query -W lists them.
			scan := runFuncs(t, dir, "pf_dpkg_db scan")
			cmd := exec.Command("dpkg-query", "--admindir="+dir, "-W", "-f="+scanFormat)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if want := lines(strings.ReplaceAll(string(out), " \n", "\n")); !slices.Equal(scan, want) {
				t.Errorf("pf_dpkg_db scan and dpkg-query -W differ:\n%s", lineDiff(scan, want))
			}
			if name == "journal" && !slices.Contains(got, "apt\t2.6.3\tamd64\thU\tapt\t2.6.3") {
				t.Errorf("the last journal entry of apt is not what is printed: %q", got[:3])
			}
			// A few names, as the ops ask: the others' stanzas are passed over.
			few := []string{"apt", "libc6", "pf-extra", "sed", "zlib1g"}
			if name == "status file" {
				few = few[:2]
			}
			got = runFuncs(t, dir, "pf_dpkg_db packages "+strings.Join(few, " ")+" pf-surely-absent apt")
			want = append(dpkgQuery(t, dir, few), "pf-surely-absent\tabsent")
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("pf_dpkg_db packages of %v and dpkg-query differ:\n%s", few, lineDiff(got, want))
			}
		})
	}
}

// TestUnfinishedIsWhatDpkgAuditReports: pf_dpkg_db unfinished names the packages whose states
// dpkg --audit reports, here every state between installed and not, and reinstreq.
func TestUnfinishedIsWhatDpkgAuditReports(t *testing.T) {
	var journal []string
	for _, c := range []struct{ pkg, status, field, value string }{
		{"apt", "install ok half-configured", "", ""}, {"zlib1g", "install ok unpacked", "", ""},
		{"gzip", "install ok half-installed", "", ""}, {"tar", "install reinstreq installed", "", ""},
		{"sed", "install ok triggers-awaited", "Triggers-Awaited", "dash"},
		{"dash", "install ok triggers-pending", "Triggers-Pending", "/usr/share/pf-trigger"},
		{"grep", "deinstall ok config-files", "", ""}, {"hostname", "hold ok installed", "", ""},
	} {
		set := map[string]string{"Status": c.status}
		if c.field != "" {
			set[c.field] = c.value
		}
		journal = append(journal, stanza(t, c.pkg, set))
	}
	for _, tc := range []struct {
		name    string
		journal []string
		want    []string
	}{
		{"consistent", nil, nil},
		{"interrupted", journal, []string{"apt", "dash", "gzip", "sed", "tar", "zlib1g"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := adminDir(t, tc.journal...)
			// Under set -f too: the security upgrade turns globbing off around its steps.
			var got []string
			for _, l := range runFuncs(t, dir, "set -f; pf_dpkg_db unfinished") {
				got = append(got, strings.Split(l, "\t")[0])
			}
			out, err := exec.Command("dpkg", "--admindir="+dir, "--audit").Output()
			if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
				t.Fatalf("dpkg --audit: %v: %s", err, ee.Stderr) // 1: it reported something
			}
			var audit []string
			for l := range strings.SplitSeq(string(out), "\n") {
				if f := strings.Fields(l); strings.HasPrefix(l, " ") && len(f) > 0 {
					audit = append(audit, strings.Split(f[0], ":")[0]) // dpkg names libc6:amd64

				}
			}
			slices.Sort(got)
			slices.Sort(audit)
			if !slices.Equal(got, tc.want) || !slices.Equal(audit, tc.want) {
				t.Errorf("pf_unfinished %q, dpkg --audit %q, want %q", got, audit, tc.want)
			}
		})
	}
}

func lineDiff(got, want []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	return b.String()
}
