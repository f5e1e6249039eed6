package testfleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// State is where a host is in its power cycle.
type State int

const (
	StateBooting State = iota // init started, sshd not answering yet
	StateUp                   // sshd answers
	StateDown                 // rebooting: down, will come back after the reboot delay
	StateOff                  // powered off, crashed, or rebooted with never-comes-back set
	StateStopped              // torn down by Close
)

func (s State) String() string {
	switch s {
	case StateBooting:
		return "booting"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateOff:
		return "off"
	case StateStopped:
		return "stopped"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ErrHostDown is returned by Run and the helpers when the host is not running.
var ErrHostDown = errors.New("host is not running")

// Exit statuses of hostinit.sh.
const (
	exitReboot   = 42
	exitPoweroff = 43
	exitNoSSHD   = 44
)

// Host is one disposable Debian host: an overlay of the cached image with its
// own writable layer, running sshd in its own PID, mount and UTS namespaces.
// Its supervisor goroutine brings it back after a reboot.
type Host struct {
	name    string
	dir     string
	port    int
	lower   string
	repo    string
	hostKey ssh.PublicKey
	client  ssh.Signer
	log     *slog.Logger

	mu             sync.Mutex
	state          State
	bootID         string
	boots          int
	initPID        int
	mountNSs       []string
	neverComesBack bool
	rebootDelay    time.Duration
	lastBoot       time.Duration
	lastErr        error
	changed        chan struct{} // closed and replaced on every change

	started  bool // supervise was started
	powerOn  chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// Name is the host's name, also its hostname.
func (h *Host) Name() string { return h.name }

// Addr is the host's SSH address, host:port.
func (h *Host) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)) }

// Port is the TCP port sshd listens on at 127.0.0.1.
func (h *Host) Port() int { return h.port }

// HostKey is the host's SSH host key; pin it with ssh.FixedHostKey.
func (h *Host) HostKey() ssh.PublicKey { return h.hostKey }

// ClientSigner is the key that logs in as root (the same for the whole fleet).
func (h *Host) ClientSigner() ssh.Signer { return h.client }

// Dir is the host's directory: its writable layer, mount point and console log.
func (h *Host) Dir() string { return h.dir }

// ConsoleLog is the file collecting the output of the host's init and sshd.
func (h *Host) ConsoleLog() string { return filepath.Join(h.dir, "console.log") }

// BootID is the id of the current boot (of the last one while the host is
// down). Inside the host it reads as /proc/sys/kernel/random/boot_id.
func (h *Host) BootID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bootID
}

// Boots counts the host's boots, the first included.
func (h *Host) Boots() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.boots
}

// State is the host's current state.
func (h *Host) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// LastBootDuration is how long the last boot took from starting the
// namespaces to sshd answering.
func (h *Host) LastBootDuration() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastBoot
}

// InitPID is the process id (in this PID namespace) of the host's init, or 0.
func (h *Host) InitPID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.initPID
}

// MountNamespaces lists the mount namespaces ("mnt:[inode]") of every boot so
// far; once the host is stopped, no process should be left in any of them.
func (h *Host) MountNamespaces() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.mountNSs...)
}

// SetNeverComesBack makes the host stay down the next time it reboots,
// modelling a server that does not survive its reboot.
func (h *Host) SetNeverComesBack(never bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.neverComesBack = never
}

// SetRebootDelay sets how long the host stays down when it reboots.
func (h *Host) SetRebootDelay(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rebootDelay = d
}

// Reboot reboots the host as `reboot` run inside it would, and returns once
// it is down. WaitUp waits for it to come back.
func (h *Host) Reboot(ctx context.Context) error {
	return h.power(ctx, syscall.SIGUSR1, "reboot")
}

// PowerOff powers the host off; it stays off until PowerOn.
func (h *Host) PowerOff(ctx context.Context) error {
	return h.power(ctx, syscall.SIGUSR2, "power off")
}

