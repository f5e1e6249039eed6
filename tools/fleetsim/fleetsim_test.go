package fleetsim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/events/sshx"
)

type result struct {
	stdout, stderr []byte
	status         int
}

// runOn runs command with stdin on a host over SSH, pinning its key.
func runOn(f *Fleet, h *Host, command, stdin string) (result, error) {
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(f.ClientSigner())},
		HostKeyCallback: ssh.FixedHostKey(h.HostKey()),
		Timeout:         10 * time.Second,
	}
	client, err := ssh.Dial("tcp", h.Addr(), cfg)
	if err != nil {
		return result{}, err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return result{}, err
	}
	defer sess.Close()
	var out, errOut bytes.Buffer
	sess.Stdin, sess.Stdout, sess.Stderr = strings.NewReader(stdin), &out, &errOut
	err = sess.Run(command)
	res := result{stdout: out.Bytes(), stderr: errOut.Bytes()}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		res.status = ee.ExitStatus()
		err = nil
	}
	return res, err
}

func mustRun(t *testing.T, f *Fleet, h *Host, script string) result {
	t.Helper()
	res, err := runOn(f, h, "sh -s", script)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	return res
}

func startFleet(t *testing.T, opts Options) *Fleet {
	t.Helper()
	if opts.N == 0 {
		opts.N = 20
	}
	if opts.RebootDelay == 0 {
		opts.RebootDelay = 200 * time.Millisecond
	}
	opts.Seed = t.Name()
	f, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func scan(t *testing.T, f *Fleet, h *Host) hostfacts.Facts {
	t.Helper()
	script, err := hostfacts.ScanScript("/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, f, h, script)
	facts, err := hostfacts.Parse(res.stdout)
	if err != nil || res.status != 0 {
		t.Fatalf("%s: scan exit %d: %v", h.Name, res.status, err)
	}
	for _, p := range facts.Problems {
		if p.Section != "component rails /srv/app" { // a missing app directory is reported, as on a real host
			t.Errorf("%s: scan problem %s", h.Name, p)
		}
	}
	return facts
}

func TestScansParse(t *testing.T) {
	f := startFleet(t, Options{})
	images := map[string]bool{}
	for _, h := range f.Hosts() {
		facts := scan(t, f, h)
		images[h.Image()] = true
		if facts.OS.ID != "debian" || facts.OS.VersionID != "12" || len(facts.Packages) < 700 || facts.BootID != h.BootID() || facts.Hostname != h.Name {
			t.Errorf("%s: %+v", h.Name, facts.OS)
		}
		var docker bool
		for _, c := range facts.Components {
			docker = docker || c.Name == "docker" && c.Present
		}
		if docker != (h.Image() == "debian12-docker") {
			t.Errorf("%s (%s): docker component %t", h.Name, h.Image(), docker)
		}
	}
	if len(images) != 4 {
		t.Errorf("images %v", images)
	}
}

func TestInstallChangesNextScanAndRebootClears(t *testing.T) {
	f := startFleet(t, Options{})
	h := f.Hosts()[1] // debian12-lagging
	script, err := hostops.InstallScript([]hostops.Target{{Name: "openssl"}, {Name: "libssl3"}, {Name: "libc6", Version: "2.36-9+deb12u15"}, {Name: "pf-absent"}}, hostops.Apt{LockTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, f, h, script)
	ir, err := hostops.ParseInstall(res.stdout)
	if err != nil || res.status != 0 || !ir.Complete || len(ir.Problems) > 0 {
		t.Fatalf("install: exit %d, %v, %+v\n%s", res.status, err, ir.Report, res.stdout)
	}
	if ir.Before != nil || ir.AfterVersion("openssl") != "3.0.19-1~deb12u3" || ir.AfterVersion("pf-absent") != "" {
		t.Errorf("before %+v after %+v", ir.Before, ir.After)
	}
	if !ir.RebootRequired || !slices.Equal(ir.RebootPackages, []string{"libc6"}) || len(ir.Apt.Changes) != 3 {
		t.Errorf("reboot %t %q, changes %+v", ir.RebootRequired, ir.RebootPackages, ir.Apt.Changes)
	}
	facts := scan(t, f, h)
	for _, p := range facts.Packages {
		if p.Name == "openssl" && p.Version != "3.0.19-1~deb12u3" || p.Name == "libc6" && p.Version != "2.36-9+deb12u15" {
			t.Errorf("scan after install: %+v", p)
		}
	}
	if !facts.RebootRequired || !slices.Equal(facts.RebootPackages, []string{"libc6"}) {
		t.Errorf("scan: reboot required %t %q", facts.RebootRequired, facts.RebootPackages)
	}
	// Other hosts of the same image are untouched (copy-on-write).
	if v := f.Hosts()[5].PackageVersion("openssl"); v != "3.0.17-1~deb12u2" {
		t.Errorf("another lagging host has openssl %s", v)
	}

	stateScript, err := hostops.StateScript()
	if err != nil {
		t.Fatal(err)
	}
	state := func() hostops.State {
		t.Helper()
		st, err := hostops.ParseState(mustRun(t, f, h, stateScript).stdout)
		if err != nil || !st.Complete || len(st.Problems) > 0 || !st.RebootScheduledKnown {
			t.Fatalf("state: %v %+v", err, st)
		}
		return st
	}
	if st := state(); st.RebootScheduled {
		t.Errorf("reboot marker before op reboot")
	}
	before := h.BootID()
	res = mustRun(t, f, h, hostops.RebootScript(time.Second))
	rr, err := hostops.ParseReboot(res.stdout)
	if err != nil || !rr.Scheduled || rr.BootID != before || !rr.Complete {
		t.Fatalf("reboot: %v %+v", err, rr)
	}
	if st := state(); !st.RebootScheduled || st.BootID != before {
		t.Errorf("before the reboot happens: marker %t, boot id %s (was %s)", st.RebootScheduled, st.BootID, before)
	}
	waitFor(t, func() bool { return !h.Up() })
	waitFor(t, h.Up)
	facts = scan(t, f, h)
	if facts.BootID == before || facts.RebootRequired {
		t.Errorf("after reboot: boot id %s (was %s), reboot required %t", facts.BootID, before, facts.RebootRequired)
	}
	if st := state(); st.RebootScheduled {
		t.Errorf("reboot marker survived the reboot")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEveryOpParsesCleanly runs every hostops script against a simulated
// host and parses the output with the real parsers.
func TestEveryOpParsesCleanly(t *testing.T) {
	f := startFleet(t, Options{N: 4})
	h := f.Hosts()[2] // debian12-docker
	must := func(s string, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	check := func(name string, r hostops.Report, err error) {
		t.Helper()
		if err != nil || !r.Complete || len(r.Problems) > 0 {
			t.Errorf("%s: %v, %+v", name, err, r)
		}
	}
	st, err := hostops.ParseState(mustRun(t, f, h, must(hostops.StateScript("docker-ce", "openssl", "pf-absent"))).stdout)
	check("state", st.Report, err)
	if p, _ := st.Package("docker-ce"); p.Version != "5:27.5.1-1~debian.12~bookworm" || len(st.Disks) != 2 {
		t.Errorf("state: %+v", st)
	}
	rp, err := hostops.ParseRepair(mustRun(t, f, h, hostops.RepairScript()).stdout)
	check("repair", rp.Report, err)
	fu, err := hostops.ParseFullUpgrade(mustRun(t, f, h, hostops.FullUpgradeScript(hostops.Apt{LockTimeout: time.Second, Update: true})).stdout)
	check("full-upgrade", fu.Report, err)
	if !fu.Update.Ran || fu.Update.Status != 0 || len(fu.Apt.Changes) == 0 || !fu.RebootRequired {
		t.Errorf("full-upgrade: %+v", fu)
	}
	un, err := hostops.ParseUnattended(mustRun(t, f, h, hostops.UnattendedScript(true, time.Second)).stdout)
	check("unattended", un.Report, err)
	if err := un.Settings.Check(true); err != nil || !un.Install.Ran || !un.Package.Installed || len(un.Changed) != 2 {
		t.Errorf("unattended: %v %+v", err, un)
	}
	un, err = hostops.ParseUnattended(mustRun(t, f, h, hostops.UnattendedScript(true, time.Second)).stdout)
	check("unattended again", un.Report, err)
	if un.Install.Ran || len(un.Changed) != 0 {
		t.Errorf("unattended again: %+v", un)
	}
	hr, err := hostops.ParseHealth(mustRun(t, f, h, must(hostops.HealthScript("curl -fsS http://127.0.0.1/healthz", time.Second))).stdout)
	check("health", hr.Report, err)
	if !hr.Healthy() {
		t.Errorf("health: %+v", hr)
	}
	dr, err := hostops.ParseDocker(mustRun(t, f, h, must(hostops.DockerScript([]hostops.Target{{Name: "docker-ce", Version: "5:28.3.0-1~debian.12~bookworm"}}, "2.8.1", hostops.Apt{LockTimeout: time.Second, Update: true}))).stdout)
	check("docker", dr.Report, err)
	if !dr.Update.Ran || dr.After[0].Version != "5:28.3.0-1~debian.12~bookworm" {
		t.Errorf("docker: %+v", dr)
	}
	if facts := scan(t, f, h); !slices.ContainsFunc(facts.Components, func(c hostfacts.Component) bool { return c.Name == "docker" && c.Version == "28.3.0" }) {
		t.Errorf("scan after docker op: %+v", facts.Components)
	}
	res, err := runOn(f, h, "sudo -n sh -s", must(hostops.StateScript()))
	if err != nil || res.status != 0 {
		t.Errorf("sudo -n sh -s: %v %+v", err, res)
	}
}

func TestUnknownCommands(t *testing.T) {
	f := startFleet(t, Options{N: 1})
	h := f.Hosts()[0]
	for _, tc := range []struct{ command, stdin string }{
		{"uname -a", ""},
		{"sh -s", "apt-get install -y openssl\n"},
		{"sh -s", "# patchfleet:op format-disk v1\n"},
		{"exec setsid -w sh -c 'exec sh -s'", "true\n"},
		{"sh -c 'kill -s KILL -- -1'", ""},
	} {
		res, err := runOn(f, h, tc.command, tc.stdin)
		if err != nil || res.status != 127 || len(res.stderr) == 0 {
			t.Errorf("%q %q: %v, exit %d, stderr %q", tc.command, tc.stdin, err, res.status, res.stderr)
		}
	}
	// The wrapper's script must start with the line that prints the group id.
	tok := "0123456789abcdef"
	res, err := runOn(f, h, wrapperLine(false, tok), "{\ntrue\n} </dev/null\n")
	if err != nil || res.status != 2 || len(res.stdout) != 0 || f.Started() != 0 {
		t.Errorf("wrapper without its first line: %v, exit %d, stdout %q, %d started", err, res.status, res.stdout, f.Started())
	}
}

func TestFaults(t *testing.T) {
	f := startFleet(t, Options{N: 8, Latency: 20 * time.Millisecond, Faults: Faults{SlowFactor: 5, LockHeldFor: time.Hour}})
	hosts := f.Hosts()
	stateScript, _ := hostops.StateScript("openssl")
	install, _ := hostops.InstallScript([]hostops.Target{{Name: "openssl"}}, hostops.Apt{LockTimeout: time.Second})

	t.Run("drop", func(t *testing.T) {
		h := hosts[0]
		h.SetFaults(FaultDrop)
		_, err := runOn(f, h, "sh -s", stateScript)
		var ee *ssh.ExitMissingError
		if err == nil || errors.As(err, &ee) == false && !strings.Contains(err.Error(), "EOF") {
			t.Errorf("dropped command: %v", err)
		}
	})
	t.Run("apt-fail", func(t *testing.T) {
		h := hosts[1]
		h.SetFaults(FaultAptFail)
		res := mustRun(t, f, h, install)
		ir, _ := hostops.ParseInstall(res.stdout)
		if res.status != 100 || !slices.Equal(ir.Apt.Failed, []string{"openssl"}) || !strings.Contains(ir.Apt.Stderr, "returned an error code (1)") {
			t.Errorf("apt failure: exit %d, %+v", res.status, ir.Apt)
		}
		st, _ := hostops.ParseState(mustRun(t, f, h, stateScript).stdout)
		if !st.DpkgInterrupted {
			t.Errorf("state after the failure: %+v", st)
		}
		rr, _ := hostops.ParseRepair(mustRun(t, f, h, hostops.RepairScript()).stdout)
		st, _ = hostops.ParseState(mustRun(t, f, h, stateScript).stdout)
		if rr.Interrupted || st.DpkgInterrupted {
			t.Errorf("after repair: %+v %+v", rr, st)
		}
	})
	t.Run("lock-held", func(t *testing.T) {
		h := hosts[2]
		h.HoldLock(time.Hour)
		start := time.Now()
		res := mustRun(t, f, h, install)
		ir, _ := hostops.ParseInstall(res.stdout)
		if res.status != 100 || !ir.Apt.LockTimeout || ir.Apt.LockHolder != "process 4242 (unattended-upgr)" || time.Since(start) < time.Second {
			t.Errorf("held lock: exit %d, %+v", res.status, ir.Apt)
		}
		h.HoldLock(300 * time.Millisecond)
		wait, _ := hostops.InstallScript([]hostops.Target{{Name: "openssl"}}, hostops.Apt{LockTimeout: time.Minute})
		res = mustRun(t, f, h, wait)
		ir, _ = hostops.ParseInstall(res.stdout)
		if res.status != 0 || !ir.Apt.LockWaited || ir.AfterVersion("openssl") != "3.0.19-1~deb12u3" {
			t.Errorf("lock released in time: exit %d, %+v", res.status, ir.Apt)
		}
	})
	t.Run("reboot-hang", func(t *testing.T) {
		h := hosts[3]
		h.SetFaults(FaultRebootHang)
		mustRun(t, f, h, hostops.RebootScript(time.Second))
		waitFor(t, func() bool { return !h.Up() })
		time.Sleep(3 * f.opts.RebootDelay) // stays off well past the reboot delay: what is tested
		if h.Up() {
			t.Error("host with a hanging reboot came back")
		}
		if _, err := runOn(f, h, "sh -s", stateScript); err == nil {
			t.Error("reached a host that is off")
		}
	})
	t.Run("slow", func(t *testing.T) {
		h := hosts[4]
		h.SetFaults(FaultSlow)
		start := time.Now()
		mustRun(t, f, h, stateScript)
		if d := time.Since(start); d < 5*20*time.Millisecond {
			t.Errorf("slow host answered in %v", d)
		}
	})
	t.Run("health-fail", func(t *testing.T) {
		h := hosts[5]
		h.SetFaults(FaultHealthFail)
		script, _ := hostops.HealthScript("true", time.Second)
		res := mustRun(t, f, h, script)
		if hr, _ := hostops.ParseHealth(res.stdout); res.status != 1 || hr.Healthy() {
			t.Errorf("health: exit %d %+v", res.status, hr)
		}
	})
}

func TestHostKeyChange(t *testing.T) {
	f := startFleet(t, Options{N: 4, Faults: Faults{Percent: map[Fault]float64{FaultHostKeyChange: 100}}})
	for _, h := range f.Hosts() {
		if _, err := runOn(f, h, "sh -s", "true"); err == nil || !strings.Contains(err.Error(), "host key mismatch") {
			t.Errorf("%s: %v, want a host key mismatch", h.Name, err)
		}
	}
}

func TestFaultPercentages(t *testing.T) {
	var n int
	for i := range 10000 {
		if assignFaults("seed", i, map[Fault]float64{FaultAptFail: 5})&FaultAptFail != 0 {
			n++
		}
	}
	if n < 400 || n > 600 {
		t.Errorf("5%% of 10000 hosts: got %d", n)
	}
}

func TestParseFaultPercents(t *testing.T) {
	got, err := ParseFaultPercents("drop=1, apt-fail=5,host-key-change=0.5")
	if err != nil || got[FaultDrop] != 1 || got[FaultAptFail] != 5 || got[FaultHostKeyChange] != 0.5 || len(got) != 3 {
		t.Errorf("%v %v", got, err)
	}
	for _, bad := range []string{"drop", "drop=101", "melt=1", "drop=x"} {
		if _, err := ParseFaultPercents(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestKnownHostsPinsEveryHost(t *testing.T) {
	f := startFleet(t, Options{N: 3})
	dir := t.TempDir()
	path := dir + "/known_hosts"
	if err := os.WriteFile(path, f.KnownHosts(), 0o644); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range f.Hosts() {
		cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(f.ClientSigner())}, HostKeyCallback: cb}
		c, err := ssh.Dial("tcp", h.Addr(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		c.Close()
	}
}

// The sshx pool's own command lines: the wrapper with its pid line, with and
// without sudo, and the guarded kill on cancellation.
func TestSshxWrapperAndKill(t *testing.T) {
	f := startFleet(t, Options{N: 1, AptLatency: time.Minute})
	h := f.Hosts()[0]
	pool := sshx.NewPool(sshx.Config{Signers: []ssh.Signer{f.ClientSigner()}, ConnectTimeout: 5 * time.Second})
	defer pool.Close()
	target := sshx.Target{Name: h.Name, Address: "127.0.0.1", Port: h.Port(), HostKey: h.HostKey()}
	ctx := context.Background()

	for _, sudo := range []bool{false, true} {
		target.Sudo = sudo
		script, _ := hostops.StateScript("openssl")
		res, err := pool.Run(ctx, target, sshx.Command{Script: script})
		if err != nil || res.ExitStatus != 0 {
			t.Fatalf("sudo %t: state: %v exit %d %s", sudo, err, res.ExitStatus, res.Stderr)
		}
		st, err := hostops.ParseState(res.Stdout)
		if err != nil || !st.Complete || len(st.Problems) > 0 || st.BootID != h.BootID() {
			t.Fatalf("sudo %t: state parsed %+v, %v (the pid line must not be in stdout)", sudo, st, err)
		}
		res, err = pool.Run(ctx, target, sshx.Command{Script: "apt-get install -y openssl"})
		if err != nil || res.ExitStatus != 127 {
			t.Errorf("sudo %t: unknown script: %v exit %d, want 127", sudo, err, res.ExitStatus)
		}
	}

	// Cancelled while apt "runs": sshx kills the process group, the simulated
	// command ends at once.
	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := pool.Run(ctx2, target, sshx.Command{Script: hostops.FullUpgradeScript(hostops.Apt{})})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled full-upgrade: %v, want the deadline", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Running() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d commands still running after the kill", f.Running())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("cancelled command took %s", d)
	}
	if f.Started() != 5 {
		t.Errorf("%d wrapped commands started, want 5", f.Started())
	}
}

func TestCommandLines(t *testing.T) {
	tok := "0123456789abcdef01234567"
	for _, tc := range []struct {
		line string
		want command
	}{
		{"sh -s", command{kind: cmdScript}},
		{"sudo -n sh -s --", command{kind: cmdScript}},
		{wrapperLine(false, tok), command{kind: cmdWrapped, token: tok}},
		{wrapperLine(true, tok), command{kind: cmdWrapped, token: tok}},
		{killLine(false, 1234, tok), command{kind: cmdKill, pid: 1234, token: tok}},
		{killLine(true, 1234, tok), command{kind: cmdKill, pid: 1234, token: tok}},
		{"", command{}},
		{"sh", command{}},
		{"reboot", command{}},
		{wrapperLine(false, tok) + "; reboot", command{}},
		{wrapperLine(false, tok) + " x", command{}},
		{strings.Replace(wrapperLine(false, tok), "exec ", "", 1), command{}},
		{"exec sh -s patchfleet-run:xyz", command{}},
		{"exec setsid -w sh -c 'exec sh -s'", command{}},
		{strings.Replace(killLine(false, 1234, tok), "-qx", "-q", 1), command{}},
		{strings.Replace(killLine(false, 1234, tok), "KILL", "TERM", 1), command{}},
	} {
		if got := parseCommand(tc.line); got != tc.want {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

// The security-upgrade op takes the security updates and leaves the others
// (docker-ce from Docker's repository, base-files from a point release).
func TestSecurityUpgradeTakesOnlySecurityUpdates(t *testing.T) {
	f := startFleet(t, Options{N: 4})
	h := f.Hosts()[2] // debian12-docker
	h.Hold("libc6-dbg")
	res := mustRun(t, f, h, hostops.SecurityUpgradeScript(hostops.Apt{LockTimeout: time.Second}))
	r, err := hostops.ParseSecurityUpgrade(res.stdout)
	if err != nil || !r.Complete || len(r.Problems) > 0 || res.status != 0 {
		t.Fatalf("security-upgrade: exit %d, %v, %+v\n%s", res.status, err, r, res.stdout)
	}
	var got []string
	for _, u := range r.Selected {
		got = append(got, u.Name+" "+u.To)
		if r.BeforeVersion(u.Name) != u.From || r.AfterVersion(u.Name) != u.To {
			t.Errorf("%s: before %s after %s, want %s -> %s", u.Name, r.BeforeVersion(u.Name), r.AfterVersion(u.Name), u.From, u.To)
		}
	}
	want := []string{"openssl 3.0.19-1~deb12u3", "libssl3 3.0.19-1~deb12u3", "libssl-dev 3.0.19-1~deb12u3", "libc6 2.36-9+deb12u15", "libc6-dev 2.36-9+deb12u15"}
	if !slices.Equal(got, want) {
		t.Errorf("selected %q, want %q", got, want)
	}
	for name, v := range map[string]string{"docker-ce": "5:27.5.1-1~debian.12~bookworm", "base-files": "12.4+deb12u11", "libc6-dbg": "2.36-9+deb12u14"} {
		if got := h.PackageVersion(name); got != v {
			t.Errorf("%s is %s, want %s left alone", name, got, v)
		}
	}
	if !r.RebootRequired || len(r.Apt.Changes) != 5 {
		t.Errorf("reboot-required %t, changes %+v", r.RebootRequired, r.Apt.Changes)
	}

	res = mustRun(t, f, h, hostops.SecurityUpgradeScript(hostops.Apt{LockTimeout: time.Second}))
	if r, err = hostops.ParseSecurityUpgrade(res.stdout); err != nil || len(r.Selected) != 0 || !r.Apt.Ran || r.Apt.Status != 0 || len(r.Problems) > 0 {
		t.Errorf("second security-upgrade: %v %+v", err, r)
	}
}

// A simulated host offers the key exchanges of Debian 12's OpenSSH: a client that only speaks
// ML-KEM (which OpenSSH 9.2 lacks) is refused, one that speaks curve25519 gets in.
func TestKeyExchangesAreDebian12s(t *testing.T) {
	f := startFleet(t, Options{N: 1, Seed: "kex"})
	h := f.Hosts()[0]
	dial := func(kex string) error {
		cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(f.ClientSigner())},
			HostKeyCallback: ssh.FixedHostKey(h.HostKey()), Timeout: 10 * time.Second,
			Config: ssh.Config{KeyExchanges: []string{kex}}}
		c, err := ssh.Dial("tcp", h.Addr(), cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(ssh.KeyExchangeMLKEM768X25519); err == nil {
		t.Error("a simulated Debian 12 host negotiated ML-KEM")
	}
	if err := dial(ssh.KeyExchangeCurve25519); err != nil {
		t.Errorf("curve25519-sha256: %v", err)
	}
}
