package hostops

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events/hostfacts"
)

// hostile are names and versions that must never reach a script.
var hostile = []string{"", "-rf", "--purge", "a", "pf-demo;reboot", "pf-demo'", "$(reboot)", "`reboot`",
	"pf demo", "pf-demo\nreboot", "PF-DEMO", "pf_demo", "pf-demo*", "pf-demo:amd64", "../x"}

func TestBuildersRefuseHostileNames(t *testing.T) {
	for _, name := range hostile {
		if _, err := StateScript("pf-demo", name); err == nil {
			t.Errorf("StateScript accepted %q", name)
		}
		if _, err := InstallScript([]Target{{Name: name}}, Apt{}); err == nil {
			t.Errorf("InstallScript accepted name %q", name)
		}
		if _, err := DockerScript([]Target{{Name: name, Version: "1.0"}}, "", Apt{}); err == nil {
			t.Errorf("DockerScript accepted name %q", name)
		}
	}
	for _, v := range []string{"1.0;reboot", "1.0 ", "$(x)", "-1", "1.0'", "1.0\n"} {
		if _, err := InstallScript([]Target{{Name: "pf-demo", Version: v}}, Apt{}); err == nil {
			t.Errorf("InstallScript accepted version %q", v)
		}
		if _, err := DockerScript([]Target{{Name: "docker-ce", Version: v}}, "", Apt{}); err == nil {
			t.Errorf("DockerScript accepted version %q", v)
		}
	}
	for _, w := range []string{"2.8", "v2.8.1", "2.8.1;x", "latest"} {
		if _, err := DockerScript(nil, w, Apt{}); err == nil {
			t.Errorf("DockerScript accepted weave %q", w)
		}
	}
	if _, err := DockerScript([]Target{{Name: "docker-ce"}}, "", Apt{}); err == nil {
		t.Error("DockerScript accepted a package without a pinned version")
	}
	if _, err := DockerScript([]Target{{Name: "openssl", Version: "3.0"}}, "", Apt{}); err == nil {
		t.Error("DockerScript accepted a non-Docker package")
	}
	if _, err := InstallScript(nil, Apt{}); err == nil {
		t.Error("InstallScript accepted no packages")
	}
	for _, c := range []string{"", "  ", "echo \x00", "echo \x1b[2J", "\xff"} {
		if _, err := HealthScript(c, time.Second); err == nil {
			t.Errorf("HealthScript accepted %q", c)
		}
	}
}

