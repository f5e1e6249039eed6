// Package fleetsim serves N simulated Debian hosts over real SSH in one
// process: each host has its own loopback port, host key, boot id and dpkg
// database (seeded from a real Debian 12 capture, shared copy-on-write), and
// answers exactly the scripts Patchfleet sends — the hostfacts scan and the
// hostops ops, recognised by their "# patchfleet:op" header — with output in
// the format the real scripts print. Anything else exits 127.
//
// Faults (dropped connections, apt failures, a held dpkg lock, reboots that
// never come back, slow hosts, changed host keys, failing health checks)
// are assigned per host by percentage or set per host. See README.md.
package fleetsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Fault is a set of misbehaviours of one host.
type Fault uint16

const (
	// FaultDrop closes the TCP connection halfway through every command's
	// output.
	FaultDrop Fault = 1 << iota
	// FaultAptFail makes install and full-upgrade fail like a failing
	// postinst: exit 100, dpkg's error, the first package half-configured
	// (op repair then configures it).
	FaultAptFail
	// FaultLockHeld holds the dpkg lock for Faults.LockHeldFor from start.
	FaultLockHeld
	// FaultRebootHang: after a reboot the host never comes back.
	FaultRebootHang
	// FaultSlow multiplies every latency by Faults.SlowFactor.
	FaultSlow
	// FaultHostKeyChange: the host presents a key other than the one in
	// the hosts file.
	FaultHostKeyChange
	// FaultHealthFail makes the health op exit 1.
	FaultHealthFail
	// FaultRebootLost: op reboot never reaches the host — the connection
	// closes before the script runs — as when the executor stops between
	// recording the reboot and sending it.
	FaultRebootLost
)

var faultNames = []struct {
	f    Fault
	name string
}{
	{FaultDrop, "drop"}, {FaultAptFail, "apt-fail"}, {FaultLockHeld, "lock-held"}, {FaultRebootHang, "reboot-hang"},
	{FaultSlow, "slow"}, {FaultHostKeyChange, "host-key-change"}, {FaultHealthFail, "health-fail"},
	{FaultRebootLost, "reboot-lost"},
}

