package executor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

// provider is testdata/provider.sh with a pool of new hosts.
type provider struct {
	dir string
	t   *testing.T
}

func newProvider(t *testing.T, e *env) *provider {
	t.Helper()
	var pool []poolHost
	for _, h := range e.fleet.Hosts()[1:] {
		pool = append(pool, poolHost{h.Name, h.Port(), h.HostKey()})
	}
	return providerOf(t, pool...)
}

// poolHost is a host the provider hands out, on 127.0.0.1.
type poolHost struct {
	name string
	port int
	key  ssh.PublicKey
}

// providerOf is testdata/provider.sh handing out pool in order.
func providerOf(t *testing.T, pool ...poolHost) *provider {
	t.Helper()
	p := &provider{dir: t.TempDir(), t: t}
	var lines strings.Builder
	for _, h := range pool {
		b, _ := json.Marshal(map[string]any{"host_id": h.name, "name": h.name, "address": "127.0.0.1", "port": h.port,
			"host_key": strings.TrimSpace(authorizedKey(h.key))})
		lines.Write(append(b, '\n'))
	}
	p.write("pool", lines.String())
	return p
}

func (p *provider) write(name, content string) {
	if err := os.WriteFile(filepath.Join(p.dir, name), []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *provider) remove(name string) {
	if err := os.Remove(filepath.Join(p.dir, name)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *provider) calls() []string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "calls"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (p *provider) configure(c *executor.Config) {
	script, err := filepath.Abs("testdata/provider.sh")
	if err != nil {
		p.t.Fatal(err)
	}
	hook := func(name string) []string { return []string{"sh", script, p.dir, name} }
	c.ProviderProvision, c.ProviderSwitch, c.ProviderRetire = hook("provision"), hook("switch"), hook("retire")
	c.ProviderTimeout = 30 * time.Second
}

func replaceJob(r *events.UpgradeRequested) {
	r.Strategy, r.Kind, r.Packages, r.HealthCheck = events.StrategyReplace, events.KindFull, nil, "true"
}

// hostEvents returns the events of type typ on HOSTS about host.
func (e *env) hostEvents(typ, host string) []events.Envelope {
	var out []events.Envelope
	for _, env := range e.bus.Envelopes(e.t, events.StreamHosts) {
		var d struct {
			HostID string `json:"host_id"`
		}
		if env.Type == typ && json.Unmarshal(env.Data, &d) == nil && d.HostID == host {
			out = append(out, env)
		}
	}
	return out
}

func TestReplaceProvisionsUpgradesSwitchesAndRetiresTheOldHost(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	p := newProvider(t, e)
	e.run("a", p.configure)
	req := e.job(0, replaceJob)
	c := e.mustComplete(req.JobID, 60*time.Second)
	want := []string{"provision " + old.Name, "switch " + old.Name + " " + nw.Name, "retire " + old.Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q", got, want)
	}
	if nw.PackageVersion("openssl") != fixed || old.PackageVersion("openssl") == fixed {
		t.Errorf("openssl: new host %s, old host %s: want only the new host upgraded", nw.PackageVersion("openssl"), old.PackageVersion("openssl"))
	}
	if len(c.Packages) == 0 || c.Kind != events.KindFull {
		t.Errorf("completed without the new host's changes or the job's kind: %+v", c)
	}
	reg := e.hostEvents("HostRegistered", nw.Name)
	if len(reg) != 1 {
		t.Fatalf("HostRegistered for the new host %d times, want 1", len(reg))
	}
	var r events.HostRegistered
	if err := events.DecodeData(reg[0], &r); err != nil {
		t.Fatal(err)
	}
	if !r.New || r.Replaces != old.Name || r.Fleet != "sim" || r.AppPath != "/srv/app" || r.SSH.Port != nw.Port() || strings.TrimSpace(r.SSH.HostKey) != strings.TrimSpace(authorizedKey(nw.HostKey())) {
		t.Errorf("HostRegistered %+v", r)
	}
	if n := len(e.hostEvents("HostDecommissioned", old.Name)); n != 1 {
		t.Errorf("HostDecommissioned for the old host %d times, want 1", n)
	}
	if log := e.jobLog(req.JobID); !strings.Contains(log, "hook provision: {") || !strings.Contains(log, "==> patchfleet:op full-upgrade") {
		t.Errorf("job log lacks the hook's output or the new host's upgrade:\n%s", log)
	}
}

func TestReplaceWithAnUnhealthyNewHostKeepsTheOldOne(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	nw.SetFaults(fleetsim.FaultHealthFail)
	p := newProvider(t, e)
	e.run("a", p.configure)
	req := e.job(0, replaceJob)
	f := e.mustFail(req.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "stage health") {
		t.Errorf("message %q does not name the stage", f.Message)
	}
	want := []string{"provision " + old.Name, "retire " + nw.Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q (no switch, the new host retired)", got, want)
	}
	if len(e.hostEvents("HostDecommissioned", nw.Name)) != 1 || len(e.hostEvents("HostDecommissioned", old.Name)) != 0 {
		t.Error("want the new host decommissioned and the old one kept")
	}
}

func TestReplaceWhoseSwitchFailsRetiresTheNewHost(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	p := newProvider(t, e)
	p.write("fail-switch", "")
	e.run("a", p.configure)
	req := e.job(0, replaceJob)
	f := e.mustFail(req.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "stage switch") {
		t.Errorf("message %q does not name the stage", f.Message)
	}
	want := []string{"provision " + old.Name, "switch " + old.Name + " " + nw.Name, "retire " + nw.Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q", got, want)
	}
}

func TestReplaceStoppedMidSwitchResumesWithoutProvisioningAgain(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 3})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	p := newProvider(t, e)
	p.write("block-switch", "")
	stopA := e.run("a", p.configure)
	req := e.job(0, replaceJob)
	waitFor(t, func() bool { return strings.Contains(strings.Join(p.calls(), "|"), "switch") })
	stopA()
	p.remove("block-switch")
	e.run("b", p.configure)
	e.mustComplete(req.JobID, 90*time.Second)
	calls := strings.Join(p.calls(), "|")
	if n := strings.Count(calls, "provision"); n != 1 {
		t.Errorf("provisioned %d times, want once: %s", n, calls)
	}
	if !strings.HasSuffix(calls, "switch "+old.Name+" "+nw.Name+"|retire "+old.Name) {
		t.Errorf("hooks %s: want the switch run again, then the old host retired", calls)
	}
	if n := len(e.hostEvents("HostRegistered", nw.Name)); n != 1 {
		t.Errorf("HostRegistered %d times, want 1", n)
	}
}