func TestParseOpReadsEveryScript(t *testing.T) {
	targets := []Target{{Name: "pf-demo", Version: "1:1.1~rc1+deb12u1"}, {Name: "libssl3"}}
	scan, err := hostfacts.ScanScript("/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		script string
		op     string
		args   any // pointer to the decoded type; nil when no args line
		want   any
	}{
		{must(StateScript("pf-demo", "libc6")), OpState, &StateArgs{}, &StateArgs{Packages: []string{"pf-demo", "libc6"}}},
		{RepairScript(), OpRepair, nil, nil},
		{must(InstallScript(targets, Apt{LockTimeout: time.Minute})), OpInstall, &InstallArgs{}, &InstallArgs{Targets: targets, LockTimeoutS: 60}},
		{must(InstallScript(targets, Apt{LockTimeout: 1500 * time.Millisecond, Update: true})), OpInstall, &InstallArgs{},
			&InstallArgs{Targets: targets, LockTimeoutS: 2, Update: true}},
		{FullUpgradeScript(Apt{}), OpFullUpgrade, &AptArgs{}, &AptArgs{}},
		{UnattendedScript(true, time.Minute), OpUnattended, &UnattendedArgs{}, &UnattendedArgs{AutoReboot: true, LockTimeoutS: 60}},
		{RebootScript(0), OpReboot, &RebootArgs{}, &RebootArgs{DelayS: 1}},
		{must(HealthScript("curl -fsS 'http://127.0.0.1/healthz' \"$X\"\necho <done>", 5*time.Second)), OpHealth, &HealthArgs{},
			&HealthArgs{Command: "curl -fsS 'http://127.0.0.1/healthz' \"$X\"\necho <done>", TimeoutS: 5}},
		{must(DockerScript([]Target{{Name: "docker-ce", Version: "5:28.2.2-1~debian.12~bookworm"}}, "2.8.1", Apt{Update: true})), OpDocker, &DockerArgs{},
			&DockerArgs{Packages: []Target{{Name: "docker-ce", Version: "5:28.2.2-1~debian.12~bookworm"}}, Weave: "2.8.1", Update: true}},
		{SecurityUpgradeScript(Apt{LockTimeout: time.Minute}), OpSecurityUpgrade, &AptArgs{}, &AptArgs{LockTimeoutS: 60}},
		{scan, OpScan, nil, nil},
	} {
		name, args, ok := ParseOp(tc.script)
		if !ok || name != tc.op {
			t.Errorf("ParseOp = %q, %t; want %q", name, ok, tc.op)
			continue
		}
		if tc.args == nil {
			if args != nil {
				t.Errorf("%s: args %s, want none", tc.op, args)
			}
			continue
		}
		if err := json.Unmarshal(args, tc.args); err != nil {
			t.Errorf("%s: %v", tc.op, err)
		}
		if !reflect.DeepEqual(tc.args, tc.want) {
			t.Errorf("%s: args %+v, want %+v", tc.op, tc.args, tc.want)
		}
	}
	for _, s := range []string{"", "echo hi", "# patchfleet:op state v2\n", "# patchfleet:op State v1\n",
		"# patchfleet:op state v1\n# patchfleet:args {bad\n", " # patchfleet:op state v1\n"} {
		if name, _, ok := ParseOp(s); ok {
			t.Errorf("ParseOp(%q) = %q, ok", s, name)
		}
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// runLocal runs a script with sh here, as over SSH: on stdin of sh -s.
func runLocal(t *testing.T, script string, env ...string) ([]byte, int) {
	t.Helper()
	cmd := exec.Command("sh", "-s")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(script)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out, 0
}

// TestHealthCommandIsOneArgument runs the health script here: the command
// reaches sh -c intact, quotes and all, and its status is the script's.
func TestHealthCommandIsOneArgument(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "pwned")
	cmd := `printf '%s\n' "it's $((1+1))" 'a'"b"; echo err >&2; exit 7` + "\n# ' `touch " + canary + "`"
	out, status := runLocal(t, must(HealthScript(cmd, 10*time.Second)))
	h, err := ParseHealth(out)
	if err != nil {
		t.Fatal(err)
	}
	if status != 7 || h.Status != 7 || h.Stdout != "it's 2\nab\n" || h.Stderr != "err\n" || h.Healthy() || !h.Complete {
		t.Errorf("status %d, %+v", status, h)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("text after a comment in the command ran")
	}
	out, status = runLocal(t, must(HealthScript("sleep 5", time.Second)))
	if h, _ = ParseHealth(out); status != 124 || !h.TimedOut {
		t.Errorf("timed-out check: status %d, %+v", status, h)
	}
}

// TestUpdateStepComesFirstAndStopsTheOp runs op install with Update here, apt-get replaced
// by a stand-in that logs its calls and fails update when told to: a failed update ends the
// op before anything is installed, and the report says which step failed.
func TestUpdateStepComesFirstAndStopsTheOp(t *testing.T) {
	dir := t.TempDir()
	fake, log := filepath.Join(dir, "apt-get"), filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$1\" >>" + log + "\n" +
		"if [ \"$1\" = update ] && [ -n \"$PF_FAIL_UPDATE\" ]; then echo 'E: The repository is not signed.' >&2; exit 100; fi\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The scripts put the system directories first on PATH: the stand-in goes in by name.
	fakeApt := func(s string) string {
		s = strings.ReplaceAll(s, "apt-get ", fake+" ")
		if strings.Contains(strings.ReplaceAll(s, fake, ""), "apt-get") {
			t.Fatalf("script still calls apt-get:\n%s", s)
		}
		return s
	}
	calls := func() string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.Join(strings.Fields(string(b)), " ")
	}
	install := fakeApt(must(InstallScript([]Target{{Name: "dpkg"}}, Apt{LockTimeout: time.Second, Update: true})))

	out, status := runLocal(t, install, "PF_FAIL_UPDATE=1")
	res, err := ParseInstall(out)
	if err != nil || status != 100 || !res.Complete || len(res.Problems) > 0 || res.Update.Status != 100 || res.Apt.Ran ||
		!slices.Equal(res.Update.Errors, []string{"The repository is not signed."}) {
		t.Errorf("failed update: status %d, %v, %+v\n%s", status, err, res, out)
	}
	if c := calls(); c != "update" {
		t.Errorf("apt-get calls %q, want only update", c)
	}

	out, status = runLocal(t, install)
	if res, err = ParseInstall(out); err != nil || status != 0 || len(res.Problems) > 0 || res.Update.Status != 0 || !res.Apt.Ran ||
		res.Apt.Status != 0 || len(res.After) != 1 {
		t.Errorf("update then install: status %d, %v, %+v\n%s", status, err, res, out)
	}
	if c := calls(); c != "update install" {
		t.Errorf("apt-get calls %q, want update install", c)
	}

	out, _ = runLocal(t, fakeApt(must(InstallScript([]Target{{Name: "dpkg"}}, Apt{}))))
	if res, _ = ParseInstall(out); res.Update.Ran || len(res.Problems) > 0 {
		t.Errorf("install without update: %+v\n%s", res, out)
	}
	if c := calls(); c != "install" {
		t.Errorf("apt-get calls %q, want install", c)
	}
}

