package executor_test

// simProxy puts an SSH front in front of each fleetsim host that understands the command line
// events/sshx sends — `exec [sudo -n] setsid -w sh -c '…patchfleet-pid $$ <token>…; exec sh -s'`
// — which fleetsim does not (it answers `sh -s` and `sudo -n sh -s` only). The front prints
// the pid line sshx expects and forwards the script to the simulated host as `sh -s` over a
// connection of its own; a dropped or rebooting host drops the client's connection too. It is
// test harness only, to be removed once fleetsim accepts the sshx wrapper.

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

type simProxy struct {
	ln      net.Listener
	key     ssh.Signer
	host    *fleetsim.Host
	client  ssh.Signer
	cfg     *ssh.ServerConfig
	pid     atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
	Started atomic.Int64 // scripts forwarded
	Open    atomic.Int64 // scripts running now
}

var pidLine = regexp.MustCompile(`patchfleet-pid \$\$ ([0-9a-f]+)`)

func newSimProxy(t testing.TB, h *fleetsim.Host, client ssh.Signer) *simProxy {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &simProxy{ln: ln, key: key, host: h, client: client, conns: map[net.Conn]struct{}{}}
	p.pid.Store(1000)
	want := client.PublicKey().Marshal()
	p.cfg = &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(want) {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	p.cfg.AddHostKey(key)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

func (p *simProxy) Port() int              { return p.ln.Addr().(*net.TCPAddr).Port }
func (p *simProxy) HostKey() ssh.PublicKey { return p.key.PublicKey() }

func (p *simProxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *simProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
	}
}

func (p *simProxy) handle(c net.Conn) {
	defer c.Close()
	// Dial the simulated host first: a host that is down refuses the client too.
	up, err := ssh.Dial("tcp", p.host.Addr(), &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(p.client)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()}) // the front is the host the client verifies
	if err != nil {
		return
	}
	defer up.Close()
	go func() { up.Wait(); c.Close() }() // the host dropped us: drop the client
	sc, chans, reqs, err := ssh.NewServerConn(c, p.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go p.session(up, ch, creqs)
	}
}

func (p *simProxy) session(up *ssh.Client, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" {
			r.Reply(false, nil)
			continue
		}
		var ex struct{ Command string }
		if err := ssh.Unmarshal(r.Payload, &ex); err != nil {
			r.Reply(false, nil)
			return
		}
		r.Reply(true, nil)
		p.exec(up, ch, ex.Command)
		return
	}
}

func exitStatus(ch ssh.Channel, n int) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(n)}))
}

func (p *simProxy) exec(up *ssh.Client, ch ssh.Channel, cmd string) {
	m := pidLine.FindStringSubmatch(cmd)
	if m == nil {
		// sshx's kill of a cancelled script: the simulated op cannot be stopped; say done.
		exitStatus(ch, 0)
		return
	}
	upCmd := "sh -s"
	if strings.HasPrefix(cmd, "exec sudo -n ") {
		upCmd = "sudo -n sh -s"
	}
	io.WriteString(ch, "patchfleet-pid "+strconv.FormatInt(p.pid.Add(1), 10)+" "+m[1]+"\n")
	s, err := up.NewSession()
	if err != nil {
		exitStatus(ch, 255)
		return
	}
	defer s.Close()
	// sshx sends "{\n<script>\n} </dev/null\n"; fleetsim dispatches on the script's header.
	body, err := io.ReadAll(io.LimitReader(ch, 1<<20))
	if err != nil {
		exitStatus(ch, 255)
		return
	}
	script := strings.TrimSuffix(strings.TrimPrefix(string(body), "{\n"), "\n} </dev/null\n")
	s.Stdin, s.Stdout, s.Stderr = strings.NewReader(script), ch, ch.Stderr()
	p.Started.Add(1)
	p.Open.Add(1)
	err = s.Run(upCmd)
	p.Open.Add(-1)
	var ee *ssh.ExitError
	switch {
	case err == nil:
		exitStatus(ch, 0)
	case errorsAs(err, &ee):
		exitStatus(ch, ee.ExitStatus())
	}
	// Anything else: the host dropped the connection; handle closes the client's.
}

func errorsAs(err error, ee **ssh.ExitError) bool {
	e, ok := err.(*ssh.ExitError)
	if ok {
		*ee = e
	}
	return ok
}