func (h *Host) power(ctx context.Context, sig syscall.Signal, op string) error {
	h.mu.Lock()
	pid, boots, state := h.initPID, h.boots, h.state
	h.mu.Unlock()
	if state != StateUp && state != StateBooting {
		return fmt.Errorf("%s %s: %w", op, h.name, ErrHostDown)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("%s %s: %w", op, h.name, err)
	}
	err := h.waitFor(ctx, func() bool {
		return h.boots != boots || h.state == StateDown || h.state == StateOff || h.state == StateStopped
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, h.name, err)
	}
	return nil
}

// PowerOn boots a host that is off (powered off, crashed or never came back).
func (h *Host) PowerOn() {
	select {
	case h.powerOn <- struct{}{}:
	default:
	}
}

// WaitUp waits until sshd answers.
func (h *Host) WaitUp(ctx context.Context) error {
	// A boot that failed will not fix itself: report it rather than wait.
	failed := func() bool { return h.state == StateOff && h.lastErr != nil }
	if err := h.waitFor(ctx, func() bool { return h.state == StateUp || failed() }); err != nil {
		return fmt.Errorf("wait for %s to come up: %w", h.name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != StateUp {
		return fmt.Errorf("wait for %s to come up: %w: %v", h.name, ErrHostDown, h.lastErr)
	}
	return nil
}

// WaitState waits until the host is in state s.
func (h *Host) WaitState(ctx context.Context, s State) error {
	if err := h.waitFor(ctx, func() bool { return h.state == s }); err != nil {
		return fmt.Errorf("wait for %s to be %s (is %s): %w", h.name, s, h.State(), err)
	}
	return nil
}

// waitFor waits until cond, evaluated under h.mu, holds.
func (h *Host) waitFor(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		ok, ch, lastErr, state := cond(), h.changed, h.lastErr, h.state
		h.mu.Unlock()
		if ok {
			return nil
		}
		if state == StateStopped {
			return fmt.Errorf("host stopped")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		}
	}
}

func (h *Host) setLocked(f func()) {
	f()
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *Host) set(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setLocked(f)
}

// bootOutcome is why a boot ended.
type bootOutcome int

const (
	outcomeReboot bootOutcome = iota
	outcomePoweroff
	outcomeCrash
	outcomeStopped
)

// supervise runs the host's boots until stop is closed.
func (h *Host) supervise() {
	defer close(h.done)
	defer h.set(func() { h.state, h.initPID = StateStopped, 0 })
	for {
		switch h.bootOnce() {
		case outcomeStopped:
			return
		case outcomeReboot:
			h.mu.Lock()
			never, delay := h.neverComesBack, h.rebootDelay
			h.setLocked(func() { h.state, h.initPID = StateDown, 0 })
			h.mu.Unlock()
			if !never {
				h.log.Info("host rebooting", "host", h.name, "delay", delay)
				select {
				case <-h.stop:
					return
				case <-time.After(delay):
				}
				continue
			}
			h.log.Info("host does not come back from its reboot", "host", h.name)
		}
		h.set(func() { h.state, h.initPID = StateOff, 0 })
		select {
		case <-h.stop:
			return
		case <-h.powerOn:
		}
	}
}

// bootOnce boots the host and returns when that boot ends.
func (h *Host) bootOnce() bootOutcome {
	start := time.Now()
	b := bootSpec{
		lower: h.lower, upper: filepath.Join(h.dir, "upper"), work: filepath.Join(h.dir, "work"),
		merged: filepath.Join(h.dir, "merged"), repo: h.repo, seed: filepath.Join(h.dir, "seed"),
		hostname: h.name, bootID: newBootID(), port: h.port,
	}
	fail := func(err error) bootOutcome {
		h.log.Error("host boot failed", "host", h.name, "err", err)
		h.set(func() { h.lastErr = err })
		return outcomeCrash
	}
	cmd, err := b.command(context.Background())
	if err != nil {
		return fail(err)
	}
	console, err := os.OpenFile(h.ConsoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(fmt.Errorf("open console log: %w", err))
	}
	defer console.Close()
	fmt.Fprintf(console, "testfleet: boot %s\n", b.bootID)
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start init: %w", err))
	}
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	h.set(func() {
		h.state, h.bootID, h.initPID, h.lastErr = StateBooting, b.bootID, cmd.Process.Pid, nil
		h.boots++
		if ns != "" {
			h.mountNSs = append(h.mountNSs, ns)
		}
	})

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	readyCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- waitSSH(readyCtx, h.Addr()) }()

	for {
		select {
		case <-h.stop:
			_ = cmd.Process.Kill() // PID 1 of the namespace: everything in it dies
			<-exited
			return outcomeStopped
		case err := <-ready:
			ready = nil
			if err == nil {
				took := time.Since(start)
				h.set(func() { h.state, h.lastBoot = StateUp, took })
				h.log.Info("host up", "host", h.name, "addr", h.Addr(), "boot_id", b.bootID, "took", took.Round(time.Millisecond))
			}
		case err := <-exited:
			var ee *exec.ExitError
			code := -1
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			switch code {
			case exitReboot:
				return outcomeReboot
			case exitPoweroff:
				h.log.Info("host powered off", "host", h.name)
				return outcomePoweroff
			case exitNoSSHD:
				return fail(fmt.Errorf("sshd exited; see %s", h.ConsoleLog()))
			default:
				data, _ := os.ReadFile(h.ConsoleLog())
				return fail(fmt.Errorf("init exited (%v): %s", err, tail(data, 1500)))
			}
		}
	}
}