// Names lists the faults in f.
func (f Fault) Names() []string {
	var out []string
	for _, n := range faultNames {
		if f&n.f != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// ParseFault reads a fault name as Names prints it.
func ParseFault(name string) (Fault, error) {
	for _, n := range faultNames {
		if n.name == name {
			return n.f, nil
		}
	}
	return 0, fmt.Errorf("unknown fault %q", name)
}

// Faults assigns faults to a share of the hosts: Percent maps a fault to
// the percentage of hosts (0–100) that get it, chosen deterministically
// from the seed.
type Faults struct {
	Percent     map[Fault]float64
	LockHeldFor time.Duration // default 30s
	SlowFactor  float64       // default 10
}

// Options configure a simulated fleet.
type Options struct {
	N int
	// BasePort: host i listens on 127.0.0.1:BasePort+i; 0 picks free ports.
	BasePort int
	// Seed derives host keys, the client key and fault assignment, so a
	// restarted simulator has the same keys.
	Seed string
	// Images are the host variants, assigned round robin; default
	// DefaultImages.
	Images []*Image
	// Updates is the simulated repository; default DefaultUpdates.
	Updates []Update
	// Latency is added to every command; AptLatency to apt and dpkg ops.
	Latency, AptLatency time.Duration
	// RebootDelay is how long a rebooting host stays down; default 2s.
	RebootDelay time.Duration
	Faults      Faults
	Logger      *slog.Logger
}

// debian12KeyExchanges are the key exchanges Debian 12's OpenSSH 9.2 offers by default, in
// its order, less sntrup761x25519 (not in golang.org/x/crypto/ssh). A simulated host
// negotiates what a real one would: without this a Go client and the simulator would agree on
// ML-KEM, which real Debian 12 hosts do not offer, and every handshake would cost more than it
// does against them.
var debian12KeyExchanges = []string{
	ssh.KeyExchangeCurve25519, "curve25519-sha256@libssh.org",
	ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDHGEXSHA256, ssh.KeyExchangeDH16SHA512, ssh.KeyExchangeDH14SHA256,
}

// Fleet is a running simulator.
type Fleet struct {
	opts    Options
	hosts   []*Host
	updates []Update
	client  ssh.Signer
	log     *slog.Logger

	active, started atomic.Int64 // wrapped scripts running now, and ever

	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{}
}

// Host is one simulated host.
type Host struct {
	fleet   *Fleet
	Index   int
	Name    string
	image   *Image
	hostKey ssh.PublicKey // what the hosts file pins
	config  *ssh.ServerConfig
	port    int

	mu             sync.Mutex
	faults         Fault
	bootID         string
	boots          int
	up             bool
	ln             net.Listener
	conns          map[net.Conn]struct{}
	over           map[string]pkg // this host's differences from its image
	held           map[string]bool
	rebootRequired bool
	rebootPkgs     []string
	rebootMarker   bool // hostops.RebootMarkerPath exists (on /run: a reboot clears it)
	lockUntil      time.Time
	autoUpgrades   string
	unattendedConf string
	running        map[int]*running // wrapped scripts by process group id
	lastPID        int
	rec            record
}

// Start starts the fleet's hosts and returns once every one listens.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.N <= 0 {
		return nil, fmt.Errorf("fleetsim: %d hosts", opts.N)
	}
	if opts.Images == nil {
		ims, err := DefaultImages()
		if err != nil {
			return nil, fmt.Errorf("fleetsim: images: %w", err)
		}
		opts.Images = ims
	}
	if opts.Updates == nil {
		opts.Updates = DefaultUpdates()
	}
	if opts.RebootDelay == 0 {
		opts.RebootDelay = 2 * time.Second
	}
	if opts.Faults.LockHeldFor == 0 {
		opts.Faults.LockHeldFor = 30 * time.Second
	}
	if opts.Faults.SlowFactor == 0 {
		opts.Faults.SlowFactor = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := raiseNoFile(uint64(opts.N) + 4096); err != nil {
		return nil, fmt.Errorf("fleetsim: %d hosts: %w", opts.N, err)
	}
	f := &Fleet{opts: opts, updates: opts.Updates, log: opts.Logger, closed: make(chan struct{})}
	client, err := ssh.NewSignerFromKey(derivedKey(opts.Seed, "client", 0))
	if err != nil {
		return nil, fmt.Errorf("fleetsim: client key: %w", err)
	}
	f.client = client
	clientKey := client.PublicKey().Marshal()
	auth := func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(clientKey) {
			return nil, nil
		}
		return nil, errors.New("unknown public key")
	}
	start := time.Now()
	for i := range opts.N {
		pinned, err := ssh.NewSignerFromKey(derivedKey(opts.Seed, "host", i))
		if err != nil {
			return nil, fmt.Errorf("fleetsim: host %d key: %w", i, err)
		}
		h := &Host{fleet: f, Index: i, Name: fmt.Sprintf("sim-%05d", i), image: opts.Images[i%len(opts.Images)],
			hostKey: pinned.PublicKey(), bootID: newBootID(), boots: 1}
		h.faults = assignFaults(opts.Seed, i, opts.Faults.Percent)
		presented := pinned
		if h.faults&FaultHostKeyChange != 0 {
			if presented, err = ssh.NewSignerFromKey(derivedKey(opts.Seed, "changed-host", i)); err != nil {
				return nil, fmt.Errorf("fleetsim: host %d key: %w", i, err)
			}
		}
		h.config = &ssh.ServerConfig{PublicKeyCallback: auth, ServerVersion: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6",
			Config: ssh.Config{KeyExchanges: debian12KeyExchanges}}
		h.config.AddHostKey(presented)
		if h.faults&FaultLockHeld != 0 {
			h.lockUntil = start.Add(opts.Faults.LockHeldFor)
		}
		if opts.BasePort > 0 {
			h.port = opts.BasePort + i
		}
		if err := h.listen(); err != nil {
			f.Close()
			return nil, fmt.Errorf("fleetsim: host %s: %w", h.Name, err)
		}
		f.hosts = append(f.hosts, h)
		if i%1000 == 999 {
			if err := ctx.Err(); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	f.log.Info("fleetsim started", "hosts", opts.N, "took", time.Since(start))
	return f, nil
}

// derivedKey makes an ed25519 key from the seed: cheap (no entropy wait)
// and stable across restarts, so clients keep their pinned keys.
func derivedKey(seed, kind string, i int) ed25519.PrivateKey {
	sum := sha256.Sum256([]byte("fleetsim\x00" + seed + "\x00" + kind + "\x00" + strconv.Itoa(i)))
	return ed25519.NewKeyFromSeed(sum[:])
}

// assignFaults picks host i's faults: a fault with percentage p applies
// when a hash of (seed, fault, i) falls in the lowest p percent.
func assignFaults(seed string, i int, percent map[Fault]float64) Fault {
	var out Fault
	for f, p := range percent {
		sum := sha256.Sum256([]byte(seed + "\x00fault\x00" + strconv.Itoa(int(f)) + "\x00" + strconv.Itoa(i)))
		if float64(binary.BigEndian.Uint64(sum[:8])%10000) < p*100 {
			out |= f
		}
	}
	return out
}

func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// raiseNoFile lifts RLIMIT_NOFILE to at least need: one descriptor per
// listener and per connection.
func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		lim.Max = need // needs CAP_SYS_RESOURCE
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise open-file limit to %d: %w", need, err)
	}
	return nil
}

