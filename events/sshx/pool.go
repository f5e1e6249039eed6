package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures a Pool. Private keys and the agent are never logged.
type Config struct {
	Signers []ssh.Signer // see LoadSigners
	// AgentSocket is the path of an ssh-agent socket (SSH_AUTH_SOCK, read by
	// main); its keys are offered after Signers.
	AgentSocket string
	// BastionKeys pins bastion host keys by "host:port". A bastion never gets
	// trust on first use: its key must be here or in KnownHosts.
	BastionKeys map[string]ssh.PublicKey
	// KnownHosts, when set (see KnownHosts), vouches for hosts whose target
	// has no pinned key, and for bastions missing from BastionKeys.
	KnownHosts ssh.HostKeyCallback

	ConnectTimeout time.Duration // TCP connect and SSH handshake; 15s when zero
	CommandTimeout time.Duration // default per command; none when zero
	IdleTimeout    time.Duration // an unused connection is closed after this; 1m when zero
	MaxConns       int           // connections to targets at once; 100 when zero
	// MaxSessions is the server's limit of sessions per connection (OpenSSH
	// MaxSessions, 10 by default). One is kept back to kill cancelled commands.
	MaxSessions int

	// OnTOFU receives the key a TOFU target presented when nothing was
	// pinned, so the caller can pin it. Called during the handshake.
	OnTOFU func(target string, key ssh.PublicKey)
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Minute
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 100
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrPoolClosed is returned by a Pool after Close.
var ErrPoolClosed = errors.New("ssh pool closed")

// probeAfter is how long a connection may sit unused before it is checked
// with a keepalive request: a host that vanished leaves a half-open TCP
// connection on which opening a session would hang.
const probeAfter = 30 * time.Second

// Pool runs commands on hosts over one shared connection per host. It is
// safe for concurrent use.
type Pool struct {
	cfg   Config
	log   *slog.Logger
	slots chan struct{} // one per open target connection

	open, mostOpen atomic.Int32 // target connections, for tests

	mu       sync.Mutex
	learned  map[string]ssh.PublicKey // keys accepted on first use, by target
	idleWake chan struct{}            // closed when a connection goes idle
	closed   bool
	conns    map[string]*conn
	bastions map[string]*bastion
}

// conn is a connection to one target, shared by every Run on that target.
type conn struct {
	key      string
	ready    chan struct{} // closed when the dial finished
	client   *ssh.Client   // set before ready closes, nil on error
	hostKey  ssh.PublicKey
	err      error
	mine     bool          // err came from the dialler's own context
	sessions chan struct{} // session slots for commands

	// Guarded by Pool.mu.
	users    int
	gone     bool // no longer handed out
	idle     *time.Timer
	lastUsed time.Time
}

// bastion is a connection to a jump host, shared by the targets behind it.
type bastion struct {
	spec   string
	ready  chan struct{}
	client *ssh.Client
	err    error
	users  int // guarded by Pool.mu
}

// NewPool returns a pool; Close it when done.
func NewPool(cfg Config) *Pool {
	cfg = cfg.withDefaults()
	return &Pool{
		cfg: cfg, log: cfg.Logger,
		slots:    make(chan struct{}, cfg.MaxConns),
		idleWake: make(chan struct{}),
		conns:    map[string]*conn{},
		bastions: map[string]*bastion{},
		learned:  map[string]ssh.PublicKey{},
	}
}

// Close closes every connection. Commands still running fail.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var clients []*ssh.Client
	for _, c := range p.conns {
		c.gone = true
		select {
		case <-c.ready:
			if c.client != nil {
				clients = append(clients, c.client)
			}
		default:
		}
	}
	clear(p.conns)
	for _, b := range p.bastions {
		select {
		case <-b.ready:
			if b.client != nil {
				clients = append(clients, b.client)
			}
		default:
		}
	}
	p.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
}

// Forget closes the target's shared connection, if there is one, and drops
// it: the next Run dials again. Commands running on it fail. For a host that
// was rebooted or replaced, whose old connection may look alive for a while.
func (p *Pool) Forget(t Target) {
	p.mu.Lock()
	c := p.conns[t.key()]
	if c != nil {
		p.forgetLocked(c)
	}
	p.mu.Unlock()
	if c == nil {
		return
	}
	closeClient := func() {
		if c.client != nil {
			c.client.Close()
		}
	}
	select {
	case <-c.ready:
		closeClient()
	default:
		go func() { <-c.ready; closeClient() }() // still dialling
	}
}

// Dial returns a new client of its own to the target, verified like the
// pool's; it takes one of the MaxConns slots until closed.
func (p *Pool) Dial(ctx context.Context, t Target) (*ssh.Client, error) {
	if err := p.acquireSlot(ctx); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", t.name(), err)
	}
	client, _, b, err := p.connect(ctx, t)
	if err != nil {
		<-p.slots
		return nil, err
	}
	go func() {
		client.Wait()
		<-p.slots
		p.releaseBastion(b)
	}()
	return client, nil
}

