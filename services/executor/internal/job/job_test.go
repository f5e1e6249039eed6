package job

import (
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostops"
)

func TestNext(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rules := Rules{MinFreeKB: 1000, RebootTimeout: 10 * time.Minute}
	sec := events.UpgradeRequested{JobID: "j", RolloutID: "r", HostID: "h", Kind: events.KindSecurity,
		Strategy: events.StrategyInPlace, Reboot: events.RebootIfRequired,
		Packages: []events.PackageTarget{{Name: "openssl", MinVersion: "3.0.19-1~deb12u3"}}}
	with := func(f func(*events.UpgradeRequested)) events.UpgradeRequested {
		r := sec
		r.Packages = append([]events.PackageTarget(nil), sec.Packages...)
		f(&r)
		return r
	}
	pkg := func(v string) map[string]hostops.PackageState {
		return map[string]hostops.PackageState{"openssl": {Name: "openssl", Present: true, Version: v, Status: "ii", Installed: true}}
	}
	old, fixedV := pkg("3.0.19-1~deb12u2"), pkg("3.0.19-1~deb12u3")
	host := Observation{BootID: "b1", Packages: old, FreeKB: 5000}
	obs := func(f func(*Observation)) Observation {
		o := host
		f(&o)
		return o
	}
	installed := Progress{BootID: "b1", Updated: true, Installed: true}

	tests := []struct {
		name   string
		req    events.UpgradeRequested
		p      Progress
		o      Observation
		want   Action
		reason string
	}{
		{"fresh job installs, updating the lists first in the same op", sec, Progress{BootID: "b1"}, host, Install, ""},
		{"lists updated by an earlier op: installs without updating", sec, Progress{BootID: "b1", Updated: true}, host, Install, ""},
		{"interrupted dpkg is repaired first", sec, Progress{}, obs(func(o *Observation) { o.DpkgInterrupted = true }), Repair, ""},
		{"repaired once and still interrupted fails", sec, Progress{Repaired: true}, obs(func(o *Observation) { o.DpkgInterrupted = true }), Fail, events.FailAptError},
		{"held requested package refuses", sec, Progress{}, obs(func(o *Observation) { o.Held = []string{"openssl:amd64"} }), Fail, events.FailHeldPackage},
		{"held other package is fine", sec, Progress{}, obs(func(o *Observation) { o.Held = []string{"nginx"} }), Install, ""},
		{"low disk refuses", sec, Progress{}, obs(func(o *Observation) { o.FreeKB = 10 }), Fail, events.FailDiskSpace},
		{"unknown disk does not refuse", sec, Progress{}, obs(func(o *Observation) { o.FreeKB = -1 }), Install, ""},
		{"already fixed (resumed after apt, or upgraded by hand) installs nothing", sec, Progress{BootID: "b1", Updated: true}, obs(func(o *Observation) { o.Packages = fixedV }), AlreadyFixed, ""},
		{"absent package counts as not vulnerable", sec, Progress{}, obs(func(o *Observation) { o.Packages = nil }), AlreadyFixed, ""},
		{"no minimum version always installs", with(func(r *events.UpgradeRequested) { r.Packages[0].MinVersion = "" }), Progress{Updated: true}, obs(func(o *Observation) { o.Packages = fixedV }), Install, ""},
		{"deadline passed before the upgrade", with(func(r *events.UpgradeRequested) { r.Deadline = now.Add(-time.Minute) }), Progress{}, host, Fail, events.FailDeadlineExceeded},
		{"deadline passed after the upgrade goes on", with(func(r *events.UpgradeRequested) { r.Deadline = now.Add(-time.Minute) }), installed, obs(func(o *Observation) { o.Packages = fixedV }), Complete, ""},
		{"installed but still vulnerable fails", sec, installed, host, Fail, events.FailNotFixed},
		{"installed, no reboot required, completes", sec, installed, obs(func(o *Observation) { o.Packages = fixedV }), Complete, ""},
		{"reboot required and allowed reboots", sec, installed, obs(func(o *Observation) { o.Packages = fixedV; o.RebootRequired = true }), Reboot, ""},
		{"reboot required and never completes (pending)", with(func(r *events.UpgradeRequested) { r.Reboot = events.RebootNever }), installed, obs(func(o *Observation) { o.Packages = fixedV; o.RebootRequired = true }), Complete, ""},
		{"reboot always reboots without a requirement", with(func(r *events.UpgradeRequested) { r.Reboot = events.RebootAlways }), installed, obs(func(o *Observation) { o.Packages = fixedV }), Reboot, ""},
		{"health check after the upgrade", with(func(r *events.UpgradeRequested) { r.HealthCheck = "true" }), installed, obs(func(o *Observation) { o.Packages = fixedV; o.RebootRequired = true }), Health, ""},
		{"rebooting and the host is away waits", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Minute)}, Observation{}, WaitReboot, ""},
		{"rebooting with the old boot id still waits", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Minute)}, obs(func(o *Observation) { o.RebootScheduled = true }), WaitReboot, ""},
		{"rebooting, old boot id, reboot op ran (marker): waits", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Minute)}, obs(func(o *Observation) { o.RebootScheduled = true }), WaitReboot, ""},
		{"rebooting, old boot id, no marker: the reboot never reached the host, issue it", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Minute)}, obs(func(o *Observation) { o.RebootScheduled = false }), Reboot, ""},
		{"rebooting, new boot id, no marker: rebooted", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Minute)}, obs(func(o *Observation) { o.BootID = "b2" }), WaitReboot, ""},
		{"rebooting, host away, no marker known: waits", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Minute)}, Observation{}, WaitReboot, ""},
		{"rebooting, no marker, long after the save: issues the reboot rather than time out", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Hour)}, host, Reboot, ""},
		{"rebooting, marker, past the timeout fails", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Hour)}, obs(func(o *Observation) { o.RebootScheduled = true }), Fail, events.FailRebootTimeout},
		{"rebooting past the timeout fails", sec, Progress{Installed: true, RebootFrom: "b1", RebootAt: now.Add(-time.Hour)}, Observation{}, Fail, events.FailRebootTimeout},
		{"never reboots twice: rebooted and reboot-required again completes", sec, Progress{Installed: true, RebootFrom: "b1", RebootedTo: "b2"}, obs(func(o *Observation) { o.BootID = "b2"; o.Packages = fixedV; o.RebootRequired = true }), Complete, ""},
		{"health check after the reboot", with(func(r *events.UpgradeRequested) { r.HealthCheck = "true" }), Progress{Installed: true, HealthUpgrade: true, RebootFrom: "b1", RebootedTo: "b2"}, obs(func(o *Observation) { o.BootID = "b2"; o.Packages = fixedV }), Health, ""},
		{"configure unattended after a security upgrade", with(func(r *events.UpgradeRequested) { r.ConfigureUnattended = true }), installed, obs(func(o *Observation) { o.Packages = fixedV }), Unattended, ""},
		{"security without packages upgrades from the security origins", with(func(r *events.UpgradeRequested) { r.Packages = nil }), Progress{Updated: true}, host, SecurityUpgrade, ""},
		{"security without packages updates the lists first", with(func(r *events.UpgradeRequested) { r.Packages = nil }), Progress{BootID: "b1"}, host, SecurityUpgrade, ""},
		{"security without packages, installed, configures unattended", with(func(r *events.UpgradeRequested) { r.Packages = nil; r.ConfigureUnattended = true }), installed, host, Unattended, ""},
		{"full upgrade", with(func(r *events.UpgradeRequested) { r.Kind = events.KindFull; r.Packages = nil }), Progress{Updated: true}, host, FullUpgrade, ""},
		{"full upgrade, lists not updated", with(func(r *events.UpgradeRequested) { r.Kind = events.KindFull; r.Packages = nil }), Progress{}, host, FullUpgrade, ""},
		{"unattended needs no apt-get update", with(func(r *events.UpgradeRequested) { r.Kind = events.KindUnattended; r.Packages = nil }), Progress{}, host, Unattended, ""},
		{"docker", with(func(r *events.UpgradeRequested) { r.Kind = events.KindDocker; r.Packages = nil }), Progress{Updated: true}, host, Docker, ""},
		{"docker, lists not updated", with(func(r *events.UpgradeRequested) { r.Kind = events.KindDocker; r.Packages = nil }), Progress{}, host, Docker, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Packages = append([]events.PackageTarget(nil), tt.req.Packages...)
			d := Next(tt.req, tt.p, tt.o, rules, now)
			if d.Action != tt.want || d.Reason != tt.reason {
				t.Errorf("Next = %v %q (%s), want %v %q", d.Action, d.Reason, d.Message, tt.want, tt.reason)
			}
			// An op that changes packages updates the lists first, once per job; nothing
			// else does.
			changes := d.Action == Install || d.Action == FullUpgrade || d.Action == SecurityUpgrade || d.Action == Docker
			if want := changes && !tt.p.Updated; d.Update != want {
				t.Errorf("Next = %v with update %t, want update %t", d.Action, d.Update, want)
			}
		})
	}
}