// Hosts returns the hosts in index order.
func (f *Fleet) Hosts() []*Host { return f.hosts }

// ClientSigner is the key every host accepts (any user name).
func (f *Fleet) ClientSigner() ssh.Signer { return f.client }

// ClientPrivateKey is the client key, for writing an OpenSSH key file.
func (f *Fleet) ClientPrivateKey() ed25519.PrivateKey { return derivedKey(f.opts.Seed, "client", 0) }

func (f *Fleet) update(name string) (Update, bool) {
	for _, u := range f.updates {
		if u.Name == name {
			return u, true
		}
	}
	return Update{}, false
}

// Close stops every host and waits for their goroutines.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		close(f.closed)
		for _, h := range f.hosts {
			h.down()
		}
		f.wg.Wait()
	})
	return nil
}

// Addr is the host's address, host:port.
func (h *Host) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)) }

// Port is the host's TCP port.
func (h *Host) Port() int { return h.port }

// HostKey is the key clients should pin (a host with FaultHostKeyChange
// presents another).
func (h *Host) HostKey() ssh.PublicKey { return h.hostKey }

// Image names the host's variant.
func (h *Host) Image() string { return h.image.Name }

// BootID returns the current boot id.
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

// Up reports whether the host accepts connections.
func (h *Host) Up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up
}

// Faults returns the host's faults.
func (h *Host) Faults() Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.faults
}

// SetFaults replaces the host's faults (a host key change needs a restart
// of the fleet).
func (h *Host) SetFaults(f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = f
}

// HoldLock holds the host's simulated dpkg lock for d from now.
func (h *Host) HoldLock(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lockUntil = time.Now().Add(d)
}

// PackageVersion returns the installed version of name ("" if absent).
func (h *Host) PackageVersion(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, _ := h.pkgLocked(name)
	return p.Version
}

// Hold marks a package held, as apt-mark hold would.
func (h *Host) Hold(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		h.held = map[string]bool{}
	}
	h.held[name] = true
}