// acquire returns the target's shared connection, dialling it if needed.
// The caller must release it.
func (p *Pool) acquire(ctx context.Context, t Target) (*conn, error) {
	key := t.key()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		c := p.conns[key]
		if c == nil {
			c = &conn{key: key, ready: make(chan struct{}), sessions: make(chan struct{}, max(1, p.cfg.MaxSessions-1)), users: 1}
			p.conns[key] = c
			p.mu.Unlock()
			p.dial(ctx, t, c)
			if c.err != nil {
				return nil, c.err
			}
			return c, nil
		}
		c.users++
		if c.idle != nil {
			c.idle.Stop()
		}
		p.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			p.release(c)
			return nil, ctx.Err()
		}
		if c.err != nil {
			p.release(c)
			if c.mine && ctx.Err() == nil {
				continue // the dialler gave up; try again for ourselves
			}
			return nil, c.err
		}
		if t.HostKey != nil && !bytes.Equal(t.HostKey.Marshal(), c.hostKey.Marshal()) {
			// Re-pinned since this connection was verified: verify afresh.
			p.discard(c)
			p.release(c)
			continue
		}
		if !p.alive(c) {
			p.discard(c)
			p.release(c)
			continue
		}
		return c, nil
	}
}

// dial fills in c and wakes whoever waits for it.
func (p *Pool) dial(ctx context.Context, t Target, c *conn) {
	defer close(c.ready)
	fail := func(err error) {
		c.err, c.mine = err, ctx.Err() != nil
		p.mu.Lock()
		p.forgetLocked(c)
		c.users--
		p.mu.Unlock()
	}
	if err := p.acquireSlot(ctx); err != nil {
		fail(fmt.Errorf("connect to %s: wait for a connection slot: %w", t.name(), err))
		return
	}
	client, key, b, err := p.connect(ctx, t)
	if err != nil {
		<-p.slots
		fail(err)
		return
	}
	c.client, c.hostKey = client, key
	p.countOpen(1)
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	go func() {
		client.Wait()
		p.mu.Lock()
		p.forgetLocked(c)
		p.mu.Unlock()
		p.countOpen(-1)
		<-p.slots
		p.releaseBastion(b)
		p.log.Debug("ssh connection closed", "host", t.name())
	}()
	if closed {
		client.Close()
	}
}

// release gives a connection back; the last user starts its idle timer.
func (p *Pool) release(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.users--
	c.lastUsed = time.Now()
	if c.users > 0 || c.gone || c.client == nil {
		return
	}
	close(p.idleWake) // a dial waiting for a slot may evict this one
	p.idleWake = make(chan struct{})
	c.idle = time.AfterFunc(p.cfg.IdleTimeout, func() {
		p.mu.Lock()
		expired := c.users == 0 && !c.gone
		if expired {
			p.forgetLocked(c)
		}
		p.mu.Unlock()
		if expired {
			c.client.Close()
		}
	})
}

// discard stops handing out c and closes it once nobody else uses it; a dead
// connection is closed at once.
func (p *Pool) discard(c *conn) {
	p.mu.Lock()
	p.forgetLocked(c)
	p.mu.Unlock()
	c.client.Close()
}

func (p *Pool) forgetLocked(c *conn) {
	c.gone = true
	if p.conns[c.key] == c {
		delete(p.conns, c.key)
	}
}

// alive probes a connection that sat unused for a while.
func (p *Pool) alive(c *conn) bool {
	p.mu.Lock()
	stale := time.Since(c.lastUsed) > probeAfter
	p.mu.Unlock()
	if !stale {
		return true
	}
	ok := make(chan bool, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		ok <- err == nil
	}()
	select {
	case r := <-ok:
		return r
	case <-time.After(p.cfg.ConnectTimeout):
		return false
	}
}