// rebootingReplace is a replace job whose new host is rebooted if its upgrade asks for one
// (fleetsim's full upgrade does: libc6).
func rebootingReplace(r *events.UpgradeRequested) {
	replaceJob(r)
	r.Reboot = events.RebootIfRequired
}

func TestReplaceRebootsTheNewHostBeforeItTakesTraffic(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	boot := nw.BootID()
	p := newProvider(t, e)
	e.run("a", p.configure)
	req := e.job(0, rebootingReplace)
	c := e.mustComplete(req.JobID, 60*time.Second)
	if nw.Boots() != 2 || old.Boots() != 1 {
		t.Errorf("new host booted %d times, old host %d: want the new host rebooted once, the old one never", nw.Boots(), old.Boots())
	}
	if c.RebootPending || c.Rebooted {
		t.Errorf("completed %+v: the serving host neither rebooted nor waits for a reboot", c)
	}
	rb := e.hostEvents("HostRebooted", nw.Name)
	if len(rb) != 1 {
		t.Fatalf("HostRebooted for the new host %d times, want 1", len(rb))
	}
	var ev events.HostRebooted
	if err := events.DecodeData(rb[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.JobID != req.JobID || ev.OldBootID != boot || ev.NewBootID != nw.BootID() || ev.Downtime <= 0 {
		t.Errorf("HostRebooted %+v: want job %s, %s -> %s, a downtime", ev, req.JobID, boot, nw.BootID())
	}
	log := e.jobLog(req.JobID)
	back, health, sw := strings.Index(log, "the new host is back with boot id"), strings.Index(log, "replace stage health"), strings.Index(log, "replace stage switch")
	if back < 0 || health < back || sw < health {
		t.Errorf("want the reboot, then the health check, then the switch; job log:\n%s", log)
	}
	want := []string{"provision " + old.Name, "switch " + old.Name + " " + nw.Name, "retire " + old.Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q", got, want)
	}
}

func TestReplaceUnderRebootNeverLeavesTheNewHostsRebootPending(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	nw := e.fleet.Hosts()[1]
	p := newProvider(t, e)
	e.run("a", p.configure)
	req := e.job(0, replaceJob) // reboot never
	e.mustComplete(req.JobID, 60*time.Second)
	if nw.Boots() != 1 {
		t.Errorf("new host booted %d times under reboot never, want 1", nw.Boots())
	}
	rr := e.hostEvents("RebootRequired", nw.Name)
	if len(rr) != 1 {
		t.Fatalf("RebootRequired for the new host %d times, want 1", len(rr))
	}
	var ev events.RebootRequired
	if err := events.DecodeData(rr[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.JobID != req.JobID || !slices.Contains(ev.Packages, "libc6") {
		t.Errorf("RebootRequired %+v: want job %s, libc6", ev, req.JobID)
	}
}

func TestReplaceWhoseNewHostDoesNotComeBackKeepsTheOldOne(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	nw.SetFaults(fleetsim.FaultRebootHang)
	p := newProvider(t, e)
	e.run("a", func(c *executor.Config) { p.configure(c); c.RebootTimeout = 2 * time.Second })
	req := e.job(0, rebootingReplace)
	f := e.mustFail(req.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "stage reboot") || !strings.Contains(f.Message, "new boot id") || !strings.Contains(f.Message, old.Name+" keeps serving") {
		t.Errorf("message %q: want the reboot stage, the missing boot id and the old host serving", f.Message)
	}
	want := []string{"provision " + old.Name, "retire " + nw.Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q (no switch, the new host retired)", got, want)
	}
	if len(e.hostEvents("HostRebooted", nw.Name)) != 0 || len(e.hostEvents("HostDecommissioned", old.Name)) != 0 {
		t.Error("want no reboot announced and the old host kept")
	}
}

// The job records the new host's reboot before it sends op reboot. An executor stopped in
// between leaves the job waiting for a reboot the host never heard of: the executor that
// resumes it sees the old boot id and no reboot marker, and asks for the reboot once.
func TestReplaceStoppedAfterRecordingTheNewHostsRebootRebootsItOnce(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	nw := e.fleet.Hosts()[1]
	nw.SetFaults(fleetsim.FaultRebootLost) // executor a's op reboot never reaches the new host
	p := newProvider(t, e)
	stopA := e.run("a", p.configure)
	req := e.job(0, rebootingReplace)
	waitFor(t, func() bool { return strings.Contains(e.jobLog(req.JobID), "waiting for the new host to come back") })
	stopA()
	if nw.Boots() != 1 {
		t.Fatalf("new host booted %d times before executor a stopped; the test lost no reboot", nw.Boots())
	}
	nw.SetFaults(0)
	e.run("b", p.configure)
	e.mustComplete(req.JobID, 90*time.Second)
	if nw.Boots() != 2 {
		t.Errorf("new host booted %d times, want 2 (one reboot)", nw.Boots())
	}
	log := e.jobLog(req.JobID)
	if !strings.Contains(log, "never reached it") || strings.Count(log, "==> patchfleet:op reboot") != 1 {
		t.Errorf("want the lost reboot noticed and op reboot answered once; job log:\n%s", log)
	}
	if n := len(e.hostEvents("HostRebooted", nw.Name)); n != 1 {
		t.Errorf("HostRebooted for the new host %d times, want 1", n)
	}
}

// A new host that presents another key than the provider printed is not the host to switch
// to: it is retired at once, not tried again as if it were unreachable.
func TestReplaceWhoseNewHostPresentsAnotherKeyKeepsTheOldOne(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	p := providerOf(t, poolHost{nw.Name, nw.Port(), old.HostKey()}) // the key printed is not the one it presents
	e.run("a", p.configure)
	req := e.job(0, replaceJob)
	f := e.mustFail(req.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "stage upgrade") || !strings.Contains(f.Message, "host key") {
		t.Errorf("message %q: want the upgrade stage and the host key", f.Message)
	}
	if n := strings.Count(e.jobLog(req.JobID), "replace stage upgrade"); n != 1 {
		t.Errorf("stage upgrade ran %d times, want once", n)
	}
	want := []string{"provision " + old.Name, "retire " + nw.Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q", got, want)
	}
}

// A security job with strategy replace (what a replace fleet's rollout sends) names its fixes:
// the new host must have them after its full upgrade to take the old one's place.
func TestReplaceSwitchesOnlyToANewHostThatHasTheFix(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 3})
	hs := e.fleet.Hosts()
	p := newProvider(t, e)
	e.run("a", p.configure)
	security := func(min string) func(*events.UpgradeRequested) {
		return func(r *events.UpgradeRequested) {
			r.Strategy, r.HealthCheck = events.StrategyReplace, "true" // Kind security with openssl and libssl3
			for i := range r.Packages {
				r.Packages[i].MinVersion = min
			}
		}
	}
	fixed := e.job(0, security("3.0.19-1~deb12u3"))
	e.mustComplete(fixed.JobID, 60*time.Second)
	lagging := e.job(1, security("3.0.99-1")) // newer than the new host's repositories have
	f := e.mustFail(lagging.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "stage upgrade") || !strings.Contains(f.Message, "openssl 3.0.19-1~deb12u3 < 3.0.99-1") ||
		!strings.Contains(f.Message, hs[1].Name+" keeps serving") {
		t.Errorf("message %q: want the upgrade stage, the missing fix and the old host serving", f.Message)
	}
	want := []string{"provision " + hs[0].Name, "switch " + hs[0].Name + " " + hs[1].Name, "retire " + hs[0].Name,
		"provision " + hs[1].Name, "retire " + hs[2].Name}
	if got := p.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks %q, want %q (the second new host retired, no switch)", got, want)
	}
}

// hooksFile writes a PATCHFLEET_EXECUTOR_PROVIDERS_FILE giving each fleet the hooks of its
// provider.
func hooksFile(t *testing.T, fleets map[string]*provider) string {
	t.Helper()
	script, err := filepath.Abs("testdata/provider.sh")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("fleets:\n")
	for name, p := range fleets {
		fmt.Fprintf(&b, "  %s:\n", name)
		for _, hook := range []string{"provision", "switch", "retire"} {
			fmt.Fprintf(&b, "    %s: sh %s %s %s\n", hook, script, p.dir, hook)
		}
	}
	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReplaceRunsTheHooksOfTheOldHostsFleet(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	old, nw := e.fleet.Hosts()[0], e.fleet.Hosts()[1]
	def, sim := newProvider(t, e), newProvider(t, e)
	file := hooksFile(t, map[string]*provider{"sim": sim, "other": def})
	e.run("a", func(c *executor.Config) { def.configure(c); c.ProvidersFile = file })
	req := e.job(0, replaceJob)
	e.mustComplete(req.JobID, 60*time.Second)
	want := []string{"provision " + old.Name, "switch " + old.Name + " " + nw.Name, "retire " + old.Name}
	if got := sim.calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the sim fleet's hooks ran %q, want %q", got, want)
	}
	if got := def.calls(); len(got) != 1 || got[0] != "" {
		t.Errorf("other hooks ran %q, want none", got)
	}
}

func TestReplaceInAFleetWithoutHooksFailsClearly(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	other := newProvider(t, e)
	file := hooksFile(t, map[string]*provider{"other": other})
	e.run("a", func(c *executor.Config) { c.ProvidersFile = file }) // no default hooks
	req := e.job(0, replaceJob)
	f := e.mustFail(req.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "no provider hooks for fleet sim") {
		t.Errorf("message %q does not say the fleet has no hooks", f.Message)
	}
	if got := other.calls(); len(got) != 1 || got[0] != "" {
		t.Errorf("another fleet's hooks ran %q", got)
	}
}

// securityReplace is what a replace fleet's rollout sends: a security job naming its fixes
// (openssl and libssl3), strategy replace.
func securityReplace(min string) func(*events.UpgradeRequested) {
	return func(r *events.UpgradeRequested) {
		r.Strategy, r.HealthCheck = events.StrategyReplace, "true"
		for i := range r.Packages {
			r.Packages[i].MinVersion = min
		}
	}
}

func TestReplaceOfAHostThatAlreadyHasTheFixReplacesNothing(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	p := newProvider(t, e)
	e.run("a", p.configure)
	req := e.job(0, securityReplace("3.0.17-1~deb12u2")) // what the host has
	c := e.mustComplete(req.JobID, 60*time.Second)
	if got := p.calls(); len(got) != 1 || got[0] != "" {
		t.Errorf("hooks ran %q, want none", got)
	}
	if !strings.Contains(e.jobLog(req.JobID), "nothing to replace") || len(c.Packages) != 2 || c.Packages[0].Before != c.Packages[0].After {
		t.Errorf("completed %+v: want the packages as they are, nothing replaced", c)
	}
}

// The new host is the replace job's until the job ends: a job planned for it meanwhile (from
// a scan taken before its upgrade finished) waits for it, and then finds nothing to do.
func TestAJobForTheNewHostWaitsForTheReplaceJob(t *testing.T) {
	e := newEnv(t, fleetsim.Options{N: 2})
	nw := e.fleet.Hosts()[1]
	p := newProvider(t, e)
	p.write("block-switch", "")
	e.run("a", p.configure)
	first := e.job(0, securityReplace("3.0.19-1~deb12u3"))
	waitFor(t, func() bool { return strings.Contains(strings.Join(p.calls(), "|"), "switch") })
	var holder string
	if err := e.db.QueryRow(context.Background(), "select job_id from host_leases where host_id = $1 and expires_at > now()", nw.Name).Scan(&holder); err != nil || holder != first.JobID {
		t.Fatalf("the new host's lease is held by %q (%v), want the replace job %s", holder, err, first.JobID)
	}
	second := e.job(1, func(r *events.UpgradeRequested) {
		r.Packages[0].MinVersion, r.Packages[1].MinVersion = "3.0.19-1~deb12u3", "3.0.19-1~deb12u3"
	})
	waitFor(t, func() bool {
		var n int
		return e.db.QueryRow(context.Background(), "select count(*) from jobs where job_id = $1", second.JobID).Scan(&n) == nil && n == 1
	})
	p.remove("block-switch")
	e.mustComplete(first.JobID, 60*time.Second)
	e.mustComplete(second.JobID, 60*time.Second)
	done, started := -1, -1
	for i, env := range e.bus.Envelopes(t, events.StreamUpgrades) {
		switch {
		case env.Type == "UpgradeCompleted" && strings.Contains(string(env.Data), first.JobID):
			done = i
		case env.Type == "UpgradeStarted" && strings.Contains(string(env.Data), second.JobID):
			started = i
		}
	}
	if started < done {
		t.Errorf("the job for the new host started (event %d) before the replace job completed (event %d)", started, done)
	}
	if !strings.Contains(e.jobLog(second.JobID), "already at or above its fixed version") {
		t.Errorf("the job for the new host did more than find its fixes there:\n%s", e.jobLog(second.JobID))
	}
}

// dockerFleet is n fleetsim hosts built from the Docker image (docker-ce 27.5.1; the
// simulated repository serves 28.2.2).
func dockerFleet(t *testing.T, n int) fleetsim.Options {
	t.Helper()
	images, err := fleetsim.DefaultImages()
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range images {
		if im.Name == "debian12-docker" {
			return fleetsim.Options{N: n, Images: []*fleetsim.Image{im}}
		}
	}
	t.Fatal("no debian12-docker image")
	return fleetsim.Options{}
}

// dockerReplace is a Docker job with strategy replace, pinning docker-ce and its CLI.
func dockerReplace(version string) func(*events.UpgradeRequested) {
	return func(r *events.UpgradeRequested) {
		r.Kind, r.Strategy, r.Packages, r.HealthCheck = events.KindDocker, events.StrategyReplace, nil, "true"
		r.Components = []events.Component{{Name: "docker-ce", Version: version}, {Name: "docker-ce-cli", Version: version}}
	}
}

// A Docker job by replace leaves the new host at the manifest's pins, as in place does, or
// keeps the old host.
func TestDockerByReplaceSwitchesOnlyToANewHostAtThePins(t *testing.T) {
	const latest, older = "5:28.2.2-1~debian.12~bookworm", "5:27.6.0-1~debian.12~bookworm"
	e := newEnv(t, dockerFleet(t, 3))
	hs := e.fleet.Hosts()
	p := newProvider(t, e)
	e.run("a", p.configure)
	pinned := e.job(0, dockerReplace(latest))
	e.mustComplete(pinned.JobID, 60*time.Second)
	if v := hs[1].PackageVersion("docker-ce"); v != latest {
		t.Errorf("docker-ce %s on the new host, want %s", v, latest)
	}
	if !strings.Contains(e.jobLog(pinned.JobID), "==> patchfleet:op docker") {
		t.Error("the new host had no docker op")
	}
	// The repository's Docker is newer than this pin: the full upgrade takes the new host
	// past it, and the job keeps the old host rather than switch to an unpinned Docker.
	behind := e.job(1, dockerReplace(older))
	f := e.mustFail(behind.JobID, events.FailReplace, 60*time.Second)
	if !strings.Contains(f.Message, "docker-ce is "+latest+" on the new host after its upgrades, pinned "+older) ||
		!strings.Contains(f.Message, hs[1].Name+" keeps serving") {
		t.Errorf("message %q: want docker-ce past its pin and the old host serving", f.Message)
	}
}
