package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/tools/testfleet"
)

// Tools compared, in table order.
const (
	ToolPatchfleet   = "Patchfleet"
	ToolAnsible      = "Ansible playbook (stock)"
	ToolAnsibleTuned = "Ansible ad-hoc (tuned)"
	ToolPSSH         = "parallel-ssh"
	ToolPSSHCurve    = "parallel-ssh (curve25519)"
)

// Operations compared.
const (
	OpScan    = "scan"
	OpUpgrade = "upgrade"
)

// Tools lists the compared tools in table order.
var Tools = []string{ToolPatchfleet, ToolAnsible, ToolAnsibleTuned, ToolPSSH, ToolPSSHCurve}

// The scan every external tool runs: packages with versions, OS release, reboot-required.
const shellScan = `dpkg-query -W -f='${Package} ${Version} ${Status}\n'; cat /etc/os-release; ` +
	`if [ -e /var/run/reboot-required ]; then echo reboot-required; cat /var/run/reboot-required.pkgs 2>/dev/null; fi`

// The security upgrade as a shell command (parallel-ssh).
const shellUpgrade = `export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --only-upgrade pf-demo`

const playbookScan = `- hosts: all
  gather_facts: false
  tasks:
    - name: installed packages
      package_facts:
        manager: auto
    - name: OS release
      command: cat /etc/os-release
      register: os_release
      changed_when: false
    - name: reboot required
      shell: if [ -e /var/run/reboot-required ]; then cat /var/run/reboot-required.pkgs; fi
      register: reboot_required
      changed_when: false
`

const playbookUpgrade = `- hosts: all
  gather_facts: false
  tasks:
    - name: security upgrade
      apt:
        name: pf-demo
        state: latest
        only_upgrade: true
        update_cache: true
`

// Extra packages the Ansible modules need on the hosts (package_facts and apt import the
// python3 apt bindings); installed on every host, before any tool runs, so all tools see
// the same hosts.
var AnsibleHostDebs = []string{"python3-apt", "python-apt-common", "distro-info-data"}

// PeerOptions configure the comparison.
type PeerOptions struct {
	Sizes   []int    // host counts
	Runs    int      // runs per tool, operation and size; the median is kept
	WorkDir string   // inventories, outputs
	DebDir  string   // .debs of AnsibleHostDebs
	Tools   []string // the tools to run, in table order; nil: all of Tools
	Ops     []string // the operations; nil: scan and upgrade
	Log     io.Writer
}

// Measurement is one tool doing one operation on a number of hosts: the median wall time and
// controller CPU (user+sys) of its runs.
type Measurement struct {
	Tool, Op string
	Hosts    int
	Wall     time.Duration
	CPU      time.Duration
	// Machine is the CPU every core spent during the run: the controller and the test
	// hosts, which all run on this machine.
	Machine time.Duration
	Runs    int
	Err     error
}

// sample is one run: wall time, controller CPU, and the CPU the whole machine spent
// meanwhile (controller and hosts: every test host runs on this machine).
type sample struct{ wall, cpu, machine time.Duration }

// RunPeers starts a test fleet per size and runs every tool on it.
func RunPeers(ctx context.Context, o PeerOptions) ([]Measurement, error) {
	// Processes the tools leave behind (ssh ControlPersist masters) are re-parented to us, so
	// their CPU can be collected when we reap them.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return nil, fmt.Errorf("become child subreaper: %w", e)
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	var all []Measurement
	for _, n := range o.Sizes {
		ms, err := runSize(ctx, o, n)
		if err != nil {
			return all, fmt.Errorf("peers at %d hosts: %w", n, err)
		}
		all = append(all, ms...)
	}
	return all, nil
}

const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER, prctl(2)

