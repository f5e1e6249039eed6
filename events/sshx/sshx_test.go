package sshx

import (
	"bytes"
	"context"
	"crypto/ed25519"
	cryptorand "crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newPool(t *testing.T, client ssh.Signer, mod func(*Config)) *Pool {
	t.Helper()
	cfg := Config{Signers: []ssh.Signer{client}, ConnectTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if mod != nil {
		mod(&cfg)
	}
	p := NewPool(cfg)
	t.Cleanup(p.Close)
	return p
}

func TestRunPinnedKey(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	res, err := p.Run(t.Context(), s.target(), Command{Script: "echo out; echo err >&2; printf '%s\\n' \"it's\"; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "out\nit's\n" || string(res.Stderr) != "err\n" || res.ExitStatus != 3 {
		t.Errorf("got %+v", res)
	}
}

func TestScriptCannotReadItsOwnRest(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	// cat would swallow the rest of the script if it shared sh -s's stdin.
	res, err := p.Run(t.Context(), s.target(), Command{Script: "cat\necho after"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "after\n" {
		t.Errorf("stdout %q, want %q", res.Stdout, "after\n")
	}
}

func TestHostKeyMismatch(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	tg := s.target()
	wrong := newSigner(t).PublicKey()
	tg.HostKey = wrong
	_, err := p.Run(t.Context(), tg, Command{Script: "echo ran"})
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("err = %v, want *HostKeyMismatchError", err)
	}
	if mm.Expected != ssh.FingerprintSHA256(wrong) || mm.Presented != ssh.FingerprintSHA256(s.hostKey.PublicKey()) || mm.Host != tg.Name {
		t.Errorf("got %+v", mm)
	}
	if n := s.execs.Load(); n != 0 {
		t.Errorf("%d commands ran on a host with the wrong key", n)
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	var mu sync.Mutex
	var got []ssh.PublicKey
	p := newPool(t, client, func(c *Config) {
		c.OnTOFU = func(_ string, k ssh.PublicKey) { mu.Lock(); got = append(got, k); mu.Unlock() }
	})
	tg := s.target()
	tg.HostKey = nil
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); !errors.Is(err, ErrUnknownHostKey) {
		t.Fatalf("without TOFU: err = %v, want ErrUnknownHostKey", err)
	}
	tg.TOFU = true
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !bytes.Equal(got[0].Marshal(), s.hostKey.PublicKey().Marshal()) {
		t.Errorf("OnTOFU got %d keys, want the server's", len(got))
	}
}

func TestKnownHosts(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	other := newTestServer(t, client)
	file := filepath.Join(t.TempDir(), "known_hosts")
	lines := knownhosts.Line([]string{s.ln.Addr().String()}, s.hostKey.PublicKey()) + "\n" +
		knownhosts.Line([]string{other.ln.Addr().String()}, newSigner(t).PublicKey()) + "\n"
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	kh, err := KnownHosts(file)
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, client, func(c *Config) { c.KnownHosts = kh })
	tg := s.target()
	tg.HostKey = nil
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
	tg = other.target()
	tg.HostKey = nil
	var mm *HostKeyMismatchError
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); !errors.As(err, &mm) {
		t.Fatalf("err = %v, want *HostKeyMismatchError", err)
	}
}

func TestConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept() // and never say a word
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	p := newPool(t, newSigner(t), func(c *Config) { c.ConnectTimeout = 200 * time.Millisecond })
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = p.Run(t.Context(), Target{Name: "mute", Address: "127.0.0.1", Port: port, HostKey: newSigner(t).PublicKey()}, Command{Script: "true"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if !strings.Contains(err.Error(), "mute") {
		t.Errorf("error %q does not name the host", err)
	}
}

// processesWith lists local processes whose command line contains s.
func processesWith(s string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(s)) {
			found = append(found, filepath.Base(d)+": "+string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	return found
}

func waitGone(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(s)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still running after cancellation: %v", processesWith(s))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startedWriter signals when the script printed its first output.
type startedWriter struct {
	once sync.Once
	ch   chan struct{}
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.ch) })
	return len(p), nil
}

func TestCancelKillsTheProcessGroup(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	mark := fmt.Sprintf("1000.%d", rand.IntN(1e9))
	ctx, cancel := context.WithCancel(t.Context())
	w := &startedWriter{ch: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, s.target(), Command{Output: w, Script: "sleep " + mark + "1 &\necho started\nsleep " + mark + "2"})
		errc <- err
	}()
	select {
	case <-w.ch:
	case err := <-errc:
		t.Fatalf("finished early: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(mark)) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("sleeps running: %v, want 2", processesWith(mark))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	waitGone(t, mark) // both: the foreground sleep and the background one
}

func TestCommandTimeout(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, func(c *Config) { c.CommandTimeout = time.Hour })
	mark := fmt.Sprintf("1000.%d", rand.IntN(1e9))
	res, err := p.Run(t.Context(), s.target(), Command{Timeout: 300 * time.Millisecond, Script: "echo partial; sleep " + mark})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if string(res.Stdout) != "partial\n" {
		t.Errorf("partial output %q", res.Stdout)
	}
	waitGone(t, mark)
	// The connection survives a cancelled command.
	if _, err := p.Run(t.Context(), s.target(), Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestConnectionReuse(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			res, err := p.Run(t.Context(), s.target(), Command{Script: "echo " + strconv.Itoa(i)})
			if err == nil && string(res.Stdout) != strconv.Itoa(i)+"\n" {
				err = fmt.Errorf("command %d: stdout %q", i, res.Stdout)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("20 commands used %d connections, want 1", n)
	}
}

func TestReconnectAfterDrop(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	for i := range 3 {
		if _, err := p.Run(t.Context(), s.target(), Command{Script: "true"}); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		s.dropAll()
	}
	if n := s.accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (one per drop)", n)
	}
}

func TestIdleClose(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	if _, err := p.Run(t.Context(), s.target(), Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBoundedConnections(t *testing.T) {
	client := newSigner(t)
	var servers []*testServer
	for range 5 {
		servers = append(servers, newTestServer(t, client))
	}
	p := newPool(t, client, func(c *Config) { c.MaxConns = 2 })
	var wg sync.WaitGroup
	for _, s := range servers {
		for range 2 {
			wg.Go(func() {
				if _, err := p.Run(t.Context(), s.target(), Command{Script: "sleep 0.1"}); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if n := p.mostOpen.Load(); n != 2 {
		t.Errorf("at most %d connections were open at once, want 2", n)
	}
	var total int32
	for _, s := range servers {
		total += s.accepted.Load()
	}
	if total != 5 {
		t.Errorf("%d connections for 5 hosts", total)
	}
}

func TestOutputCap(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	var live bytes.Buffer
	res, err := p.Run(t.Context(), s.target(), Command{Script: "seq 1 100000; echo small >&2", MaxOutput: 1000, Output: &live})
	if err != nil {
		t.Fatal(err)
	}
	full, _ := exec.Command("seq", "1", "100000").Output()
	if !res.StdoutTruncated || !bytes.Equal(res.Stdout, full[len(full)-1000:]) {
		t.Errorf("stdout: truncated=%v, %d bytes ending %q", res.StdoutTruncated, len(res.Stdout), res.Stdout[max(0, len(res.Stdout)-20):])
	}
	if res.StderrTruncated || string(res.Stderr) != "small\n" {
		t.Errorf("stderr: truncated=%v %q", res.StderrTruncated, res.Stderr)
	}
	if live.Len() != len(full)+len("small\n") {
		t.Errorf("live output got %d bytes, want %d", live.Len(), len(full)+6)
	}
}

func TestTail(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		max := 1 + r.IntN(64)
		tl := tail{max: max, hint: r.IntN(80)}
		var all []byte
		for range r.IntN(20) {
			p := make([]byte, r.IntN(100))
			for i := range p {
				p[i] = byte('a' + r.IntN(26))
			}
			tl.write(p)
			all = append(all, p...)
		}
		want := all[len(all)-min(len(all), max):]
		if got := tl.bytes(); !bytes.Equal(got, want) {
			t.Fatalf("max %d: got %q, want %q", max, got, want)
		}
		if tl.truncated != (len(all) > max) {
			t.Fatalf("max %d, %d written: truncated=%v", max, len(all), tl.truncated)
		}
		// Output within the hint lands in the first buffer: it never grew.
		if fits := min(tl.hint, max); len(all) > 0 && len(all) <= fits && cap(tl.buf) != fits {
			t.Fatalf("hint %d, max %d, %d written: capacity %d, want %d", tl.hint, max, len(all), cap(tl.buf), fits)
		}
	}
}

func TestBastion(t *testing.T) {
	client := newSigner(t)
	jump := newTestServer(t, client)
	s := newTestServer(t, client)
	tg := s.target()
	tg.Bastion = "jumper@" + jump.ln.Addr().String()

	p := newPool(t, client, nil)
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); !errors.Is(err, ErrUnknownHostKey) {
		t.Fatalf("unpinned bastion: err = %v, want ErrUnknownHostKey", err)
	}
	p = newPool(t, client, func(c *Config) {
		c.BastionKeys = map[string]ssh.PublicKey{jump.ln.Addr().String(): newSigner(t).PublicKey()}
	})
	var mm *HostKeyMismatchError
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); !errors.As(err, &mm) {
		t.Fatalf("wrong bastion key: err = %v, want *HostKeyMismatchError", err)
	}
	p = newPool(t, client, func(c *Config) {
		c.BastionKeys = map[string]ssh.PublicKey{jump.ln.Addr().String(): jump.hostKey.PublicKey()}
	})
	res, err := p.Run(t.Context(), tg, Command{Script: "echo behind"})
	if err != nil || string(res.Stdout) != "behind\n" {
		t.Fatalf("via bastion: %q, %v", res.Stdout, err)
	}
	if jump.execs.Load() != 0 || s.execs.Load() != 1 {
		t.Errorf("execs: bastion %d, target %d", jump.execs.Load(), s.execs.Load())
	}
	// A wrong target key behind a good bastion is still refused.
	tg.HostKey = newSigner(t).PublicKey()
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); !errors.As(err, &mm) {
		t.Fatalf("wrong target key: err = %v", err)
	}
}

func TestParseBastion(t *testing.T) {
	for in, want := range map[string]string{
		"ops@jump.example:2222": "ops@jump.example:2222",
		"jump.example":          "root@jump.example:22",
		"ops@10.0.0.1":          "ops@10.0.0.1:22",
		"[::1]:22":              "root@[::1]:22",
	} {
		_, _, got, err := ParseBastion(in)
		if err != nil || got != want {
			t.Errorf("ParseBastion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "@host", "ops@host:0", "ops@host:x"} {
		if _, _, _, err := ParseBastion(bad); err == nil {
			t.Errorf("ParseBastion(%q) accepted", bad)
		}
	}
}

func TestTOFUKeyHoldsForReconnects(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	tg := s.target()
	tg.HostKey, tg.TOFU = nil, true
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
	// The host comes back with another key before the caller pinned one.
	s.dropAll()
	s.hostKey = newSigner(t)
	s.ln.Close()
	s2 := &testServer{t: t, hostKey: s.hostKey, clientKey: client}
	ln, err := net.Listen("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s2.ln = ln
	t.Cleanup(func() { ln.Close(); s2.dropAll() })
	go s2.serve()
	if tg.Address+":"+strconv.Itoa(tg.Port) != ln.Addr().String() {
		t.Fatal("the new server is not at the old address")
	}
	var mm *HostKeyMismatchError
	if _, err := p.Run(t.Context(), tg, Command{Script: "true"}); !errors.As(err, &mm) {
		t.Fatalf("err = %v, want *HostKeyMismatchError", err)
	}
}

func TestAgentAuth(t *testing.T) {
	keyring := agent.NewKeyring()
	_, priv, _ := ed25519.GenerateKey(cryptorand.Reader)
	client, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, client)
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	p := NewPool(Config{AgentSocket: sock})
	defer p.Close()
	if _, err := p.Run(t.Context(), s.target(), Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSigners(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(cryptorand.Reader)
	plain, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	locked, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "plain"), pem.EncodeToMemory(plain), 0o600)
	os.WriteFile(filepath.Join(dir, "locked"), pem.EncodeToMemory(locked), 0o600)
	signers, err := LoadSigners(filepath.Join(dir, "plain"))
	if err != nil || len(signers) != 1 {
		t.Fatalf("plain key: %v", err)
	}
	if _, err := LoadSigners(filepath.Join(dir, "locked")); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("passphrase-protected key: err = %v", err)
	}
	if _, err := LoadSigners(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file accepted")
	}
}

func TestForgetDialsAgain(t *testing.T) {
	client := newSigner(t)
	s := newTestServer(t, client)
	p := newPool(t, client, nil)
	p.Forget(s.target()) // nothing to forget
	run := func() error {
		_, err := p.Run(t.Context(), s.target(), Command{Script: "true"})
		return err
	}
	for range 2 {
		if err := run(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections before Forget, want 1", n)
	}

	// A command running on the forgotten connection fails with it.
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := p.Run(t.Context(), s.target(), Command{Script: "echo go; sleep 30", Output: writerFunc(func() { once.Do(func() { close(started) }) })})
		done <- err
	}()
	<-started
	p.Forget(s.target())
	select {
	case err := <-done:
		if err == nil {
			t.Error("a command on the forgotten connection succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a command on the forgotten connection still runs")
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2: Forget must make the next Run dial", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.open.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want 1 (the forgotten one closed)", p.open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writerFunc calls f on every write.
type writerFunc func()

func (f writerFunc) Write(b []byte) (int, error) {
	f()
	return len(b), nil
}
