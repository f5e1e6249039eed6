//go:build e2e

package e2e

// Real-host tests of every hostops op: the scripts run over real SSH on
// testfleet hosts (real sshd, dpkg, apt and the fleet's repository).
//
//	cd tools && go test -tags e2e -count=1 -run Hostops ./e2e/
//
// -hostops.capture DIR writes each op's output to DIR, which is how
// events/hostops/testdata was captured.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/tools/testfleet"
)

var hostopsCapture = flag.String("hostops.capture", "", "write each op's output to this directory")

// hostopsResult is one script run: what sshx.Result carries.
type hostopsResult struct {
	Stdout, Stderr []byte
	ExitStatus     int
}

// hostopsRun runs script on the host the way the executor does: one SSH
// exec of "sh -s" with the script on stdin, host key pinned.
func hostopsRun(ctx context.Context, t *testing.T, h *testfleet.Host, script string) hostopsResult {
	t.Helper()
	res, err := hostopsTryRun(ctx, h, script)
	if err != nil {
		t.Fatalf("run %s on %s: %v", hostopsOpName(script), h.Name(), err)
	}
	return res
}

func hostopsTryRun(ctx context.Context, h *testfleet.Host, script string) (hostopsResult, error) {
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(h.ClientSigner())},
		HostKeyCallback: ssh.FixedHostKey(h.HostKey()),
		Timeout:         10 * time.Second,
	}
	client, err := ssh.Dial("tcp", h.Addr(), cfg)
	if err != nil {
		return hostopsResult{}, err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return hostopsResult{}, err
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdin = strings.NewReader(script)
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run("sh -s") }()
	select {
	case err = <-done:
	case <-ctx.Done():
		client.Close()
		return hostopsResult{}, ctx.Err()
	}
	res := hostopsResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitStatus = ee.ExitStatus()
	default:
		return res, err
	}
	return res, nil
}

func hostopsOpName(script string) string {
	name, _, _ := hostops.ParseOp(script)
	return name
}

// hostopsSave writes an op's output for the parser tests when asked to.
func hostopsSave(t *testing.T, name string, res hostopsResult) {
	t.Helper()
	if *hostopsCapture == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(*hostopsCapture, name+".txt"), res.Stdout, 0o644); err != nil {
		t.Fatal(err)
	}
}

func hostopsContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func hostopsState(ctx context.Context, t *testing.T, h *testfleet.Host, pkgs ...string) hostops.State {
	t.Helper()
	script, err := hostops.StateScript(pkgs...)
	if err != nil {
		t.Fatal(err)
	}
	res := hostopsRun(ctx, t, h, script)
	st, err := hostops.ParseState(res.Stdout)
	if err != nil {
		t.Fatalf("state: %v\n%s", err, res.Stdout)
	}
	if res.ExitStatus != 0 || !st.Complete || len(st.Problems) > 0 {
		t.Fatalf("state: exit %d, complete %t, problems %q\n%s", res.ExitStatus, st.Complete, st.Problems, res.Stdout)
	}
	return st
}

// hostopsAptUpdate updates the host's package lists before the op a test is about.
func hostopsAptUpdate(ctx context.Context, t *testing.T, h *testfleet.Host) {
	t.Helper()
	if out, err := h.MustRun(ctx, "apt-get update -q"); err != nil {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
}

func hostopsInstall(ctx context.Context, t *testing.T, h *testfleet.Host, apt hostops.Apt, targets ...hostops.Target) (hostopsResult, hostops.InstallResult) {
	t.Helper()
	script, err := hostops.InstallScript(targets, apt)
	if err != nil {
		t.Fatal(err)
	}
	res := hostopsRun(ctx, t, h, script)
	ir, err := hostops.ParseInstall(res.Stdout)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, res.Stdout)
	}
	return res, ir
}