// bootSpec is everything hostinit.sh needs for one boot.
type bootSpec struct {
	lower, upper, work, merged, repo, seed string
	hostname, bootID                       string
	port                                   int
	setup                                  bool // prepare the image layer instead of running sshd
}

func (b bootSpec) command(ctx context.Context) (*exec.Cmd, error) {
	for _, d := range []string{b.upper, b.work, b.merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create host dirs: %w", err)
		}
	}
	// A file rather than sh -c, so ps inside the host shows a readable PID 1.
	script := filepath.Join(filepath.Dir(b.upper), "init.sh")
	if err := os.WriteFile(script, hostInit, 0o755); err != nil {
		return nil, fmt.Errorf("write host init: %w", err)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", script)
	mode := "host"
	if b.setup {
		mode = "setup"
	}
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"PF_MODE=" + mode, "PF_LOWER=" + b.lower, "PF_UPPER=" + b.upper, "PF_WORK=" + b.work,
		"PF_MERGED=" + b.merged, "PF_REPO=" + b.repo, "PF_SEED=" + b.seed,
		"PF_HOSTNAME=" + b.hostname, "PF_BOOT_ID=" + b.bootID, "PF_PORT=" + strconv.Itoa(b.port),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// The shell becomes PID 1 of a new PID namespace, so killing it kills
		// the whole host, and the mount namespace (with the overlay and every
		// other mount) disappears with its last process.
		Cloneflags:   syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS,
		Unshareflags: syscall.CLONE_NEWNS,
		Pdeathsig:    syscall.SIGKILL,
	}
	return cmd, nil
}