func (h *Host) listen() error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)))
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.ln, h.up = ln, true
	h.port = ln.Addr().(*net.TCPAddr).Port
	h.mu.Unlock()
	h.fleet.wg.Add(1)
	go h.serve(ln)
	return nil
}

// down closes the listener and every connection: the host is off.
func (h *Host) down() {
	h.mu.Lock()
	ln, conns := h.ln, h.conns
	h.ln, h.conns, h.up = nil, nil, false
	h.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// rebootLater takes the host down after delay and, unless its reboot
// hangs, brings it back after the fleet's reboot delay with a new boot id
// and a fresh /run (no reboot-required, no reboot marker).
func (f *Fleet) rebootLater(h *Host, delay time.Duration) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if !f.sleep(delay) {
			return
		}
		h.down()
		if h.Faults()&FaultRebootHang != 0 {
			return
		}
		if !f.sleep(f.opts.RebootDelay) {
			return
		}
		h.mu.Lock()
		h.bootID, h.boots = newBootID(), h.boots+1
		h.rebootRequired, h.rebootPkgs, h.rebootMarker = false, nil, false
		h.lockUntil = time.Time{}
		h.mu.Unlock()
		for {
			err := h.listen()
			if err == nil {
				return
			}
			f.log.Warn("fleetsim: host cannot listen again after reboot", "host", h.Name, "err", err)
			if !f.sleep(100 * time.Millisecond) {
				return
			}
		}
	}()
}

// sleep waits d unless the fleet closes first.
func (f *Fleet) sleep(d time.Duration) bool { return f.wait(d, nil) == waitDone }

const (
	waitDone = iota
	waitClosed
	waitKilled
)

// wait waits d unless the fleet closes or killed closes first (a nil killed
// never does). A command killed before its time is up says so even when d is 0.
func (f *Fleet) wait(d time.Duration, killed <-chan struct{}) int {
	select {
	case <-killed:
		return waitKilled
	default:
	}
	if d <= 0 {
		return waitDone
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return waitDone
	case <-f.closed:
		return waitClosed
	case <-killed:
		return waitKilled
	}
}

// Running is how many scripts sent with the sshx wrapper are running now on
// every host; Started how many have started since the fleet did.
func (f *Fleet) Running() int64 { return f.active.Load() }
func (f *Fleet) Started() int64 { return f.started.Load() }

// ParseFaultPercents reads "drop=1,apt-fail=5,lock-held=2" (fault names as
// Fault.Names prints them, percentages of hosts).
func ParseFaultPercents(s string) (map[Fault]float64, error) {
	out := map[Fault]float64{}
	if s == "" {
		return out, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		name, pct, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("fault %q: want name=percent", item)
		}
		f, err := ParseFault(name)
		if err != nil {
			return nil, err
		}
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || p < 0 || p > 100 {
			return nil, fmt.Errorf("fault %s: percentage %q not in 0..100", name, pct)
		}
		out[f] = p
	}
	return out, nil
}

// HostInfo is one host as the hosts file lists it.
type HostInfo struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Port    int      `json:"port"`
	HostKey string   `json:"host_key"` // authorized_keys format
	Image   string   `json:"image"`
	Faults  []string `json:"faults,omitempty"`
}

// Manifest describes every host, for clients.
func (f *Fleet) Manifest() []HostInfo {
	out := make([]HostInfo, 0, len(f.hosts))
	for _, h := range f.hosts {
		out = append(out, HostInfo{Name: h.Name, Address: "127.0.0.1", Port: h.Port(),
			HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey()))), Image: h.Image(), Faults: h.Faults().Names()})
	}
	return out
}

// KnownHosts returns an OpenSSH known_hosts file pinning every host's key.
func (f *Fleet) KnownHosts() []byte {
	var b strings.Builder
	for _, h := range f.hosts {
		b.WriteString(knownhosts.Line([]string{h.Addr()}, h.HostKey()) + "\n")
	}
	return []byte(b.String())
}
