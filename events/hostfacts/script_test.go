package hostfacts

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite scan.sh from ScanScript")

// TestScanShIsScanScript keeps the operator's copy, scan.sh, identical to
// what the scanner runs.
func TestScanShIsScanScript(t *testing.T) {
	want, err := ScanScript()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("scan.sh", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, "scan.sh"); got != want {
		t.Errorf("scan.sh differs from ScanScript(); run go test -run TestScanShIsScanScript -update")
	}
}

func TestScanScriptHeader(t *testing.T) {
	script, err := ScanScript("/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(script, "\n"); first != "# patchfleet:op scan v1" {
		t.Errorf("first line %q, want the op header", first)
	}
}

func TestScanScriptRejectsAppPaths(t *testing.T) {
	for _, p := range []string{"", "srv/app", "/srv/app\n; reboot", "/srv/\x00app", "/srv/\x1b[2Japp", "/srv/\xffapp", "/" + strings.Repeat("a", 5000)} {
		if _, err := ScanScript(p); err == nil {
			t.Errorf("ScanScript(%q) accepted the path", p)
		}
	}
}

// runScan runs the script with sh on this machine, as the scanner would
// over SSH: the script on stdin of "sh -s".
func runScan(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-s", "--"}, args...)...)
	cmd.Stdin = strings.NewReader(script)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh -s: %v\n%s", err, out)
	}
	return out
}

// TestScanScriptRuns runs the real script here. What it finds depends on
// the machine; that every section is there and parses does not.
func TestScanScriptRuns(t *testing.T) {
	script, err := ScanScript()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(runScan(t, script))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Problems {
		if p.Line == 0 || strings.Contains(p.Reason, "status line") {
			t.Errorf("structural problem: %s", p)
		}
	}
	if len(f.Components) != len(probes)-1 { // rails runs per app only
		t.Errorf("got %d components, want %d", len(f.Components), len(probes)-1)
	}
}

// TestScanScriptAppPathsAreData checks that hostile application paths
// reach the probe as data: quoted into the script by ScanScript, or passed
// as arguments by an operator.
func TestScanScriptAppPathsAreData(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "pwned")
	app := filepath.Join(dir, `it's "$(touch `+canary+`)" `+"`touch "+canary+"`; a b")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	lock := "GEM\n  remote: https://rubygems.org/\n  specs:\n    rails (7.0.8.1)\n      railties (= 7.0.8.1)\n    railties (7.0.8.1)\n"
	if err := os.WriteFile(filepath.Join(app, "Gemfile.lock"), []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	noLock := filepath.Join(dir, "no-lock")
	if err := os.Mkdir(noLock, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	want := []Component{
		{Name: "rails", App: app, Present: true, Version: "7.0.8.1"},
		{Name: "rails", App: noLock},
		{Name: "rails", App: missing},
	}

	withApps, err := ScanScript(app, noLock, missing)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ScanScript()
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{
		"ScanScript(apps)": runScan(t, withApps),
		"script with args": runScan(t, plain, app, noLock, missing),
	} {
		f, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		var rails []Component
		for _, c := range f.Components {
			if c.Name == "rails" {
				rails = append(rails, c)
			}
		}
		if !reflect.DeepEqual(rails, want) {
			t.Errorf("%s: rails = %+v, want %+v", name, rails, want)
		}
		var missingProblem bool
		for _, p := range f.Problems {
			missingProblem = missingProblem || strings.HasPrefix(p.Section, "component rails "+missing) && strings.Contains(p.Reason, "exit status 2")
		}
		if !missingProblem {
			t.Errorf("%s: a configured app directory that does not exist is not reported: %v", name, f.Problems)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("the app path was executed")
	}
}

// pf_run's subshell execs a command given alone instead of forking it: the command is a
// child of the script's shell, and its stderr and status still come after its stdout.
func TestPfRunExecsItsCommand(t *testing.T) {
	script := Prelude + `pf_run probe sh -c 'echo "parent $PPID"; echo oops >&2; exit 3'
echo "main $$"
`
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	var parent, main string
	for l := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "parent "); ok {
			parent = v
		}
		if v, ok := strings.CutPrefix(l, "main "); ok {
			main = v
		}
	}
	if parent == "" || parent != main {
		t.Errorf("the command's parent is %q, the script's shell %q: pf_run forked it\n%s", parent, main, out)
	}
	if !strings.Contains(string(out), "\n==> patchfleet:stderr\noops\n==> patchfleet:status 3\n") {
		t.Errorf("stderr and status not after the body:\n%s", out)
	}
}
