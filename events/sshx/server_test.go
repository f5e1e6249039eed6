package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testServer is an SSH server in the test process that runs exec requests
// with the local /bin/sh and forwards direct-tcpip channels (for bastions).
type testServer struct {
	t         *testing.T
	ln        net.Listener
	hostKey   ssh.Signer
	clientKey ssh.Signer

	accepted atomic.Int32 // TCP connections
	execs    atomic.Int32 // exec requests that ran
	active   atomic.Int32 // open connections now
	maxConc  atomic.Int32 // most open connections at once

	mu    sync.Mutex
	conns []net.Conn
}

func newSigner(t testing.TB) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestServer(t *testing.T, clientKey ssh.Signer) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, hostKey: newSigner(t), clientKey: clientKey}
	t.Cleanup(func() { ln.Close(); s.dropAll() })
	go s.serve()
	return s
}

func (s *testServer) target() Target {
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return Target{Name: "test-" + port, Address: host, Port: p, User: "tester", HostKey: s.hostKey.PublicKey()}
}

func (s *testServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *testServer) serve() {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == string(s.clientKey.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown client key")
		},
	}
	cfg.AddHostKey(s.hostKey)
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		n := s.active.Add(1)
		for {
			m := s.maxConc.Load()
			if n <= m || s.maxConc.CompareAndSwap(m, n) {
				break
			}
		}
		s.mu.Lock()
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		go func() {
			defer s.active.Add(-1)
			defer nc.Close()
			sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
			if err != nil {
				return
			}
			defer sc.Close()
			go ssh.DiscardRequests(reqs)
			for nch := range chans {
				switch nch.ChannelType() {
				case "session":
					go s.session(nch)
				case "direct-tcpip":
					go forward(nch)
				default:
					nch.Reject(ssh.UnknownChannelType, "no")
				}
			}
		}()
	}
}

func (s *testServer) session(nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			req.Reply(false, nil)
			continue
		}
		req.Reply(true, nil)
		s.execs.Add(1)
		go func() {
			cmd := exec.Command("/bin/sh", "-c", p.Command)
			// As sshd: the session's shell leads a session and process group of its own.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
			err := cmd.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					sig := map[syscall.Signal]string{syscall.SIGKILL: "KILL", syscall.SIGTERM: "TERM"}[ws.Signal()]
					ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
						Signal     string
						CoreDumped bool
						Error      string
						Lang       string
					}{Signal: sig}))
					ch.Close()
					return
				}
			}
			status := uint32(0)
			if ee != nil {
				status = uint32(ee.ExitCode())
			}
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			ch.Close()
		}()
	}
}

func forward(nch ssh.NewChannel) {
	var p struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &p); err != nil {
		nch.Reject(ssh.ConnectionFailed, "bad payload")
		return
	}
	nc, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		nc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go func() { io.Copy(nc, ch); nc.Close() }()
	io.Copy(ch, nc)
	ch.Close()
}