// acquireSlot takes a connection slot, closing the longest-idle connection
// when every slot is in use.
func (p *Pool) acquireSlot(ctx context.Context) error {
	for {
		select {
		case p.slots <- struct{}{}:
			return nil
		default:
		}
		p.mu.Lock()
		wake := p.idleWake
		p.mu.Unlock()
		p.evictIdle()
		select {
		case p.slots <- struct{}{}:
			return nil
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *Pool) countOpen(d int32) {
	n := p.open.Add(d)
	for m := p.mostOpen.Load(); n > m && !p.mostOpen.CompareAndSwap(m, n); m = p.mostOpen.Load() {
	}
}

func (p *Pool) evictIdle() {
	p.mu.Lock()
	var oldest *conn
	for _, c := range p.conns {
		if c.users == 0 && c.client != nil && (oldest == nil || c.lastUsed.Before(oldest.lastUsed)) {
			oldest = c
		}
	}
	if oldest != nil {
		p.forgetLocked(oldest)
	}
	p.mu.Unlock()
	if oldest != nil {
		oldest.client.Close() // its watcher frees the slot
	}
}

// connect dials and verifies a target, through its bastion if it has one.
func (p *Pool) connect(ctx context.Context, t Target) (*ssh.Client, ssh.PublicKey, *bastion, error) {
	name, addr := t.name(), t.addr()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	var b *bastion
	var nc net.Conn
	var err error
	if t.Bastion != "" {
		b, err = p.acquireBastion(ctx, t)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("connect to %s via %s: %w", name, t.Bastion, err)
		}
		nc, err = b.client.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		p.releaseBastion(b)
		return nil, nil, nil, fmt.Errorf("connect to %s (%s): %w", name, addr, err)
	}
	pinned := t.HostKey
	if pinned == nil {
		// A key accepted on first use holds for this pool's later
		// connections, until the caller pins one.
		p.mu.Lock()
		pinned = p.learned[t.key()]
		p.mu.Unlock()
	}
	v := &verifier{name: name, pinned: pinned, knownHosts: p.cfg.KnownHosts, tofu: t.TOFU}
	if p.cfg.OnTOFU != nil {
		v.onTOFU = func(k ssh.PublicKey) { p.cfg.OnTOFU(name, k) }
	}
	client, err := p.handshake(ctx, nc, addr, t.user(), v)
	if err != nil {
		p.releaseBastion(b)
		return nil, nil, nil, fmt.Errorf("connect to %s (%s): %w", name, addr, err)
	}
	if pinned == nil {
		p.log.Info("ssh host key accepted without a pin", "host", name, "fingerprint", ssh.FingerprintSHA256(v.accepted))
		if t.TOFU {
			p.mu.Lock()
			p.learned[t.key()] = v.accepted
			p.mu.Unlock()
		}
	}
	return client, v.accepted, b, nil
}

// handshake runs the SSH handshake on nc, abandoning it when ctx ends (a
// listener that never speaks SSH would otherwise hold us forever).
func (p *Pool) handshake(ctx context.Context, nc net.Conn, addr, user string, v *verifier) (*ssh.Client, error) {
	auth, done, err := p.cfg.authMethods()
	defer done()
	if err != nil {
		nc.Close()
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: v.check}
	if v.pinned != nil {
		// Ask for the pinned key's type: a host with several keys would
		// otherwise show another one and look like a mismatch.
		cfg.HostKeyAlgorithms = algorithmsFor(v.pinned)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() {
		if err == nil {
			cc.Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

func algorithmsFor(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

// acquireBastion returns the shared connection to a target's bastion.
func (p *Pool) acquireBastion(ctx context.Context, t Target) (*bastion, error) {
	user, addr, spec, err := t.bastion()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	b := p.bastions[spec]
	if b == nil {
		b = &bastion{spec: spec, ready: make(chan struct{}), users: 1}
		p.bastions[spec] = b
		p.mu.Unlock()
		b.client, b.err = p.dialBastion(ctx, user, addr, spec)
		if b.err != nil {
			p.mu.Lock()
			if p.bastions[spec] == b {
				delete(p.bastions, spec)
			}
			p.mu.Unlock()
		}
		close(b.ready)
		if b.err != nil {
			return nil, b.err
		}
		return b, nil
	}
	b.users++
	p.mu.Unlock()
	select {
	case <-b.ready:
	case <-ctx.Done():
		p.releaseBastion(b)
		return nil, ctx.Err()
	}
	if b.err == nil {
		return b, nil
	}
	p.releaseBastion(b)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, b.err
}

func (p *Pool) dialBastion(ctx context.Context, user, addr, spec string) (*ssh.Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to bastion %s: %w", spec, err)
	}
	v := &verifier{name: "bastion " + spec, pinned: p.cfg.BastionKeys[addr], knownHosts: p.cfg.KnownHosts}
	client, err := p.handshake(ctx, nc, addr, user, v)
	if err != nil {
		return nil, fmt.Errorf("connect to bastion %s: %w", spec, err)
	}
	go func() {
		client.Wait()
		p.mu.Lock()
		if p.bastions[spec] != nil && p.bastions[spec].client == client {
			delete(p.bastions, spec)
		}
		p.mu.Unlock()
	}()
	return client, nil
}

// releaseBastion drops one user; the last one closes the connection.
func (p *Pool) releaseBastion(b *bastion) {
	if b == nil {
		return
	}
	p.mu.Lock()
	b.users--
	last := b.users == 0
	if last && p.bastions[b.spec] == b {
		delete(p.bastions, b.spec)
	}
	p.mu.Unlock()
	if last && b.client != nil {
		b.client.Close()
	}
}
