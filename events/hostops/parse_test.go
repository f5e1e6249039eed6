package hostops

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clean asserts a captured report parsed without problems.
func checkClean(t *testing.T, name string, r Report) {
	t.Helper()
	if !r.Complete || len(r.Problems) > 0 {
		t.Errorf("%s: complete %t, problems %q", name, r.Complete, r.Problems)
	}
}

func TestParseStateCaptured(t *testing.T) {
	for _, tc := range []struct {
		file  string
		check func(t *testing.T, s State)
	}{
		{"state-debian12.txt", func(t *testing.T, s State) {
			if p, _ := s.Package("pf-demo"); p != (PackageState{Name: "pf-demo", Present: true, Version: "1.0", Arch: "all", Status: "ii",
				Installed: true, SourceName: "pf-demo", SourceVersion: "1.0"}) {
				t.Errorf("pf-demo = %+v", p)
			}
			if p, _ := s.Package("libpfdemo1"); p.SourceName != "pf-libdemo" {
				t.Errorf("libpfdemo1 = %+v", p)
			}
			if p, ok := s.Package("pf-not-there"); !ok || p.Present {
				t.Errorf("pf-not-there = %+v", p)
			}
			if s.DpkgInterrupted || s.RebootRequired || len(s.BootID) != 36 || len(s.Disks) != 2 {
				t.Errorf("%+v", s)
			}
		}},
		{"state-interrupted.txt", func(t *testing.T, s State) {
			if p, _ := s.Package("pf-broken"); p.Status != "iF" || p.Installed || !p.Present {
				t.Errorf("pf-broken = %+v", p)
			}
			if !s.DpkgInterrupted || len(s.Unfinished) != 1 || s.Unfinished[0].Name != "pf-broken" || s.Unfinished[0].Status != "iF" {
				t.Errorf("interrupted %t unfinished %+v", s.DpkgInterrupted, s.Unfinished)
			}
		}},
	} {
		s, err := ParseState(readTestdata(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		checkClean(t, tc.file, s.Report)
		tc.check(t, s)
	}
}

func TestParseInstallCaptured(t *testing.T) {
	for _, tc := range []struct {
		file  string
		parse func([]byte) (InstallResult, error)
		check func(t *testing.T, r InstallResult)
	}{
		{"install-pf-demo.txt", ParseInstall, func(t *testing.T, r InstallResult) {
			// apt-get update ran first, in the same script.
			if !r.Update.Ran || r.Update.Status != 0 || len(r.Update.Errors) > 0 {
				t.Errorf("update %+v", r.Update)
			}
			// The state before is the state look's: op install reads dpkg's database once, after apt.
			if r.Apt.Status != 0 || r.Before != nil || r.AfterVersion("pf-demo") != "1.1" || !r.RebootRequired ||
				!slices.Equal(r.RebootPackages, []string{"pf-demo"}) || !slices.Contains(r.Apt.Changes, Change{Name: "pf-demo", From: "1.0", To: "1.1"}) {
				t.Errorf("%+v", r)
			}
		}},
		{"install-pf-broken.txt", ParseInstall, func(t *testing.T, r InstallResult) {
			if r.Apt.Status != 100 || !slices.Equal(r.Apt.Failed, []string{"pf-broken"}) ||
				!slices.Equal(r.Apt.Errors, []string{"Sub-process /usr/bin/dpkg returned an error code (1)"}) {
				t.Errorf("%+v", r.Apt)
			}
		}},
		{"install-held.txt", ParseInstall, func(t *testing.T, r InstallResult) {
			if !r.Apt.HeldPackages || r.Apt.Status != 100 || r.AfterVersion("pf-demo") != "1.0" {
				t.Errorf("%+v", r.Apt)
			}
		}},
		{"install-lock-timeout.txt", ParseInstall, func(t *testing.T, r InstallResult) {
			if !r.Apt.LockTimeout || !r.Apt.LockWaited || r.Apt.Status != 100 || len(r.Apt.Changes) > 0 ||
				r.Apt.LockHolder != "process 44 (python3)" {
				t.Errorf("%+v", r.Apt)
			}
		}},
		{"install-after-lock.txt", ParseInstall, func(t *testing.T, r InstallResult) {
			if r.Apt.LockTimeout || !r.Apt.LockWaited || r.Apt.Status != 0 || r.AfterVersion("pf-demo") != "1.1" {
				t.Errorf("%+v", r.Apt)
			}
		}},
		{"full-upgrade.txt", ParseFullUpgrade, func(t *testing.T, r InstallResult) {
			if r.Apt.Status != 0 || len(r.Apt.Changes) != 4 || r.Before != nil || !r.RebootRequired {
				t.Errorf("%+v", r)
			}
		}},
	} {
		r, err := tc.parse(readTestdata(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		checkClean(t, tc.file, r.Report)
		tc.check(t, r)
	}
}

func TestParseOtherOpsCaptured(t *testing.T) {
	rep, err := ParseRepair(readTestdata(t, "repair-failing.txt"))
	if err != nil || !rep.Interrupted || rep.Configure.Status != 1 || !slices.Equal(rep.Configure.Failed, []string{"pf-broken"}) {
		t.Errorf("repair-failing: %v %+v", err, rep)
	}
	checkClean(t, "repair-failing", rep.Report)
	rep, err = ParseRepair(readTestdata(t, "repair-ok.txt"))
	if err != nil || rep.Interrupted || rep.Configure.Status != 0 {
		t.Errorf("repair-ok: %v %+v", err, rep)
	}
	u, err := ParseUnattended(readTestdata(t, "unattended-install.txt"))
	if err != nil || !u.Install.Ran || !u.Package.Installed || len(u.Changed) != 2 || u.Settings.Check(true) != nil || len(u.Files) != 2 {
		t.Errorf("unattended-install: %v %+v", err, u)
	}
	checkClean(t, "unattended-install", u.Report)
	u, err = ParseUnattended(readTestdata(t, "unattended-again.txt"))
	if err != nil || u.Install.Ran || !slices.Equal(u.Changed, []string{UnattendedPath}) || u.Settings.Check(false) != nil {
		t.Errorf("unattended-again: %v %+v", err, u)
	}
	rb, err := ParseReboot(readTestdata(t, "reboot.txt"))
	if err != nil || !rb.Scheduled || len(rb.BootID) != 36 {
		t.Errorf("reboot: %v %+v", err, rb)
	}
	checkClean(t, "reboot", rb.Report)
	for file, want := range map[string]int{"health-ok.txt": 0, "health-fails.txt": 3, "health-hangs.txt": 124} {
		h, err := ParseHealth(readTestdata(t, file))
		if err != nil || h.Status != want || h.Healthy() != (want == 0) || h.TimedOut != (want == 124) {
			t.Errorf("%s: %v %+v", file, err, h)
		}
	}
	d, err := ParseDocker(readTestdata(t, "docker.txt"))
	if err != nil || len(d.Before) != 2 || len(d.After) != 2 || d.After[0].Version != "28.2.2-1~debian.12~bookworm" || d.WeaveAfter != "" {
		t.Errorf("docker: %v %+v", err, d)
	}
	checkClean(t, "docker", d.Report)
}

func TestParseDamagedReports(t *testing.T) {
	full := string(readTestdata(t, "install-pf-demo.txt"))
	for _, tc := range []struct {
		name, out string
		wantErr   bool
		complete  bool
	}{
		{"empty", "", true, false},
		{"other op", strings.Replace(full, "op install 1", "op state 1", 1), true, false},
		{"future format", strings.Replace(full, "op install 1", "op install 2", 1), true, false},
		{"truncated", full[:len(full)/2], false, false},
		{"banner first", "Welcome\n" + full, false, true},
		{"crlf", strings.ReplaceAll(full, "\n", "\r\n"), false, true},
	} {
		r, err := ParseInstall([]byte(tc.out))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if err == nil && r.Complete != tc.complete {
			t.Errorf("%s: complete %t", tc.name, r.Complete)
		}
	}
	r, _ := ParseInstall([]byte(full[:len(full)/2]))
	if r.Apt.Status == 0 && r.Apt.Ran {
		t.Errorf("truncated report claims apt finished: %+v", r.Apt)
	}
}

func TestParsePackageLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want PackageState
		err  bool
	}{
		{"libc6\t2.36-9+deb12u10\tamd64\tii \tglibc\t2.36-9+deb12u10", PackageState{Name: "libc6", Present: true, Version: "2.36-9+deb12u10",
			Arch: "amd64", Status: "ii", Installed: true, SourceName: "glibc", SourceVersion: "2.36-9+deb12u10"}, false},
		{"pf-demo\t1.0\tall\thi \t\t", PackageState{Name: "pf-demo", Present: true, Version: "1.0", Arch: "all", Status: "hi",
			Installed: true, SourceName: "pf-demo", SourceVersion: "1.0"}, false},
		{"old\t\t\tun \t\t", PackageState{Name: "old", Status: "un"}, false},
		{"cfg\t1.0\tall\trc \tcfg\t1.0", PackageState{Name: "cfg", Present: true, Version: "1.0", Arch: "all", Status: "rc",
			SourceName: "cfg", SourceVersion: "1.0"}, false},
		{"gone\tabsent", PackageState{Name: "gone"}, false},
		{"-rf\tabsent", PackageState{}, true},
		{"x\t1.0\tall\tii", PackageState{}, true},
		{"pkg\t1.0\tall\tzz \tpkg\t1.0", PackageState{}, true},
		{"pkg\t1.0 ;x\tall\tii \tpkg\t1.0", PackageState{}, true},
	} {
		got, err := parsePackageLine(tc.line)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
}

func TestParseSecurityUpgradeCaptured(t *testing.T) {
	r, err := ParseSecurityUpgrade(readTestdata(t, "security-upgrade.txt"))
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, "security-upgrade.txt", r.Report)
	var got []string
	for _, u := range r.Selected {
		got = append(got, u.Name+" "+u.From+" "+u.To+" "+u.Releases)
	}
	slices.Sort(got)
	want := []string{"libpfdemo1 1.0 1.1 Debian-Security:stable-security", "pf-demo 1.0 1.1 Debian-Security:stable-security",
		"pf-libdemo-bin 1.0 1.1 Debian-Security:stable-security"}
	if !slices.Equal(got, want) {
		t.Errorf("selected %q, want %q", got, want)
	}
	if r.List.Status != 0 || r.Apt.Status != 0 || len(r.Apt.Changes) != 3 || r.BeforeVersion("pf-demo") != "1.0" || r.AfterVersion("pf-demo") != "1.1" {
		t.Errorf("list %+v apt %+v", r.List, r.Apt)
	}
	if !r.RebootRequired || !slices.Equal(r.RebootPackages, []string{"pf-demo"}) {
		t.Errorf("reboot-required %t %q", r.RebootRequired, r.RebootPackages)
	}

	r, err = ParseSecurityUpgrade(readTestdata(t, "security-upgrade-none.txt"))
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, "security-upgrade-none.txt", r.Report)
	if len(r.Selected) != 0 || !r.Apt.Ran || r.Apt.Status != 0 || len(r.Apt.Changes) != 0 || len(r.Before) != 0 {
		t.Errorf("nothing to do: %+v", r)
	}

	// A failed listing installs nothing and says why.
	r, err = ParseSecurityUpgrade([]byte("==> patchfleet:op security-upgrade 1\n==> patchfleet:section security\n==> patchfleet:stderr\n" +
		"E: The package lists or status file could not be parsed or opened.\n==> patchfleet:status 100\n" +
		"==> patchfleet:section reboot-required\nno\n==> patchfleet:status 0\n==> patchfleet:end\n"))
	if err != nil || r.List.Status != 100 || len(r.List.Errors) != 1 || r.Apt.Ran {
		t.Errorf("failed listing: %v %+v", err, r)
	}
}

func TestParseStateRebootScheduled(t *testing.T) {
	captured := string(readTestdata(t, "state-debian12.txt"))
	body, _, ok := strings.Cut(captured, "==> patchfleet:section reboot-scheduled\n") // the last section
	if !ok {
		t.Fatal("state-debian12.txt has no reboot-scheduled section")
	}
	for _, tc := range []struct {
		name, section      string
		want, known, clean bool
	}{
		{"older script without the section", "", false, false, true},
		{"marker present", "==> patchfleet:section reboot-scheduled\nyes\n==> patchfleet:status 0\n", true, true, true},
		{"marker absent", "==> patchfleet:section reboot-scheduled\nno\n==> patchfleet:status 0\n", false, true, true},
		{"garbage", "==> patchfleet:section reboot-scheduled\nperhaps\n==> patchfleet:status 0\n", false, false, false},
		{"step failed", "==> patchfleet:section reboot-scheduled\n==> patchfleet:status 1\n", false, false, false},
	} {
		s, err := ParseState([]byte(body + tc.section + "==> patchfleet:end\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.RebootScheduled != tc.want || s.RebootScheduledKnown != tc.known || (len(s.Problems) == 0) != tc.clean || !s.Complete {
			t.Errorf("%s: scheduled %t known %t, problems %q; want %t %t, clean %t", tc.name, s.RebootScheduled, s.RebootScheduledKnown, s.Problems, tc.want, tc.known, tc.clean)
		}
	}
}

func TestParseStateHeldFromDpkgStatus(t *testing.T) {
	captured := string(readTestdata(t, "state-debian12.txt"))
	for name, out := range map[string]string{
		"current script": strings.Replace(captured, "pf-demo\t1.0\tall\tii\t", "pf-demo\t1.0\tall\thi\t", 1),
		"earlier script, apt-mark's list": strings.Replace(captured, "==> patchfleet:section dpkg-unfinished\n",
			"==> patchfleet:section held\npf-demo\n==> patchfleet:status 0\n==> patchfleet:section dpkg-unfinished\n", 1),
	} {
		if out == captured {
			t.Fatalf("%s: the capture did not change", name)
		}
		s, err := ParseState([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Held, []string{"pf-demo"}) || len(s.Problems) > 0 {
			t.Errorf("%s: held %q, problems %q; want pf-demo, none", name, s.Held, s.Problems)
		}
	}
}

// TestParseStateIgnoresSectionsOfEarlierScripts: dpkg-lock and dpkg-audit (dpkg's own
// prose) are no longer printed; a report with them parses cleanly and they are not read.
func TestParseStateIgnoresSectionsOfEarlierScripts(t *testing.T) {
	captured := string(readTestdata(t, "state-debian12.txt"))
	out := strings.Replace(captured, "==> patchfleet:section df\n", "==> patchfleet:section dpkg-lock\n/var/lib/dpkg/lock held by 44\n==> patchfleet:status 0\n"+
		"==> patchfleet:section dpkg-audit\nThe following packages are only half configured\n pf-demo  demo\n==> patchfleet:status 0\n==> patchfleet:section df\n", 1)
	if out == captured {
		t.Fatal("the capture did not change")
	}
	s, err := ParseState([]byte(out))
	if err != nil || len(s.Problems) > 0 || s.DpkgInterrupted || len(s.Disks) != 2 {
		t.Errorf("%v: problems %q, interrupted %t, disks %+v", err, s.Problems, s.DpkgInterrupted, s.Disks)
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		p    PackageState
		want string
	}{
		{PackageState{Name: "pf-broken", Version: "1.1", Status: "iF"}, "pf-broken 1.1 half-configured"},
		{PackageState{Name: "libfoo", Version: "2.0", Status: "hiR"}, "libfoo 2.0 installed, reinstreq"},
		{PackageState{Name: "pf-gone", Status: "pn"}, "pf-gone not-installed"},
		{PackageState{Name: "pf-absent"}, "pf-absent"},
	} {
		if got := tc.p.Describe(); got != tc.want {
			t.Errorf("Describe(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestLockHolder(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"Waiting for cache lock: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 44 (python3)...", "process 44 (python3)"},
		{"E: Could not get lock /var/lib/dpkg/lock. It is held by process 1234 (unattended-upgr)", "process 1234 (unattended-upgr)"},
		{"E: Could not get lock /var/lib/dpkg/lock. It is held by process 12x (apt)", ""},
		{"E: Could not get lock /var/lib/dpkg/lock. It is held by process 12 (apt", ""},
		{"E: Could not get lock /var/lib/dpkg/lock-frontend - open (11: Resource temporarily unavailable)", ""},
	} {
		got, ok := lockHolder(tc.line)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("lockHolder(%q) = %q, %t; want %q", tc.line, got, ok, tc.want)
		}
	}
}