func TestCheckRejectsWhatMustNeverReachAHost(t *testing.T) {
	ok := events.UpgradeRequested{JobID: "j", RolloutID: "r", HostID: "h", Kind: events.KindSecurity,
		Strategy: events.StrategyInPlace, Reboot: events.RebootNever, Packages: []events.PackageTarget{{Name: "openssl"}}}
	if err := Check(ok); err != nil {
		t.Fatalf("valid job refused: %v", err)
	}
	all := ok
	all.Packages = nil
	if err := Check(all); err != nil {
		t.Fatalf("security job without packages (apply security upgrades) refused: %v", err)
	}
	bad := map[string]func(*events.UpgradeRequested){
		"injection in a name": func(r *events.UpgradeRequested) { r.Packages[0].Name = "openssl;reboot" },
		"option as a name":    func(r *events.UpgradeRequested) { r.Packages[0].Name = "-oAPT::x" },
		"bad version":         func(r *events.UpgradeRequested) { r.Packages[0].MinVersion = "1.0; rm -rf /" },
		"health with control": func(r *events.UpgradeRequested) { r.HealthCheck = "true\x1b[2J" },
		"docker non-docker pkg": func(r *events.UpgradeRequested) {
			r.Kind = events.KindDocker
			r.Components = []events.Component{{Name: "openssl", Version: "1"}}
		},
		"docker without version": func(r *events.UpgradeRequested) {
			r.Kind = events.KindDocker
			r.Components = []events.Component{{Name: "docker-ce"}}
		},
		"unknown kind": func(r *events.UpgradeRequested) { r.Kind = "everything" },
	}
	for name, f := range bad {
		r := ok
		r.Packages = []events.PackageTarget{{Name: "openssl"}}
		f(&r)
		if err := Check(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStepNamesFollowProgress(t *testing.T) {
	for _, tt := range []struct {
		p    Progress
		want string
	}{
		{Progress{}, "received"}, {Progress{BootID: "b"}, "preflight"}, {Progress{Updated: true}, "updated"},
		{Progress{Installed: true}, "installed"}, {Progress{RebootFrom: "b"}, "rebooting"}, {Progress{RebootFrom: "b", RebootedTo: "c"}, "rebooted"},
	} {
		if got := tt.p.Step(); !strings.EqualFold(got, tt.want) {
			t.Errorf("%+v: step %s, want %s", tt.p, got, tt.want)
		}
	}
}

func TestNextReplaceResumesAtTheRecordedStage(t *testing.T) {
	n := &NewHost{ID: "new", Name: "new", Address: "10.0.0.2", Port: 22, HostKey: "ssh-ed25519 AAAA"}
	upgraded := ReplaceProgress{New: n, Registered: true, Upgraded: true}
	with := func(f func(*ReplaceProgress)) ReplaceProgress {
		p := upgraded
		f(&p)
		return p
	}
	needsReboot := with(func(p *ReplaceProgress) { p.NewRebootRequired = true })
	rebooting := with(func(p *ReplaceProgress) { p.NewRebootRequired, p.NewRebootFrom = true, "b1" })
	rebooted := with(func(p *ReplaceProgress) { p.NewRebootRequired, p.NewRebootFrom, p.NewRebootedTo = true, "b1", "b2" })
	for _, tt := range []struct {
		name   string
		p      ReplaceProgress
		reboot string
		want   ReplaceStep
	}{
		{"fresh job provisions", ReplaceProgress{}, events.RebootNever, ProvisionNew},
		{"hook started, no host recorded: never provision twice", ReplaceProgress{Provisioning: true}, events.RebootNever, ProvisionInterrupted},
		{"host recorded registers it", ReplaceProgress{Provisioning: true, New: n}, events.RebootNever, RegisterNew},
		{"registered upgrades", ReplaceProgress{New: n, Registered: true}, events.RebootAlways, UpgradeNew},
		{"upgraded checks health", upgraded, events.RebootNever, CheckNew},
		{"upgraded, no reboot required, if-required: checks health", upgraded, events.RebootIfRequired, CheckNew},
		{"upgraded, reboot required, if-required: reboots first", needsReboot, events.RebootIfRequired, RebootNew},
		{"upgraded, no reboot required, always: reboots first", upgraded, events.RebootAlways, RebootNew},
		{"upgraded, reboot required, never: checks health", needsReboot, events.RebootNever, CheckNew},
		{"reboot asked for waits for the new boot", rebooting, events.RebootIfRequired, WaitRebootNew},
		{"rebooted checks health", rebooted, events.RebootIfRequired, CheckNew},
		{"rebooted under always: not again", with(func(p *ReplaceProgress) { p.NewRebootFrom, p.NewRebootedTo = "b1", "b2" }), events.RebootAlways, CheckNew},
		{"healthy switches", with(func(p *ReplaceProgress) { p.Healthy = true }), events.RebootNever, SwitchToNew},
		{"healthy without a reboot stage (an older job) switches", with(func(p *ReplaceProgress) { p.Healthy = true }), events.RebootAlways, SwitchToNew},
		{"rebooted and healthy switches", with(func(p *ReplaceProgress) { *p = rebooted; p.Healthy = true }), events.RebootAlways, SwitchToNew},
		{"switched decommissions the old host", with(func(p *ReplaceProgress) { p.Healthy, p.Switched = true, true }), events.RebootNever, DecommissionOld},
		{"decommissioned retires the old host", with(func(p *ReplaceProgress) { p.Healthy, p.Switched, p.Decommissioned = true, true, true }), events.RebootNever, RetireOld},
		{"all done", with(func(p *ReplaceProgress) { p.Healthy, p.Switched, p.Decommissioned, p.Retired = true, true, true, true }), events.RebootNever, ReplaceDone},
		{"new host failed is retired", ReplaceProgress{New: n, Registered: true, FailedStage: "health"}, events.RebootNever, RetireNew},
		{"new host failed while rebooting is retired", with(func(p *ReplaceProgress) { *p = rebooting; p.FailedStage = "wait-reboot" }), events.RebootIfRequired, RetireNew},
		{"new host retired fails the job", ReplaceProgress{New: n, Registered: true, FailedStage: "health", NewRetired: true}, events.RebootNever, FailReplaced},
		{"provision failed fails the job", ReplaceProgress{Provisioning: true, FailedStage: "provision"}, events.RebootNever, FailReplaced},
	} {
		if got := NextReplace(tt.p, tt.reboot); got != tt.want {
			t.Errorf("%s: NextReplace = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestARepairThatDidNotHelpNamesWhatDpkgLeftUnfinished: the failure says which packages
// are stuck and how, from the state look's unfinished packages.
func TestARepairThatDidNotHelpNamesWhatDpkgLeftUnfinished(t *testing.T) {
	o := Observe(hostops.State{DpkgInterrupted: true, Unfinished: []hostops.PackageState{
		{Name: "pf-broken", Present: true, Version: "1.1", Status: "iF"},
		{Name: "libfoo", Present: true, Version: "2.0", Status: "iUR"},
	}})
	o.FreeKB = 5000
	req := events.UpgradeRequested{JobID: "j", HostID: "h", Kind: events.KindSecurity, Packages: []events.PackageTarget{{Name: "openssl", MinVersion: "3.0.13-1~deb12u1"}}}
	d := Next(req, Progress{Repaired: true}, o, Rules{MinFreeKB: 1000, RebootTimeout: time.Minute}, time.Now())
	want := "dpkg is still interrupted after dpkg --configure -a: pf-broken 1.1 half-configured; libfoo 2.0 unpacked, reinstreq"
	if d.Action != Fail || d.Reason != events.FailAptError || d.Message != want {
		t.Errorf("Next = %v %q %q, want the failure %q", d.Action, d.Reason, d.Message, want)
	}
}

func TestObserveTreatsAnUnknownRebootMarkerAsScheduled(t *testing.T) {
	for _, tt := range []struct {
		scheduled, known, want bool
	}{{true, true, true}, {false, true, false}, {false, false, true}} {
		o := Observe(hostops.State{RebootScheduled: tt.scheduled, RebootScheduledKnown: tt.known})
		if o.RebootScheduled != tt.want {
			t.Errorf("scheduled %t known %t: observed %t, want %t", tt.scheduled, tt.known, o.RebootScheduled, tt.want)
		}
	}
}

func TestAfterInstallStandsOnlyForACompleteReportOfEveryTarget(t *testing.T) {
	before := Observation{BootID: "b1", FreeKB: 5000, Packages: map[string]hostops.PackageState{
		"openssl": {Name: "openssl", Present: true, Version: "3.0.17-1~deb12u2"}}}
	after := []hostops.PackageState{{Name: "openssl", Present: true, Version: "3.0.19-1~deb12u3"}, {Name: "libssl3"}}
	names := []string{"openssl", "libssl3"}
	res := hostops.InstallResult{Report: hostops.Report{Complete: true}, After: after, RebootRequired: true, RebootPackages: []string{"libc6"}}

	o, ok := before.AfterInstall(res, names)
	if !ok || o.BootID != "b1" || o.Packages["openssl"].Version != "3.0.19-1~deb12u3" || o.Packages["libssl3"].Present ||
		!o.RebootRequired || len(o.RebootPackages) != 1 {
		t.Errorf("complete report: %+v %t, want the versions and reboot-required it read, the boot kept", o, ok)
	}
	if before.Packages["openssl"].Version != "3.0.17-1~deb12u2" {
		t.Error("AfterInstall changed the observation it was called on")
	}
	for name, r := range map[string]hostops.InstallResult{
		"truncated":      {Report: hostops.Report{Complete: false}, After: after},
		"with problems":  {Report: hostops.Report{Complete: true, Problems: []string{"section after line 1: bad"}}, After: after},
		"target missing": {Report: hostops.Report{Complete: true}, After: after[:1]},
	} {
		if _, ok := before.AfterInstall(r, names); ok {
			t.Errorf("%s report stands for a fresh look", name)
		}
	}
}

func TestOffPinNamesTheFirstPackageAwayFromItsPin(t *testing.T) {
	pins := []hostops.Target{{Name: "docker-ce", Version: "5:28.2.2"}, {Name: "docker-ce-cli", Version: "5:28.2.2"}}
	for _, tt := range []struct {
		name  string
		after []hostops.PackageState
		off   string
	}{
		{"every pin holds", []hostops.PackageState{{Name: "docker-ce", Present: true, Version: "5:28.2.2"}, {Name: "docker-ce-cli", Present: true, Version: "5:28.2.2"}}, ""},
		{"a package the host lacks holds", []hostops.PackageState{{Name: "docker-ce", Present: true, Version: "5:28.2.2"}, {Name: "docker-ce-cli"}}, ""},
		{"past its pin", []hostops.PackageState{{Name: "docker-ce", Present: true, Version: "5:28.2.2"}, {Name: "docker-ce-cli", Present: true, Version: "5:29.0.0"}}, "docker-ce-cli 5:29.0.0"},
	} {
		pin, got, off := OffPin(pins, tt.after)
		if s := pin.Name + " " + got; off != (tt.off != "") || off && s != tt.off {
			t.Errorf("%s: OffPin = %q %t, want %q", tt.name, s, off, tt.off)
		}
	}
}