// TestStateScriptRunsHere runs the read-only state script on this machine;
// what it finds depends on the machine, that it parses cleanly does not.
func TestStateScriptRunsHere(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Fatalf("dpkg-query: %v (Patchfleet builds and tests on Debian or Ubuntu)", err)
	}
	out, status := runLocal(t, must(StateScript("dpkg", "pf-surely-not-installed", "coreutils")))
	st, err := ParseState(out)
	if err != nil {
		t.Fatal(err)
	}
	if status != 0 || !st.Complete || len(st.Problems) > 0 {
		t.Fatalf("status %d, complete %t, problems %q\n%s", status, st.Complete, st.Problems, out)
	}
	if p, _ := st.Package("dpkg"); !p.Installed {
		t.Errorf("dpkg = %+v", p)
	}
	if p, ok := st.Package("pf-surely-not-installed"); !ok || p.Present {
		t.Errorf("absent package = %+v, %t", p, ok)
	}
	if p, _ := st.Package("coreutils"); !p.Installed || len(st.Packages) != 3 {
		t.Errorf("coreutils = %+v, %d packages, want it installed and 3", p, len(st.Packages))
	}
	// No packages asked: none listed (dpkg-query without a name would list them all).
	out, status = runLocal(t, must(StateScript()))
	if st, err = ParseState(out); err != nil || status != 0 || len(st.Packages) != 0 || len(st.Problems) > 0 {
		t.Errorf("state of no packages: status %d, %d packages, problems %q, %v", status, len(st.Packages), st.Problems, err)
	}
	if len(st.Disks) != 2 {
		t.Errorf("disks %+v", st.Disks)
	}
}

func TestUnattendedConfIsSecurityOnly(t *testing.T) {
	conf := UnattendedConf(false)
	for _, want := range []string{"#clear Unattended-Upgrade::Origins-Pattern;", "#clear Unattended-Upgrade::Allowed-Origins;",
		`Unattended-Upgrade::Automatic-Reboot "false";`, `"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";`} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	for _, o := range SecurityOrigins {
		if !strings.Contains(o, "-security") {
			t.Errorf("origin %q is not a security pocket", o)
		}
	}
}