// waitSSH polls addr until an SSH server greets, or ctx ends.
func waitSSH(ctx context.Context, addr string) error {
	for {
		if sshGreets(addr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func sshGreets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// newBootID returns a random UUID in the kernel's boot_id format.
func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Result is what a command run inside a host produced. A non-zero exit status
// is data, not an error.
type Result struct {
	Stdout     string
	Stderr     string
	ExitStatus int
}

// Run runs command with /bin/sh -c inside the host as root, directly (not over
// SSH): for test setup and assertions. The error is for failing to run it.
func (h *Host) Run(ctx context.Context, command string) (Result, error) {
	cmd, err := h.command(ctx, "/bin/sh", "-c", command)
	if err != nil {
		return Result{}, fmt.Errorf("run on %s: %w", h.name, err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		res.ExitStatus = ee.ExitCode()
	default:
		return res, fmt.Errorf("run on %s: %w", h.name, err)
	}
	return res, nil
}

// MustRun is Run for setup steps that must succeed: it fails on an error or
// a non-zero exit status.
func (h *Host) MustRun(ctx context.Context, command string) (string, error) {
	res, err := h.Run(ctx, command)
	if err != nil {
		return "", err
	}
	if res.ExitStatus != 0 {
		return res.Stdout, fmt.Errorf("run on %s: %q exited %d: %s", h.name, command, res.ExitStatus, strings.TrimSpace(res.Stderr))
	}
	return res.Stdout, nil
}

// command prepares a process inside the host's namespaces and root.
func (h *Host) command(ctx context.Context, argv ...string) (*exec.Cmd, error) {
	h.mu.Lock()
	pid, state := h.initPID, h.state
	h.mu.Unlock()
	if pid == 0 || (state != StateUp && state != StateBooting) {
		return nil, ErrHostDown
	}
	args := []string{"-t", strconv.Itoa(pid), "-m", "-u", "-p", "--",
		"chroot", filepath.Join(h.dir, "merged"), "/usr/bin/env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	cmd := exec.CommandContext(ctx, "nsenter", append(args, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd, nil
}

// ManualUpgrade installs a package version from the repository with dpkg
// directly, as an administrator would outside Patchfleet (drift).
func (h *Host) ManualUpgrade(ctx context.Context, name, version string) error {
	deb := RepoPath + "/pool/" + Package{Name: name, Version: version}.Filename()
	if _, err := h.MustRun(ctx, "dpkg -i "+deb); err != nil {
		return fmt.Errorf("manual upgrade of %s to %s: %w", name, version, err)
	}
	return nil
}

// HoldPackage marks a package held (apt-mark hold).
func (h *Host) HoldPackage(ctx context.Context, name string) error {
	if _, err := h.MustRun(ctx, "apt-mark hold "+name); err != nil {
		return fmt.Errorf("hold %s: %w", name, err)
	}
	return nil
}

// dpkgLocker takes the locks apt takes (fcntl locks, which flock(1) would not
// conflict with), reports it, and keeps them until stdin closes.
const dpkgLocker = `import fcntl, sys
locks = [open(p, "a") for p in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")]
for f in locks:
    fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
`

// HoldDpkgLock takes the dpkg locks (lock-frontend and lock) inside the host,
// as a running apt would, until release is called or the host goes down.
func (h *Host) HoldDpkgLock(ctx context.Context) (release func() error, err error) {
	cmd, err := h.command(context.Background(), "python3", "-c", dpkgLocker)
	if err != nil {
		return nil, fmt.Errorf("hold dpkg lock on %s: %w", h.name, err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("hold dpkg lock on %s: %w", h.name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("hold dpkg lock on %s: %w", h.name, err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("hold dpkg lock on %s: %w", h.name, err)
	}
	locked := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "locked" {
			err = fmt.Errorf("unexpected output %q", line)
		}
		locked <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	release = func() error {
		stdin.Close()
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() < 0 {
			return nil // killed: the host went down, taking the lock with it
		}
		if err != nil {
			return fmt.Errorf("release dpkg lock on %s: %w: %s", h.name, err, stderr.String())
		}
		return nil
	}
	select {
	case err := <-locked:
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("hold dpkg lock on %s: %w: %s", h.name, err, stderr.String())
		}
		return release, nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("hold dpkg lock on %s: %w", h.name, ctx.Err())
	}
}

// stopHost tears the host down and waits for its supervisor to finish.
func (h *Host) stopHost() {
	h.stopOnce.Do(func() { close(h.stop) })
	if h.started {
		<-h.done
	}
}
