package executor_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

// provider is testdata/provider.sh with fleetsim hosts 1… as its pool of new hosts.
type provider struct {
	dir string
	t   *testing.T
}

func newProvider(t *testing.T, e *env) *provider {
	t.Helper()
	p := &provider{dir: t.TempDir(), t: t}
	var pool strings.Builder
	for _, h := range e.fleet.Hosts()[1:] {
		b, _ := json.Marshal(map[string]any{"host_id": h.Name, "name": h.Name, "address": "127.0.0.1", "port": h.Port(),
			"host_key": strings.TrimSpace(authorizedKey(h.HostKey()))})
		pool.Write(append(b, '\n'))
	}
	p.write("pool", pool.String())
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
	if len(c.Packages) == 0 {
		t.Errorf("completed without the new host's changes: %+v", c)
	}
	reg := e.hostEvents("HostRegistered", nw.Name)
	if len(reg) != 1 {
		t.Fatalf("HostRegistered for the new host %d times, want 1", len(reg))
	}
	var r events.HostRegistered
	if err := events.DecodeData(reg[0], &r); err != nil {
		t.Fatal(err)
	}
	if !r.New || r.Fleet != "sim" || r.SSH.Port != nw.Port() || strings.TrimSpace(r.SSH.HostKey) != strings.TrimSpace(authorizedKey(nw.HostKey())) {
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