func runSize(ctx context.Context, o PeerOptions, n int) ([]Measurement, error) {
	fmt.Fprintf(o.Log, "peers: starting %d test hosts\n", n)
	fleet, err := testfleet.Start(ctx, testfleet.Options{NamePrefix: fmt.Sprintf("bench%d", n)}, n)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	e, err := newPeerEnv(ctx, o, fleet)
	if err != nil {
		return nil, err
	}
	tools, ops := o.Tools, o.Ops
	if tools == nil {
		tools = Tools
	}
	if ops == nil {
		ops = []string{OpScan, OpUpgrade}
	}
	var out []Measurement
	for _, op := range ops {
		samples := map[string][]sample{}
		errs := map[string]error{}
		// Round robin over the tools, so a change in machine load hits every tool alike.
		for run := range o.Runs {
			for _, tool := range tools {
				if errs[tool] != nil {
					continue
				}
				if op == OpUpgrade {
					if err := e.reset(ctx); err != nil {
						return nil, err
					}
				}
				m0, err := machineCPU()
				if err != nil {
					return nil, err
				}
				s, err := e.do(ctx, tool, op, run)
				if m1, merr := machineCPU(); err == nil && merr == nil {
					s.machine = m1 - m0
				}
				if err == nil && op == OpUpgrade {
					err = e.verifyUpgraded(ctx)
				}
				if err != nil {
					errs[tool] = err
					fmt.Fprintf(o.Log, "peers: %s %s %d hosts: %v\n", tool, op, n, err)
					continue
				}
				fmt.Fprintf(o.Log, "peers: %-26s %-7s %2d hosts: wall %6.2fs  cpu %6.2fs  machine cpu %6.2fs\n", tool, op, n, s.wall.Seconds(), s.cpu.Seconds(), s.machine.Seconds())
				samples[tool] = append(samples[tool], s)
			}
		}
		for _, tool := range tools {
			m := Measurement{Tool: tool, Op: op, Hosts: n, Err: errs[tool], Runs: len(samples[tool])}
			if m.Err == nil {
				med := median(samples[tool])
				m.Wall, m.CPU, m.Machine = med.wall, med.cpu, med.machine
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// median returns the median of each figure of the samples, taken separately.
func median(ss []sample) sample {
	mid := func(f func(sample) time.Duration) time.Duration {
		v := make([]time.Duration, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return sample{
		wall:    mid(func(s sample) time.Duration { return s.wall }),
		cpu:     mid(func(s sample) time.Duration { return s.cpu }),
		machine: mid(func(s sample) time.Duration { return s.machine }),
	}
}

// peerEnv is one fleet with the files each tool needs.
type peerEnv struct {
	o       PeerOptions
	fleet   *testfleet.Fleet
	dir     string
	pfDemo  string // the 1.0 package inside the hosts, to reset them
	targets []sshx.Target
}

func newPeerEnv(ctx context.Context, o PeerOptions, fleet *testfleet.Fleet) (*peerEnv, error) {
	hosts := fleet.Hosts()
	e := &peerEnv{o: o, fleet: fleet, dir: filepath.Join(o.WorkDir, fmt.Sprintf("hosts-%d", len(hosts)))}
	if err := os.RemoveAll(e.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	debs, err := filepath.Glob(filepath.Join(fleet.Repository().Dir(), "pool", "pf-demo_1.0_*.deb"))
	if err != nil || len(debs) != 1 {
		return nil, fmt.Errorf("pf-demo 1.0 in the fleet repository: found %v (%v)", debs, err)
	}
	e.pfDemo = "/srv/patchfleet-repo/pool/" + filepath.Base(debs[0])

	// The Ansible modules' python3 apt bindings, from the controller's Debian mirror (see
	// tools/scripts/bench-deps), installed through the fleet's repository directory.
	extra := filepath.Join(fleet.Repository().Dir(), "bench-extra")
	if err := os.MkdirAll(extra, 0o755); err != nil {
		return nil, err
	}
	for _, name := range AnsibleHostDebs {
		m, _ := filepath.Glob(filepath.Join(o.DebDir, name+"_*.deb"))
		if len(m) == 0 {
			return nil, fmt.Errorf("%s .deb not in %s (run tools/scripts/bench-deps)", name, o.DebDir)
		}
		if err := copyFile(m[0], filepath.Join(extra, filepath.Base(m[0]))); err != nil {
			return nil, err
		}
	}
	if err := e.onEach(ctx, "dpkg -i /srv/patchfleet-repo/bench-extra/*.deb >/dev/null"); err != nil {
		return nil, fmt.Errorf("install python3-apt on the hosts: %w", err)
	}

	var inv, pssh strings.Builder
	inv.WriteString("[fleet]\n")
	for _, h := range hosts {
		fmt.Fprintf(&inv, "%s ansible_host=127.0.0.1 ansible_port=%d\n", h.Name(), h.Port())
		fmt.Fprintf(&pssh, "127.0.0.1:%d root\n", h.Port())
		e.targets = append(e.targets, sshx.Target{Name: h.Name(), Address: "127.0.0.1", Port: h.Port(), User: "root", HostKey: h.HostKey()})
	}
	fmt.Fprintf(&inv, "[fleet:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\n"+
		"ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'\n",
		fleet.ClientKeyPath(), fleet.KnownHostsPath())
	files := map[string]string{"inventory.ini": inv.String(), "pssh-hosts": pssh.String(),
		"scan.yml": playbookScan, "upgrade.yml": playbookUpgrade}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// onEach runs a setup command in every host (not over SSH), eight at a time.
func (e *peerEnv) onEach(ctx context.Context, cmd string) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 8)
	for _, h := range e.fleet.Hosts() {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := h.MustRun(ctx, cmd); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reset puts every host back where an upgrade starts: pf-demo 1.0, no reboot-required, no
// apt lists.
func (e *peerEnv) reset(ctx context.Context) error {
	err := e.onEach(ctx, "dpkg -i "+e.pfDemo+" >/dev/null 2>&1 && rm -f /var/run/reboot-required /var/run/reboot-required.pkgs && "+
		"rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin && test \"$(dpkg-query -W -f='${Version}' pf-demo)\" = 1.0")
	if err != nil {
		return fmt.Errorf("reset hosts: %w", err)
	}
	return nil
}

// verifyUpgraded checks, outside the timing, that every host has pf-demo 1.1.
func (e *peerEnv) verifyUpgraded(ctx context.Context) error {
	if err := e.onEach(ctx, "test \"$(dpkg-query -W -f='${Version}' pf-demo)\" = 1.1"); err != nil {
		return fmt.Errorf("not upgraded: %w", err)
	}
	return nil
}

func (e *peerEnv) do(ctx context.Context, tool, op string, run int) (sample, error) {
	n := len(e.fleet.Hosts())
	out := filepath.Join(e.dir, fmt.Sprintf("%s-%s-%d", slug(tool), op, run))
	if err := os.MkdirAll(out, 0o755); err != nil {
		return sample{}, err
	}
	forks := strconv.Itoa(n)
	switch tool {
	case ToolPatchfleet:
		if op == OpScan {
			return inProcess(func() error { return e.patchfleetScan(ctx) })
		}
		return inProcess(func() error { return e.patchfleetUpgrade(ctx) })
	case ToolAnsible:
		env := []string{"ANSIBLE_SSH_CONTROL_PATH_DIR=" + filepath.Join(out, "cp")}
		return e.external(ctx, out, env, "ansible-playbook", "-i", e.path("inventory.ini"), "-f", forks, e.path(op+".yml"))
	case ToolAnsibleTuned:
		env := []string{"ANSIBLE_SSH_CONTROL_PATH_DIR=" + filepath.Join(out, "cp"), "ANSIBLE_PIPELINING=True",
			"ANSIBLE_SSH_ARGS=-C -o ControlMaster=auto -o ControlPersist=60s -o KexAlgorithms=curve25519-sha256",
			"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3"}
		args := []string{"all", "-i", e.path("inventory.ini"), "-f", forks}
		if op == OpScan {
			args = append(args, "-m", "shell", "-a", shellScan)
		} else {
			args = append(args, "-m", "apt", "-a", "name=pf-demo state=latest only_upgrade=yes update_cache=yes")
		}
		return e.external(ctx, out, env, "ansible", args...)
	case ToolPSSH, ToolPSSHCurve:
		args := []string{"-h", e.path("pssh-hosts"), "-p", forks, "-t", "600",
			"-o", filepath.Join(out, "stdout"), "-e", filepath.Join(out, "stderr"),
			"-O", "IdentityFile=" + e.fleet.ClientKeyPath(), "-O", "UserKnownHostsFile=" + e.fleet.KnownHostsPath(),
			"-O", "StrictHostKeyChecking=yes", "-O", "BatchMode=yes"}
		if tool == ToolPSSHCurve {
			args = append(args, "-O", "KexAlgorithms=curve25519-sha256")
		}
		cmd := shellScan
		if op == OpUpgrade {
			cmd = shellUpgrade
		}
		s, err := e.external(ctx, out, nil, "parallel-ssh", append(args, cmd)...)
		if err == nil && op == OpScan {
			err = checkPSSHScan(filepath.Join(out, "stdout"), n)
		}
		return s, err
	}
	return sample{}, fmt.Errorf("unknown tool %q", tool)
}

func (e *peerEnv) path(name string) string { return filepath.Join(e.dir, name) }

func slug(s string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s), "-")
}

// checkPSSHScan checks that every host's output holds the packages and the OS release.
func checkPSSHScan(dir string, n int) error {
	files, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(files) != n {
		return fmt.Errorf("parallel-ssh wrote %d outputs, want %d", len(files), n)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "pf-demo 1.0") || !strings.Contains(string(b), "VERSION_ID=") {
			return fmt.Errorf("parallel-ssh output of %s is incomplete", f.Name())
		}
	}
	return nil
}

// inProcess times f and the CPU this process spends meanwhile.
func inProcess(f func() error) (sample, error) {
	before, err := selfCPU()
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	err = f()
	wall := time.Since(start)
	after, cerr := selfCPU()
	if err == nil {
		err = cerr
	}
	return sample{wall: wall, cpu: after - before}, err
}

// machineCPU is the CPU time every core of the machine has spent busy since boot
// (/proc/stat: user, nice, system, irq, softirq, steal; in USER_HZ ticks of 10 ms).
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return cpuOf(&ru), nil
}

func cpuOf(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// external runs a command and returns its wall time and the CPU of its process tree: the
// command and the children it waited for (from wait4), plus the ssh ControlPersist masters it
// left behind, which are stopped and reaped here.
func (e *peerEnv) external(ctx context.Context, dir string, env []string, name string, args ...string) (sample, error) {
	logf, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		return sample{}, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	var cpu time.Duration
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu = cpuOf(ru)
		}
	}
	cpu += reapLeftovers(dir)
	if err != nil {
		return sample{wall: wall, cpu: cpu}, fmt.Errorf("%s: %w (see %s)", name, err, logf.Name())
	}
	return sample{wall: wall, cpu: cpu}, nil
}

// reapLeftovers stops the processes whose command line names dir (ssh masters under the run's
// control path directory) and returns the CPU they used. They are our children because this
// process is a child subreaper.
func reapLeftovers(dir string) time.Duration {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var cpu time.Duration
	self := os.Getpid()
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == self || parentOf(pid) != self {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			continue
		}
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		if _, err := syscall.Wait4(pid, &ws, 0, &ru); err == nil {
			cpu += cpuOf(&ru)
		}
	}
	return cpu
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// newPool is the SSH pool Patchfleet uses: one connection per host, all hosts at once.
func (e *peerEnv) newPool() *sshx.Pool {
	n := len(e.targets)
	return sshx.NewPool(sshx.Config{Signers: []ssh.Signer{e.fleet.ClientSigner()}, MaxConns: n, ConnectTimeout: time.Minute})
}

// eachTarget runs f on every target at once and joins the errors.
func (e *peerEnv) eachTarget(f func(t sshx.Target) error) error {
	errs := make([]error, len(e.targets))
	var wg sync.WaitGroup
	for i, t := range e.targets {
		wg.Go(func() { errs[i] = f(t) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// patchfleetScan is the inventory's scan: hostfacts.ScanScript over the sshx pool, parsed.
func (e *peerEnv) patchfleetScan(ctx context.Context) error {
	script, err := hostfacts.ScanScript()
	if err != nil {
		return err
	}
	pool := e.newPool()
	defer pool.Close()
	return e.eachTarget(func(t sshx.Target) error {
		res, err := pool.Run(ctx, t, sshx.Command{Script: script})
		if err != nil {
			return fmt.Errorf("scan %s: %w", t.Name, err)
		}
		facts, err := hostfacts.Parse(res.Stdout)
		if err != nil {
			return fmt.Errorf("scan %s: %w", t.Name, err)
		}
		if len(facts.Packages) == 0 || facts.OS.VersionID == "" {
			return fmt.Errorf("scan %s: %d packages, OS %q", t.Name, len(facts.Packages), facts.OS.VersionID)
		}
		return nil
	})
}

// patchfleetUpgrade is the executor's upgrade: hostops state, then install with apt-get
// update first in the same command, over the sshx pool, each parsed.
func (e *peerEnv) patchfleetUpgrade(ctx context.Context) error {
	const lock = 2 * time.Minute
	state, err := hostops.StateScript("pf-demo")
	if err != nil {
		return err
	}
	install, err := hostops.InstallScript([]hostops.Target{{Name: "pf-demo"}}, hostops.Apt{LockTimeout: lock, Update: true})
	if err != nil {
		return err
	}
	pool := e.newPool()
	defer pool.Close()
	return e.eachTarget(func(t sshx.Target) error {
		res, err := pool.Run(ctx, t, sshx.Command{Script: state})
		if err != nil {
			return fmt.Errorf("state %s: %w", t.Name, err)
		}
		st, err := hostops.ParseState(res.Stdout)
		if err != nil {
			return fmt.Errorf("state %s: %w", t.Name, err)
		}
		if p, ok := st.Package("pf-demo"); !ok || p.Version != "1.0" {
			return fmt.Errorf("state %s: pf-demo %+v", t.Name, p)
		}
		if res, err = pool.Run(ctx, t, sshx.Command{Script: install}); err != nil {
			return fmt.Errorf("install %s: %w", t.Name, err)
		}
		ir, err := hostops.ParseInstall(res.Stdout)
		if err != nil || res.ExitStatus != 0 || ir.Update.Status != 0 {
			return fmt.Errorf("install %s: exit %d, update %d: %v", t.Name, res.ExitStatus, ir.Update.Status, err)
		}
		if v := ir.AfterVersion("pf-demo"); v != "1.1" {
			return fmt.Errorf("install %s: pf-demo %q after", t.Name, v)
		}
		return nil
	})
}