// TestSecurityAwkSelectsSecurityCandidates runs the security-upgrade op's
// filter here on apt-get -s output of Debian, Ubuntu and the test fleet.
func TestSecurityAwkSelectsSecurityCandidates(t *testing.T) {
	if _, err := exec.LookPath("awk"); err != nil {
		t.Fatal(err)
	}
	const preamble = `NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following packages will be upgraded:
  base-files libssl3 openssl
`
	for _, tc := range []struct {
		name, codename, sim string
		want                []string
	}{
		{"debian", "bookworm", preamble + `Inst base-files [12.4+deb12u5] (12.4+deb12u6 Debian:12.6/stable [amd64])
Inst libssl3 [3.0.11-1~deb12u2] (3.0.13-1~deb12u1 Debian:12.6/stable, Debian-Security:12/stable-security [amd64])
Inst openssl [3.0.11-1~deb12u2] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst linux-image-6.1.0-22-amd64 (6.1.94-1 Debian-Security:12/stable-security [amd64])
Inst libc6:i386 [2.36-9+deb12u4] (2.36-9+deb12u7 Debian-Security:12/stable-security [i386])
Inst docker-ce [5:28.2.1-1~debian.12~bookworm] (5:28.2.2-1~debian.12~bookworm Docker CE:bookworm [amd64])
Conf base-files (12.4+deb12u6 Debian:12.6/stable [amd64])
Conf openssl (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])
`, []string{
			"libssl3\t3.0.11-1~deb12u2\t3.0.13-1~deb12u1\tDebian:12.6/stable, Debian-Security:12/stable-security",
			"openssl\t3.0.11-1~deb12u2\t3.0.13-1~deb12u1\tDebian-Security:12/stable-security",
			"libc6:i386\t2.36-9+deb12u4\t2.36-9+deb12u7\tDebian-Security:12/stable-security",
		}},
		{"ubuntu", "jammy", `Inst libc6 [2.35-0ubuntu3.6] (2.35-0ubuntu3.7 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64]) []
Inst tzdata [2024a-0ubuntu0.22.04] (2024a-0ubuntu0.22.04.1 Ubuntu:22.04/jammy-updates [all])
Inst libpython3.10 [3.10.12-1~22.04.3] (3.10.12-1~22.04.4 UbuntuESM:22.04/jammy-infra-security [amd64])
Inst vim [2:8.2.3995-1ubuntu2.15] (2:8.2.3995-1ubuntu2.16 UbuntuESMApps:22.04/jammy-apps-security [amd64])
Inst curl [7.81.0-1ubuntu1.15] (7.81.0-1ubuntu1.16 Ubuntu:24.04/noble-security [amd64])
`, []string{
			"libc6\t2.35-0ubuntu3.6\t2.35-0ubuntu3.7\tUbuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security",
			"libpython3.10\t3.10.12-1~22.04.3\t3.10.12-1~22.04.4\tUbuntuESM:22.04/jammy-infra-security",
			"vim\t2:8.2.3995-1ubuntu2.15\t2:8.2.3995-1ubuntu2.16\tUbuntuESMApps:22.04/jammy-apps-security",
		}},
		{"testfleet", "bookworm", `Inst pf-demo [1.0] (1.1 Debian-Security:stable-security [all])
Inst pf-ordinary [1.0] (1.1 Debian:stable [all])
`, []string{"pf-demo\t1.0\t1.1\tDebian-Security:stable-security"}},
		{"no codename", "", `Inst curl [7.81.0-1ubuntu1.15] (7.81.0-1ubuntu1.16 Ubuntu:22.04/-security [amd64])
Inst openssl [3.0.11-1~deb12u2] (3.0.13-1~deb12u1 Debian-Security:13/testing-security [amd64])
`, []string{"openssl\t3.0.11-1~deb12u2\t3.0.13-1~deb12u1\tDebian-Security:13/testing-security"}},
		{"nothing", "bookworm", preamble + "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n", nil},
	} {
		cmd := exec.Command("awk", "-v", "cn="+tc.codename, securityAwk)
		cmd.Stdin = strings.NewReader(tc.sim)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: awk: %v", tc.name, err)
		}
		var got []string
		if s := strings.TrimSuffix(string(out), "\n"); s != "" {
			got = strings.Split(s, "\n")
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: selected\n%q\nwant\n%q", tc.name, got, tc.want)
		}
		// What the filter prints, the parser reads back without problems.
		var r Report
		if ups := parseUpgrades(&r, got); len(ups) != len(got) || len(r.Problems) > 0 {
			t.Errorf("%s: parsed %+v, problems %q", tc.name, ups, r.Problems)
		}
	}
}

// A step's output reaches the report as the step wrote it, whether or not it
// ended with a newline, and stderr stays apart from it.
func TestStepOutputWithAndWithoutFinalNewline(t *testing.T) {
	for cmd, want := range map[string]string{
		"printf 'one\ntwo\n'; echo oops >&2": "one\ntwo\n",
		"printf 'one\ntwo'; echo oops >&2":   "one\ntwo\n",
		"echo oops >&2":                      "",
	} {
		out, _ := runLocal(t, must(HealthScript(cmd, 10*time.Second)))
		h, err := ParseHealth(out)
		if err != nil {
			t.Fatal(err)
		}
		if h.Stdout != want || h.Stderr != "oops\n" || !h.Complete || len(h.Problems) > 0 {
			t.Errorf("%s: stdout %q stderr %q, complete %t, problems %q; want %q, \"oops\\n\"", cmd, h.Stdout, h.Stderr, h.Complete, h.Problems, want)
		}
	}
}
