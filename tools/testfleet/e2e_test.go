//go:build e2e

package testfleet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/tools/testfleet"
)

// These tests need root: they create namespaces and mount overlays. They
// build the root filesystem on first use (debootstrap from this machine's
// apt mirror), so the first run takes a few minutes.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the test fleet needs root (namespaces, overlay mounts)")
	}
}

func TestFleetEndToEnd(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	fleet, err := testfleet.Start(ctx, testfleet.Options{CacheDir: testfleet.CacheDirFromEnv()}, 3)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = fleet.Close()
		}
	})
	hosts := fleet.Hosts()
	for _, h := range hosts {
		t.Logf("%s at %s %s booted in %v", h.Name(), h.Addr(), ssh.FingerprintSHA256(h.HostKey()), h.LastBootDuration())
	}

	kernelBootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{strings.TrimSpace(string(kernelBootID)): true}
	for _, h := range hosts {
		c := dial(t, h)
		osRelease := mustRun(t, c, "cat /etc/os-release")
		if !strings.Contains(osRelease, "VERSION_CODENAME=bookworm") || !strings.Contains(osRelease, `VERSION_ID="12"`) {
			t.Errorf("%s: /etc/os-release is not Debian 12:\n%s", h.Name(), osRelease)
		}
		if got := strings.TrimSpace(mustRun(t, c, "hostname")); got != h.Name() {
			t.Errorf("%s: hostname = %q", h.Name(), got)
		}
		bootID := strings.TrimSpace(mustRun(t, c, "cat /proc/sys/kernel/random/boot_id"))
		if bootID != h.BootID() || seen[bootID] {
			t.Errorf("%s: boot id %q: want %q, distinct from the kernel's and other hosts'", h.Name(), bootID, h.BootID())
		}
		seen[bootID] = true
		pkgs := dpkgVersions(t, c)
		for pkg, want := range map[string]string{
			"pf-demo": "1.0 pf-demo 1.0", "libpfdemo1": "1.0 pf-libdemo 1.0",
			"pf-libdemo-bin": "1.0 pf-libdemo 1.0", "openssh-server": "",
		} {
			got, ok := pkgs[pkg]
			if !ok || (want != "" && got != want) {
				t.Errorf("%s: dpkg-query %s = %q, want %q", h.Name(), pkg, got, want)
			}
		}
		// No route to Debian's mirror: the local repository is the only source.
		sources := mustRun(t, c, "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; true")
		if strings.Contains(sources, "http") || !strings.Contains(sources, "file:/srv/patchfleet-repo") {
			t.Errorf("%s: apt sources:\n%s", h.Name(), sources)
		}
		c.Close()
	}

	// The host key is really verified: another host's key is refused.
	if c, err := ssh.Dial("tcp", hosts[0].Addr(), clientConfig(hosts[0].ClientSigner(), hosts[1].HostKey())); err == nil {
		c.Close()
		t.Error("dial with the wrong host key succeeded")
	}

	// The security fix: 1.0 -> 1.1, which asks for a reboot.
	for _, h := range hosts {
		c := dial(t, h)
		mustRun(t, c, "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pf-demo libpfdemo1 pf-libdemo-bin")
		pkgs := dpkgVersions(t, c)
		if pkgs["pf-demo"] != "1.1 pf-demo 1.1" || pkgs["libpfdemo1"] != "1.1 pf-libdemo 1.1" {
			t.Errorf("%s: after upgrade: pf-demo %q, libpfdemo1 %q", h.Name(), pkgs["pf-demo"], pkgs["libpfdemo1"])
		}
		if got := mustRun(t, c, "test -f /var/run/reboot-required && cat /var/run/reboot-required.pkgs"); got != "pf-demo\n" {
			t.Errorf("%s: reboot-required.pkgs = %q", h.Name(), got)
		}
		c.Close()
	}

	// Reboot from inside, with each of the commands an operator would use.
	for i, cmd := range []string{"reboot", "shutdown -r now", "systemctl reboot"} {
		h := hosts[i]
		before := h.BootID()
		c := dial(t, h)
		runDropped(t, c, cmd)
		c.Close()
		bootID := waitBootID(t, ctx, h, before)
		if bootID != h.BootID() {
			t.Errorf("%s: boot id inside %q, supervisor says %q", h.Name(), bootID, h.BootID())
		}
		c = dial(t, h)
		if out := mustRun(t, c, "ls /var/run/reboot-required /var/run/reboot-required.pkgs 2>/dev/null; true"); out != "" {
			t.Errorf("%s: after %q, reboot-required survived: %q", h.Name(), cmd, out)
		}
		// The disk survives a reboot: the upgrade is still there.
		if got := dpkgVersions(t, c)["pf-demo"]; got != "1.1 pf-demo 1.1" {
			t.Errorf("%s: after reboot pf-demo = %q", h.Name(), got)
		}
		c.Close()
		if h.Boots() != 2 {
			t.Errorf("%s: %d boots, want 2", h.Name(), h.Boots())
		}
	}

	// A host that never comes back.
	lost := hosts[2]
	lost.SetNeverComesBack(true)
	before := lost.BootID()
	c := dial(t, lost)
	runDropped(t, c, "reboot")
	c.Close()
	if err := lost.WaitState(ctx, testfleet.StateOff); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", lost.Addr(), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s never came back but accepts connections", lost.Name())
	}
	if _, err := lost.Run(ctx, "true"); !errors.Is(err, testfleet.ErrHostDown) {
		t.Errorf("Run on a host that is off: err = %v, want ErrHostDown", err)
	}
	lost.SetNeverComesBack(false)
	lost.PowerOn()
	if got := waitBootID(t, ctx, lost, before); got == before {
		t.Errorf("%s: boot id unchanged after power on", lost.Name())
	}

	// Reboot from outside, through the library.
	before = hosts[0].BootID()
	if err := hosts[0].Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := hosts[0].WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	if hosts[0].BootID() == before {
		t.Error("Reboot kept the boot id")
	}

	// Teardown leaves no process, mount or directory behind.
	var nss []string
	for _, h := range hosts {
		nss = append(nss, h.MountNamespaces()...)
	}
	if len(nss) < len(hosts)+4 {
		t.Fatalf("recorded %d mount namespaces, want one per boot", len(nss))
	}
	dir := fleet.Dir()
	closed = true
	if err := fleet.Close(); err != nil {
		t.Fatal(err)
	}
	if pids, err := testfleet.ProcessesInNamespaces(nss); err != nil || len(pids) > 0 {
		t.Errorf("after Close: processes %v left in host namespaces (err %v)", pids, err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(mountinfo, []byte(dir)) {
		t.Errorf("after Close: mounts under %s remain", dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close: %s still exists (%v)", dir, err)
	}
	for _, h := range hosts {
		if conn, err := net.DialTimeout("tcp", h.Addr(), time.Second); err == nil {
			conn.Close()
			t.Errorf("after Close: %s still accepts connections", h.Addr())
		}
	}
}

func TestFailingPostinst(t *testing.T) {
	requireRoot(t)
	h := testfleet.New(t, 1).Hosts()[0]
	c := dial(t, h)
	defer c.Close()
	mustRun(t, c, "apt-get update")
	out, status := run(t, c, "DEBIAN_FRONTEND=noninteractive apt-get install -y pf-broken 2>&1")
	if status == 0 {
		t.Fatalf("installing pf-broken 1.1 succeeded:\n%s", out)
	}
	if !strings.Contains(out, "pf-broken: simulated configuration failure") {
		t.Errorf("apt output does not show the postinst failure:\n%s", out)
	}
	if got := mustRun(t, c, "dpkg-query -W -f='${Status} ${Version}' pf-broken"); got != "install ok half-configured 1.1" {
		t.Errorf("pf-broken state = %q", got)
	}
}

func TestChangedConffile(t *testing.T) {
	requireRoot(t)
	hosts := testfleet.New(t, 2).Hosts()
	prompt, confold := dial(t, hosts[0]), dial(t, hosts[1])
	defer prompt.Close()
	defer confold.Close()
	for _, c := range []*ssh.Client{prompt, confold} {
		if got := mustRun(t, c, "cat /etc/pf-conf.conf"); got != testfleet.LocalConfig {
			t.Fatalf("/etc/pf-conf.conf before upgrade = %q", got)
		}
		mustRun(t, c, "apt-get update")
	}

	// Without a conffile policy dpkg asks, and with nobody to answer it fails.
	out, status := run(t, prompt, "DEBIAN_FRONTEND=noninteractive apt-get install -y pf-conf </dev/null 2>&1")
	if status == 0 || !strings.Contains(out, "conffile") {
		t.Errorf("upgrade without --force-confold: status %d, want a conffile prompt failure:\n%s", status, out)
	}

	mustRun(t, confold, "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold pf-conf </dev/null")
	if got := mustRun(t, confold, "dpkg-query -W -f='${Version}' pf-conf"); got != "1.1" {
		t.Errorf("pf-conf = %q after upgrade with --force-confold", got)
	}
	if got := mustRun(t, confold, "cat /etc/pf-conf.conf"); got != testfleet.LocalConfig {
		t.Errorf("--force-confold replaced the local configuration: %q", got)
	}
	if got := mustRun(t, confold, "cat /etc/pf-conf.conf.dpkg-dist"); !strings.Contains(got, "default-1.1") {
		t.Errorf("new default not kept as .dpkg-dist: %q", got)
	}
}

func TestHostHelpers(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	fleet := testfleet.New(t, 1)
	h := fleet.Hosts()[0]
	c := dial(t, h)
	defer c.Close()
	mustRun(t, c, "apt-get update")

	// A held dpkg lock makes apt fail fast, and releasing it lets apt run.
	release, err := h.HoldDpkgLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, status := run(t, c, "DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=0 pf-demo 2>&1")
	if status == 0 || !strings.Contains(out, "Could not get lock") {
		t.Errorf("apt-get with the dpkg lock held: status %d:\n%s", status, out)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}

	// A held package is not upgraded.
	if err := h.HoldPackage(ctx, "pf-demo"); err != nil {
		t.Fatal(err)
	}
	plan := mustRun(t, c, "apt-get upgrade -s")
	if strings.Contains(plan, "Inst pf-demo ") || !strings.Contains(plan, "Inst libpfdemo1 ") {
		t.Errorf("apt-get upgrade plan with pf-demo held:\n%s", plan)
	}
	if got := dpkgVersions(t, c)["pf-demo"]; got != "1.0 pf-demo 1.0" {
		t.Errorf("pf-demo = %q before the manual upgrade", got)
	}

	// A manual upgrade outside apt (drift).
	if err := h.ManualUpgrade(ctx, "pf-demo", "1.1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(mustRun(t, c, "pf-demo")); got != "pf-demo 1.1" {
		t.Errorf("after manual upgrade pf-demo prints %q", got)
	}

	// A newly published version reaches the host through apt.
	next := testfleet.UpdatePackages()[0]
	next.Version = "1.2"
	next.Files[0].Data = "#!/bin/sh\necho pf-demo 1.2\n"
	if err := fleet.Repository().Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	mustRun(t, c, "apt-get update && apt-mark unhold pf-demo && DEBIAN_FRONTEND=noninteractive apt-get install -y pf-demo")
	if got := strings.TrimSpace(mustRun(t, c, "pf-demo")); got != "pf-demo 1.2" {
		t.Errorf("after publishing 1.2 pf-demo prints %q", got)
	}

	// Run executes directly in the host, without SSH.
	res, err := h.Run(ctx, "cat /proc/sys/kernel/random/boot_id; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 3 || strings.TrimSpace(res.Stdout) != h.BootID() {
		t.Errorf("Run = %+v, want exit 3 and boot id %s", res, h.BootID())
	}
}

func clientConfig(signer ssh.Signer, hostKey ssh.PublicKey) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         5 * time.Second,
	}
}