func TestHostopsStateInstallRebootRequired(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]

	st := hostopsState(ctx, t, h, "pf-demo", "libpfdemo1", "pf-not-there")
	hostopsSave(t, "state-debian12", hostopsRun(ctx, t, h, mustScript(hostops.StateScript("pf-demo", "libpfdemo1", "pf-not-there"))))
	if p, _ := st.Package("pf-demo"); !p.Present || p.Version != "1.0" || !p.Installed {
		t.Errorf("pf-demo = %+v, want 1.0 installed", p)
	}
	if p, _ := st.Package("libpfdemo1"); p.SourceName != "pf-libdemo" || p.SourceVersion != "1.0" {
		t.Errorf("libpfdemo1 = %+v, want source pf-libdemo 1.0", p)
	}
	if p, ok := st.Package("pf-not-there"); !ok || p.Present {
		t.Errorf("pf-not-there = %+v (listed %t), want absent", p, ok)
	}
	if st.BootID != h.BootID() {
		t.Errorf("boot id %q, host says %q", st.BootID, h.BootID())
	}
	if st.DpkgInterrupted || st.RebootRequired || len(st.Held) > 0 {
		t.Errorf("fresh host state: %+v", st)
	}
	if d, ok := st.Disk("/var"); !ok || d.AvailKB <= 0 || d.TotalKB < d.AvailKB {
		t.Errorf("disk /var = %+v", d)
	}

	// A file in dpkg's updates directory is a dpkg run that did not finish; the state look
	// lists them with shell globs, dotfiles included, as ls -A does.
	if _, err := h.MustRun(ctx, "touch /var/lib/dpkg/updates/0007 /var/lib/dpkg/updates/.pf-x /var/lib/dpkg/updates/..pf-y"); err != nil {
		t.Fatal(err)
	}
	pending := hostopsState(ctx, t, h, "pf-demo")
	if _, err := h.MustRun(ctx, "rm /var/lib/dpkg/updates/0007 /var/lib/dpkg/updates/.pf-x /var/lib/dpkg/updates/..pf-y"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"0007", ".pf-x", "..pf-y"}; !pending.DpkgInterrupted || !sameSet(pending.PendingUpdates, want) {
		t.Errorf("pending updates %q (interrupted %t), want %q", pending.PendingUpdates, pending.DpkgInterrupted, want)
	}

	// The lists are updated by the install itself (Apt Update). A source apt cannot read
	// fails the update, and the op ends there: nothing installed.
	const badSource = "/etc/apt/sources.list.d/pf-missing.list"
	if _, err := h.MustRun(ctx, "echo 'deb [trusted=yes] file:/srv/pf-missing ./' >"+badSource); err != nil {
		t.Fatal(err)
	}
	pfDemo := []hostops.Target{{Name: "pf-demo", Version: "1.1"}, {Name: "libpfdemo1"}}
	res, ir := hostopsInstall(ctx, t, h, hostops.Apt{LockTimeout: 30 * time.Second, Update: true}, pfDemo...)
	if res.ExitStatus == 0 || !ir.Complete || len(ir.Problems) > 0 || !ir.Update.Ran || ir.Update.Status == 0 || len(ir.Update.Errors) == 0 || ir.Apt.Ran {
		t.Fatalf("install after a failing update: exit %d, %+v\n%s", res.ExitStatus, ir, res.Stdout)
	}
	if st := hostopsState(ctx, t, h, "pf-demo"); st.Packages[0].Version != "1.0" {
		t.Fatalf("pf-demo %+v after a failed update, want 1.0", st.Packages[0])
	}
	if _, err := h.MustRun(ctx, "rm "+badSource); err != nil {
		t.Fatal(err)
	}

	res, ir = hostopsInstall(ctx, t, h, hostops.Apt{LockTimeout: 30 * time.Second, Update: true}, pfDemo...)
	hostopsSave(t, "install-pf-demo", res)
	if res.ExitStatus != 0 || ir.Update.Status != 0 || ir.Apt.Status != 0 {
		t.Fatalf("install: exit %d\n%s", res.ExitStatus, res.Stdout)
	}
	if ir.Before != nil || ir.AfterVersion("pf-demo") != "1.1" || ir.AfterVersion("libpfdemo1") != "1.1" {
		t.Errorf("before %+v after %+v", ir.Before, ir.After)
	}
	if !slices.Contains(ir.Apt.Changes, hostops.Change{Name: "pf-demo", From: "1.0", To: "1.1"}) {
		t.Errorf("changes %+v, want pf-demo 1.0 -> 1.1", ir.Apt.Changes)
	}
	if !ir.RebootRequired || !slices.Equal(ir.RebootPackages, []string{"pf-demo"}) {
		t.Errorf("reboot required %t %q, want true [pf-demo]", ir.RebootRequired, ir.RebootPackages)
	}
	// pf-libdemo-bin depends on libpfdemo1 (= version): --only-upgrade of
	// libpfdemo1 alone must not have removed it.
	after := hostopsState(ctx, t, h, "pf-demo", "pf-libdemo-bin")
	if p, _ := after.Package("pf-libdemo-bin"); !p.Installed {
		t.Errorf("pf-libdemo-bin after the upgrade: %+v", p)
	}
	if p, _ := after.Package("pf-demo"); p.Version != "1.1" || !after.RebootRequired {
		t.Errorf("state after install: pf-demo %+v, reboot required %t", p, after.RebootRequired)
	}
}