func dial(t *testing.T, h *testfleet.Host) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", h.Addr(), clientConfig(h.ClientSigner(), h.HostKey()))
	if err != nil {
		t.Fatalf("ssh %s: %v", h.Name(), err)
	}
	return c
}

// run runs cmd over SSH and returns its combined output and exit status.
func run(t *testing.T, c *ssh.Client, cmd string) (string, int) {
	t.Helper()
	out, status, err := runErr(c, cmd)
	if err != nil {
		t.Fatalf("ssh run %q: %v", cmd, err)
	}
	return out, status
}

func runErr(c *ssh.Client, cmd string) (string, int, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", 0, err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	err = s.Run(cmd)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return stdout.String() + stderr.String(), ee.ExitStatus(), nil
	}
	return stdout.String() + stderr.String(), 0, err
}

func mustRun(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("ssh session: %v", err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if err := s.Run(cmd); err != nil {
		t.Fatalf("ssh run %q: %v\n%s%s", cmd, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// runDropped runs a command that takes the host down: it may report success
// or lose the connection, as with a real server.
func runDropped(t *testing.T, c *ssh.Client, cmd string) {
	t.Helper()
	_, status, err := runErr(c, cmd)
	var missing *ssh.ExitMissingError
	if err != nil && !errors.As(err, &missing) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("%q: %v", cmd, err)
	}
	if err == nil && status != 0 {
		t.Fatalf("%q exited %d", cmd, status)
	}
}

// waitBootID polls over SSH until the host answers with a boot id other than
// before, and returns it.
func waitBootID(t *testing.T, ctx context.Context, h *testfleet.Host, before string) string {
	t.Helper()
	var last error
	for {
		c, err := ssh.Dial("tcp", h.Addr(), clientConfig(h.ClientSigner(), h.HostKey()))
		if err == nil {
			out, _, err := runErr(c, "cat /proc/sys/kernel/random/boot_id")
			c.Close()
			if id := strings.TrimSpace(out); err == nil && id != "" && id != before {
				return id
			}
			last = fmt.Errorf("boot id %q (err %v)", strings.TrimSpace(out), err)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not come back with a new boot id: %v", h.Name(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dpkgVersions maps package -> "version source sourceversion".
func dpkgVersions(t *testing.T, c *ssh.Client) map[string]string {
	t.Helper()
	out := mustRun(t, c, `dpkg-query -W -f='${Package} ${Version} ${source:Package} ${source:Version}\n'`)
	m := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		name, rest, _ := strings.Cut(line, " ")
		m[name] = rest
	}
	return m
}

// BenchmarkReboot measures a host's boot: from starting its namespaces to
// sshd answering (reboot delay zero).
func BenchmarkReboot(b *testing.B) {
	fleet := testfleet.NewWithOptions(b, testfleet.Options{CacheDir: testfleet.CacheDirFromEnv(), RebootDelay: time.Nanosecond}, 1)
	h := fleet.Hosts()[0]
	ctx := b.Context()
	var boot time.Duration
	for b.Loop() {
		if err := h.Reboot(ctx); err != nil {
			b.Fatal(err)
		}
		if err := h.WaitUp(ctx); err != nil {
			b.Fatal(err)
		}
		boot += h.LastBootDuration()
	}
	b.ReportMetric(float64(boot.Microseconds())/float64(b.N)/1000, "ms/boot")
}

// BenchmarkStartFleet measures starting and tearing down a one-host fleet
// with the root filesystem cached.
func BenchmarkStartFleet(b *testing.B) {
	ctx := b.Context()
	opts := testfleet.Options{CacheDir: testfleet.CacheDirFromEnv()}
	if err := testfleet.Prepare(ctx, opts); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f, err := testfleet.Start(ctx, opts, 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