func mustScript(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func TestHostopsFailingPostinstAndRepair(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	hostopsAptUpdate(ctx, t, h)

	res, ir := hostopsInstall(ctx, t, h, hostops.Apt{LockTimeout: 30 * time.Second}, hostops.Target{Name: "pf-broken"})
	hostopsSave(t, "install-pf-broken", res)
	if res.ExitStatus == 0 || ir.Apt.Status == 0 {
		t.Fatalf("install of pf-broken exited 0\n%s", res.Stdout)
	}
	if !slices.Contains(ir.Apt.Failed, "pf-broken") {
		t.Errorf("failed packages %q, want pf-broken", ir.Apt.Failed)
	}
	if out := ir.Apt.Output(); !strings.Contains(out, "pf-broken: simulated configuration failure") ||
		!strings.Contains(out, "installed pf-broken package post-installation script subprocess returned error exit status 1") {
		t.Errorf("dpkg's error is not in the output:\n%s", out)
	}
	if p, _ := findPkg(ir.After, "pf-broken"); p.Status != "iF" || p.Installed {
		t.Errorf("pf-broken after = %+v, want half-configured (iF)", p)
	}

	st := hostopsState(ctx, t, h, "pf-broken")
	hostopsSave(t, "state-interrupted", hostopsRun(ctx, t, h, mustScript(hostops.StateScript("pf-broken"))))
	if p, _ := findPkg(st.Unfinished, "pf-broken"); !st.DpkgInterrupted || len(st.Unfinished) != 1 || p.Status != "iF" {
		t.Errorf("state after the failure: interrupted %t, unfinished %+v", st.DpkgInterrupted, st.Unfinished)
	}

	// Repair re-runs the failing postinst: still broken, and says so.
	res = hostopsRun(ctx, t, h, hostops.RepairScript())
	hostopsSave(t, "repair-failing", res)
	rr, err := hostops.ParseRepair(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := findPkg(rr.Unfinished, "pf-broken"); res.ExitStatus == 0 || rr.Configure.Status == 0 || !rr.Interrupted || p.Status != "iF" ||
		!slices.Contains(rr.Configure.Failed, "pf-broken") {
		t.Errorf("repair with a postinst that still fails: exit %d, %+v", res.ExitStatus, rr)
	}

	// Once the cause is fixed, repair completes the configuration.
	if _, err := h.MustRun(ctx, "printf '#!/bin/sh\\nexit 0\\n' >/var/lib/dpkg/info/pf-broken.postinst"); err != nil {
		t.Fatal(err)
	}
	res = hostopsRun(ctx, t, h, hostops.RepairScript())
	hostopsSave(t, "repair-ok", res)
	rr, err = hostops.ParseRepair(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || rr.Configure.Status != 0 || rr.Interrupted {
		t.Errorf("repair after the fix: exit %d, %+v", res.ExitStatus, rr)
	}
	st = hostopsState(ctx, t, h, "pf-broken")
	if p, _ := st.Package("pf-broken"); !p.Installed || p.Version != "1.1" || st.DpkgInterrupted {
		t.Errorf("after repair: %+v, interrupted %t", p, st.DpkgInterrupted)
	}
}

func TestHostopsDpkgLock(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	hostopsAptUpdate(ctx, t, h)

	release, err := h.HoldDpkgLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Never released within the timeout: apt gives up with its lock error.
	start := time.Now()
	res, ir := hostopsInstall(ctx, t, h, hostops.Apt{LockTimeout: 2 * time.Second}, hostops.Target{Name: "pf-demo"})
	hostopsSave(t, "install-lock-timeout", res)
	// apt names the holder (the locker is a python3 process), which the failure reports.
	if res.ExitStatus == 0 || !ir.Apt.LockTimeout || !strings.HasSuffix(ir.Apt.LockHolder, " (python3)") {
		t.Errorf("install under a held lock: exit %d, lock timeout %t, holder %q\n%s", res.ExitStatus, ir.Apt.LockTimeout, ir.Apt.LockHolder, ir.Apt.Output())
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("apt gave up after %v, before its 2s lock timeout", d)
	}

	// Released while apt waits: it proceeds.
	const held = 3 * time.Second
	type outcome struct {
		res hostopsResult
		ir  hostops.InstallResult
	}
	done := make(chan outcome, 1)
	start = time.Now()
	go func() {
		script, _ := hostops.InstallScript([]hostops.Target{{Name: "pf-demo"}}, hostops.Apt{LockTimeout: time.Minute})
		res, err := hostopsTryRun(ctx, h, script)
		if err != nil {
			t.Error(err)
		}
		ir, _ := hostops.ParseInstall(res.Stdout)
		done <- outcome{res, ir}
	}()
	// Until apt has found the lock taken: it then sleeps a second between attempts (in
	// clock_nanosleep, x86-64 syscall 230). apt-get merely running may still be reading its
	// lists on a busy machine, and take the lock only after it is released.
	hostopsWaitFor(ctx, t, h, `p=$(pgrep -x apt-get) && awk '$1 == 230 {f = 1} END {exit !f}' /proc/$p/syscall`)
	time.Sleep(held) // the lock stays held this long while apt waits: what is tested, not synchronisation
	if err := release(); err != nil {
		t.Fatal(err)
	}
	out := <-done
	hostopsSave(t, "install-after-lock", out.res)
	if out.res.ExitStatus != 0 || out.ir.AfterVersion("pf-demo") != "1.1" {
		t.Errorf("install after the lock was released: exit %d, after %+v\n%s", out.res.ExitStatus, out.ir.After, out.ir.Apt.Output())
	}
	if !out.ir.Apt.LockWaited {
		t.Errorf("apt did not report waiting for the lock:\n%s", out.ir.Apt.Output())
	}
	if d := time.Since(start); d < held {
		t.Errorf("install finished after %v, while the lock was held for %v", d, held)
	}
}

// hostopsWaitFor polls a command in the host until it succeeds.
func hostopsWaitFor(ctx context.Context, t *testing.T, h *testfleet.Host, cmd string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := h.Run(ctx, cmd)
		if err == nil && res.ExitStatus == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not succeed within 30s: %v %+v", cmd, err, res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHostopsHeldPackage(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	hostopsAptUpdate(ctx, t, h)
	if err := h.HoldPackage(ctx, "pf-demo"); err != nil {
		t.Fatal(err)
	}
	st := hostopsState(ctx, t, h, "pf-demo")
	if p, _ := st.Package("pf-demo"); !slices.Contains(st.Held, "pf-demo") || !p.Held() {
		t.Errorf("held %q, pf-demo %+v: want pf-demo held", st.Held, p)
	}
	res, ir := hostopsInstall(ctx, t, h, hostops.Apt{LockTimeout: 30 * time.Second}, hostops.Target{Name: "pf-demo"})
	hostopsSave(t, "install-held", res)
	if res.ExitStatus == 0 || !ir.Apt.HeldPackages || ir.AfterVersion("pf-demo") != "1.0" {
		t.Errorf("install of a held package: exit %d, held %t, after %+v\n%s", res.ExitStatus, ir.Apt.HeldPackages, ir.After, ir.Apt.Output())
	}
}

func TestHostopsFullUpgradeKeepsLocalConffile(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	hostopsAptUpdate(ctx, t, h)
	// pf-broken's update fails by design; a held package is left alone.
	if err := h.HoldPackage(ctx, "pf-broken"); err != nil {
		t.Fatal(err)
	}
	res := hostopsRun(ctx, t, h, hostops.FullUpgradeScript(hostops.Apt{LockTimeout: 30 * time.Second, Update: true}))
	hostopsSave(t, "full-upgrade", res)
	fr, err := hostops.ParseFullUpgrade(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || fr.Apt.Status != 0 {
		t.Fatalf("full-upgrade: exit %d\n%s", res.ExitStatus, fr.Apt.Output())
	}
	var changed []string
	for _, c := range fr.Apt.Changes {
		changed = append(changed, c.Name+" "+c.From+" "+c.To)
	}
	slices.Sort(changed)
	want := []string{"libpfdemo1 1.0 1.1", "pf-conf 1.0 1.1", "pf-demo 1.0 1.1", "pf-libdemo-bin 1.0 1.1"}
	if !slices.Equal(changed, want) {
		t.Errorf("changes %q, want %q", changed, want)
	}
	conf, err := h.MustRun(ctx, "cat /etc/pf-conf.conf")
	if err != nil {
		t.Fatal(err)
	}
	if conf != testfleet.LocalConfig {
		t.Errorf("/etc/pf-conf.conf = %q, want the local version kept", conf)
	}
	if _, err := h.MustRun(ctx, "grep -q default-1.1 /etc/pf-conf.conf.dpkg-dist"); err != nil {
		t.Errorf("new default not left in .dpkg-dist: %v", err)
	}
}

func TestHostopsInstallConffileNoPrompt(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	hostopsAptUpdate(ctx, t, h)
	res, ir := hostopsInstall(ctx, t, h, hostops.Apt{LockTimeout: 30 * time.Second}, hostops.Target{Name: "pf-conf"})
	if res.ExitStatus != 0 || ir.AfterVersion("pf-conf") != "1.1" {
		t.Fatalf("install pf-conf: exit %d\n%s", res.ExitStatus, ir.Apt.Output())
	}
	if conf, err := h.MustRun(ctx, "cat /etc/pf-conf.conf"); err != nil || conf != testfleet.LocalConfig {
		t.Errorf("/etc/pf-conf.conf = %q (%v), want the local version kept", conf, err)
	}
}

func TestHostopsReboot(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	if _, err := h.MustRun(ctx, "touch /var/run/reboot-required"); err != nil {
		t.Fatal(err)
	}
	before := h.BootID()
	res := hostopsRun(ctx, t, h, hostops.RebootScript(time.Second))
	hostopsSave(t, "reboot", res)
	rr, err := hostops.ParseReboot(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || !rr.Scheduled || rr.BootID != before {
		t.Fatalf("reboot: exit %d, %+v, boot id before %s", res.ExitStatus, rr, before)
	}
	// The SSH command returned; the host goes down and comes back with a
	// new boot id, reboot-required gone with the old /run.
	deadline := time.Now().Add(time.Minute)
	for {
		script := mustScript(hostops.StateScript())
		if r, err := hostopsTryRun(ctx, h, script); err == nil && r.ExitStatus == 0 {
			st, err := hostops.ParseState(r.Stdout)
			if err == nil && st.BootID != "" && st.BootID != before {
				if st.RebootRequired {
					t.Errorf("reboot-required survived the reboot")
				}
				if h.Boots() < 2 {
					t.Errorf("host booted %d times", h.Boots())
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new boot id within a minute (state %s)", h.State())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHostopsHealth(t *testing.T) {
	ctx := hostopsContext(t)
	h := testfleet.New(t, 1).Hosts()[0]
	for _, tc := range []struct {
		name, command string
		timeout       time.Duration
		status        int
		stdout        string
		timedOut      bool
	}{
		{"ok", `pf-demo && printf '%s\n' "it's fine"`, 10 * time.Second, 0, "pf-demo 1.0\nit's fine\n", false},
		{"fails", "echo down >&2; exit 3", 10 * time.Second, 3, "", false},
		{"hangs", "sleep 30", time.Second, 124, "", true},
	} {
		script, err := hostops.HealthScript(tc.command, tc.timeout)
		if err != nil {
			t.Fatal(err)
		}
		res := hostopsRun(ctx, t, h, script)
		hostopsSave(t, "health-"+tc.name, res)
		hr, err := hostops.ParseHealth(res.Stdout)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitStatus != tc.status || hr.Status != tc.status || hr.Stdout != tc.stdout || hr.TimedOut != tc.timedOut || hr.Healthy() != (tc.status == 0) {
			t.Errorf("%s: exit %d, %+v", tc.name, res.ExitStatus, hr)
		}
	}
}

// TestHostopsUnattended installs unattended-upgrades from the fleet's
// repository (a stand-in carrying Debian's default 50unattended-upgrades,
// which also allows non-security updates) and checks that the effective
// settings are security-only, daily, with the asked Automatic-Reboot.
func TestHostopsUnattended(t *testing.T) {
	ctx := hostopsContext(t)
	fleet := testfleet.New(t, 1)
	h := fleet.Hosts()[0]
	const debianDefault = `Unattended-Upgrade::Origins-Pattern {
        "origin=Debian,codename=${distro_codename},label=Debian";
        "origin=Debian,codename=${distro_codename},label=Debian-Security";
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
`
	uu := testfleet.Package{Name: "unattended-upgrades", Version: "2.9.1+nmu3",
		Description: "stand-in for unattended-upgrades",
		Files:       []testfleet.File{{Path: "/etc/apt/apt.conf.d/50unattended-upgrades", Data: debianDefault}},
		Conffiles:   []string{"/etc/apt/apt.conf.d/50unattended-upgrades"}}
	if err := fleet.Repository().Publish(ctx, uu); err != nil {
		t.Fatal(err)
	}
	hostopsAptUpdate(ctx, t, h)

	res := hostopsRun(ctx, t, h, hostops.UnattendedScript(true, 30*time.Second))
	hostopsSave(t, "unattended-install", res)
	ur, err := hostops.ParseUnattended(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || !ur.Install.Ran || ur.Install.Status != 0 || !ur.Package.Installed {
		t.Fatalf("unattended: exit %d, install %+v, package %+v\n%s", res.ExitStatus, ur.Install, ur.Package, res.Stdout)
	}
	if err := ur.Settings.Check(true); err != nil {
		t.Errorf("%v\n%s", err, res.Stdout)
	}
	if !slices.Equal(ur.Changed, []string{hostops.AutoUpgradesPath, hostops.UnattendedPath}) {
		t.Errorf("changed %q, want both files", ur.Changed)
	}
	if got := ur.Files[hostops.UnattendedPath]; got != hostops.UnattendedConf(true)+"\n" {
		t.Errorf("read back %q", got)
	}

	// Again with another reboot setting: idempotent, only our file changes.
	res = hostopsRun(ctx, t, h, hostops.UnattendedScript(false, 30*time.Second))
	hostopsSave(t, "unattended-again", res)
	ur, err = hostops.ParseUnattended(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || ur.Install.Ran || !slices.Equal(ur.Changed, []string{hostops.UnattendedPath}) {
		t.Errorf("second run: exit %d, install ran %t, changed %q", res.ExitStatus, ur.Install.Ran, ur.Changed)
	}
	if err := ur.Settings.Check(false); err != nil {
		t.Error(err)
	}
	if err := ur.Settings.Check(true); err == nil {
		t.Error("Check(true) accepted Automatic-Reboot false")
	}
}

// TestHostopsDocker upgrades stand-in Docker packages from the fleet's
// repository to a pinned version.
func TestHostopsDocker(t *testing.T) {
	ctx := hostopsContext(t)
	fleet := testfleet.New(t, 1)
	h := fleet.Hosts()[0]
	const oldV, newV, newerV = "27.5.1-1~debian.12~bookworm", "28.2.2-1~debian.12~bookworm", "28.3.0-1~debian.12~bookworm"
	var pkgs []testfleet.Package
	for _, v := range []string{oldV, newV, newerV} {
		for _, name := range []string{"docker-ce", "docker-ce-cli"} {
			pkgs = append(pkgs, testfleet.Package{Name: name, Version: v, Description: "stand-in for " + name,
				Files: []testfleet.File{{Path: "/usr/share/" + name + "/version", Data: v + "\n"}}})
		}
	}
	if err := fleet.Repository().Publish(ctx, pkgs...); err != nil {
		t.Fatal(err)
	}
	hostopsAptUpdate(ctx, t, h)
	if _, err := h.MustRun(ctx, fmt.Sprintf("apt-get install -y -q docker-ce=%s docker-ce-cli=%s", oldV, oldV)); err != nil {
		t.Fatal(err)
	}
	script, err := hostops.DockerScript([]hostops.Target{{Name: "docker-ce", Version: newV}, {Name: "docker-ce-cli", Version: newV}}, "", hostops.Apt{LockTimeout: 30 * time.Second, Update: true})
	if err != nil {
		t.Fatal(err)
	}
	res := hostopsRun(ctx, t, h, script)
	hostopsSave(t, "docker", res)
	dr, err := hostops.ParseDocker(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || !dr.Complete || len(dr.Problems) > 0 {
		t.Fatalf("docker: exit %d, %+v\n%s", res.ExitStatus, dr, res.Stdout)
	}
	for _, name := range []string{"docker-ce", "docker-ce-cli"} {
		b, _ := findPkg(dr.Before, name)
		a, _ := findPkg(dr.After, name)
		if b.Version != oldV || a.Version != newV {
			t.Errorf("%s: %s -> %s, want %s -> %s (the pin, not the newest)", name, b.Version, a.Version, oldV, newV)
		}
	}
	if dr.WeaveBefore != "" || dr.WeaveAfter != "" {
		t.Errorf("weave %q -> %q on a host without weave", dr.WeaveBefore, dr.WeaveAfter)
	}
}

func findPkg(ps []hostops.PackageState, name string) (hostops.PackageState, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p, true
		}
	}
	return hostops.PackageState{}, false
}

// TestHostopsSecurityUpgradeTakesOnlySecurityOrigins: besides the fleet's
// repository (labelled like Debian's security archive), the host gets an
// ordinary one (labelled like the main archive) with a newer pf-ordinary and
// a pf-conf newer than the security fix. The op upgrades exactly the packages
// whose candidate comes from the security repository.
func TestHostopsSecurityUpgradeTakesOnlySecurityOrigins(t *testing.T) {
	ctx := hostopsContext(t)
	fleet := testfleet.New(t, 1)
	h := fleet.Hosts()[0]
	ordinary := []testfleet.Package{
		{Name: "pf-ordinary", Version: "1.0", Description: "Patchfleet package from an ordinary origin",
			Files: []testfleet.File{{Path: "/usr/share/pf-ordinary/version", Data: "1.0\n"}}},
		{Name: "pf-ordinary", Version: "1.1", Description: "Patchfleet package from an ordinary origin",
			Files: []testfleet.File{{Path: "/usr/share/pf-ordinary/version", Data: "1.1\n"}}},
		{Name: "pf-conf", Version: "1.2", Description: "Patchfleet package with a conffile",
			Files: []testfleet.File{{Path: "/etc/pf-conf.conf", Data: "setting = default-1.2\n"}}, Conffiles: []string{"/etc/pf-conf.conf"}},
	}
	writeOrdinaryRepo(ctx, t, filepath.Join(fleet.Repository().Dir(), "ordinary"), ordinary)
	if _, err := h.MustRun(ctx, "echo 'deb [trusted=yes] file:"+testfleet.RepoPath+"/ordinary ./' >/etc/apt/sources.list.d/pf-ordinary.list"); err != nil {
		t.Fatal(err)
	}
	hostopsAptUpdate(ctx, t, h)
	if out, err := h.MustRun(ctx, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q pf-ordinary=1.0"); err != nil {
		t.Fatalf("install pf-ordinary 1.0: %v\n%s", err, out)
	}
	// pf-broken's update fails by design; a held package is left alone.
	if err := h.HoldPackage(ctx, "pf-broken"); err != nil {
		t.Fatal(err)
	}

	res := hostopsRun(ctx, t, h, hostops.SecurityUpgradeScript(hostops.Apt{LockTimeout: 30 * time.Second}))
	hostopsSave(t, "security-upgrade", res)
	sr, err := hostops.ParseSecurityUpgrade(res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || !sr.Complete || len(sr.Problems) > 0 || sr.List.Status != 0 || sr.Apt.Status != 0 {
		t.Fatalf("security-upgrade: exit %d, problems %q\n%s%s", res.ExitStatus, sr.Problems, res.Stdout, res.Stderr)
	}
	var selected []string
	for _, u := range sr.Selected {
		selected = append(selected, u.Name+" "+u.From+" "+u.To)
		if !strings.Contains(u.Releases, "Debian-Security") {
			t.Errorf("%s selected from %q", u.Name, u.Releases)
		}
	}
	slices.Sort(selected)
	want := []string{"libpfdemo1 1.0 1.1", "pf-demo 1.0 1.1", "pf-libdemo-bin 1.0 1.1"}
	if !slices.Equal(selected, want) {
		t.Errorf("selected %q, want %q", selected, want)
	}
	for _, n := range []string{"libpfdemo1", "pf-demo", "pf-libdemo-bin"} {
		if sr.BeforeVersion(n) != "1.0" || sr.AfterVersion(n) != "1.1" {
			t.Errorf("%s: before %q after %q, want 1.0 -> 1.1", n, sr.BeforeVersion(n), sr.AfterVersion(n))
		}
	}
	if !sr.RebootRequired || !slices.Contains(sr.RebootPackages, "pf-demo") {
		t.Errorf("reboot-required %t %q, want pf-demo's", sr.RebootRequired, sr.RebootPackages)
	}
	st := hostopsState(ctx, t, h, "pf-ordinary", "pf-conf", "pf-broken", "pf-demo")
	for name, v := range map[string]string{"pf-ordinary": "1.0", "pf-conf": "1.0", "pf-broken": "1.0", "pf-demo": "1.1"} {
		if p, _ := st.Package(name); p.Version != v || !p.Installed {
			t.Errorf("%s after the security upgrade: %+v, want %s", name, p, v)
		}
	}

	// Nothing is left to take from the security origins.
	res = hostopsRun(ctx, t, h, hostops.SecurityUpgradeScript(hostops.Apt{LockTimeout: 30 * time.Second}))
	hostopsSave(t, "security-upgrade-none", res)
	sr, err = hostops.ParseSecurityUpgrade(res.Stdout)
	if err != nil || res.ExitStatus != 0 || len(sr.Selected) != 0 || len(sr.Apt.Changes) != 0 || len(sr.Problems) > 0 {
		t.Errorf("second security-upgrade: exit %d, %v, %+v", res.ExitStatus, err, sr)
	}
}

// writeOrdinaryRepo writes a flat repository whose Release is labelled like
// Debian's main archive, not its security archive.
func writeOrdinaryRepo(ctx context.Context, t *testing.T, dir string, pkgs []testfleet.Package) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "pool"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stanzas []string
	for _, p := range pkgs {
		path, err := testfleet.BuildDeb(ctx, p, filepath.Join(dir, "pool"))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		stanzas = append(stanzas, p.IndexStanza("pool/"+filepath.Base(path), data))
	}
	packages := []byte(strings.Join(stanzas, "\n"))
	md, sh := md5.Sum(packages), sha256.Sum256(packages)
	release := fmt.Sprintf("Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\nDate: %s\nArchitectures: all\n"+
		"Description: ordinary (non-security) test repository\nMD5Sum:\n %x %d Packages\nSHA256:\n %x %d Packages\n",
		time.Now().UTC().Format(time.RFC1123), md, len(packages), sh, len(packages))
	for name, data := range map[string][]byte{"Packages": packages, "Release": []byte(release)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "pool")} {
		if err := os.Chmod(d, 0o755); err != nil { // apt reads as _apt
			t.Fatal(err)
		}
	}
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
