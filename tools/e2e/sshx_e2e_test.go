//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/tools/testfleet"
)

// TestSshx runs the SSH transport against real OpenSSH servers.
func TestSshx(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("testfleet needs root")
	}
	fleet := testfleet.New(t, 3)
	hosts := fleet.Hosts()
	newPool := func(t *testing.T, mod func(*sshx.Config)) *sshx.Pool {
		cfg := sshx.Config{
			Signers:        []ssh.Signer{fleet.ClientSigner()},
			ConnectTimeout: 10 * time.Second,
			Logger:         slog.New(slog.NewTextHandler(t.Output(), nil)),
		}
		if mod != nil {
			mod(&cfg)
		}
		p := sshx.NewPool(cfg)
		t.Cleanup(p.Close)
		return p
	}
	target := func(h *testfleet.Host) sshx.Target {
		return sshx.Target{Name: h.Name(), Address: "127.0.0.1", Port: h.Port(), HostKey: h.HostKey()}
	}

	t.Run("PinnedKey", func(t *testing.T) {
		p := newPool(t, nil)
		res, err := p.Run(t.Context(), target(hosts[0]), sshx.Command{Script: "hostname; echo oops >&2; exit 7"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(res.Stdout)) != hosts[0].Name() || string(res.Stderr) != "oops\n" || res.ExitStatus != 7 {
			t.Errorf("got stdout %q stderr %q exit %d", res.Stdout, res.Stderr, res.ExitStatus)
		}
	})

	t.Run("KeyMismatch", func(t *testing.T) {
		p := newPool(t, nil)
		tg := target(hosts[0])
		tg.HostKey = hosts[1].HostKey()
		_, err := p.Run(t.Context(), tg, sshx.Command{Script: "touch /tmp/mismatch-ran"})
		var mm *sshx.HostKeyMismatchError
		if !errors.As(err, &mm) {
			t.Fatalf("err = %v, want *HostKeyMismatchError", err)
		}
		if mm.Presented != ssh.FingerprintSHA256(hosts[0].HostKey()) || mm.Expected != ssh.FingerprintSHA256(hosts[1].HostKey()) {
			t.Errorf("got %+v", mm)
		}
		res, err := hosts[0].Run(t.Context(), "test -e /tmp/mismatch-ran")
		if err != nil || res.ExitStatus == 0 {
			t.Errorf("the command ran on a host with the wrong key (%v)", err)
		}
	})

	t.Run("CancelKillsRemoteProcesses", func(t *testing.T) {
		p := newPool(t, nil)
		cancelKills(t, p, target(hosts[0]), hosts[0])
	})

	t.Run("Bastion", func(t *testing.T) {
		jump := hosts[2]
		tg := target(hosts[0])
		tg.Bastion = "root@" + jump.Addr()
		p := newPool(t, func(c *sshx.Config) {
			c.BastionKeys = map[string]ssh.PublicKey{jump.Addr(): hosts[1].HostKey()}
		})
		var mm *sshx.HostKeyMismatchError
		if _, err := p.Run(t.Context(), tg, sshx.Command{Script: "true"}); !errors.As(err, &mm) || mm.Addr != jump.Addr() {
			t.Fatalf("wrong bastion key: err = %v, want a mismatch for the bastion", err)
		}
		p = newPool(t, nil)
		if _, err := p.Run(t.Context(), tg, sshx.Command{Script: "true"}); !errors.Is(err, sshx.ErrUnknownHostKey) {
			t.Fatalf("unpinned bastion: err = %v, want ErrUnknownHostKey", err)
		}
		p = newPool(t, func(c *sshx.Config) {
			c.BastionKeys = map[string]ssh.PublicKey{jump.Addr(): jump.HostKey()}
		})
		res, err := p.Run(t.Context(), tg, sshx.Command{Script: "hostname"})
		if err != nil || strings.TrimSpace(string(res.Stdout)) != hosts[0].Name() {
			t.Fatalf("via bastion: %q, %v", res.Stdout, err)
		}
		bad := tg
		bad.HostKey = hosts[1].HostKey()
		if _, err := p.Run(t.Context(), bad, sshx.Command{Script: "true"}); !errors.As(err, &mm) || mm.Host != hosts[0].Name() {
			t.Fatalf("wrong target key behind the bastion: err = %v", err)
		}
		cancelKills(t, p, tg, hosts[0])
		p.Close()

		// The path really goes through the bastion: without it, no way in.
		if err := jump.PowerOff(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer func() {
			jump.PowerOn()
			if err := jump.WaitUp(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		if err := jump.WaitState(t.Context(), testfleet.StateOff); err != nil {
			t.Fatal(err)
		}
		p = newPool(t, func(c *sshx.Config) {
			c.BastionKeys = map[string]ssh.PublicKey{jump.Addr(): jump.HostKey()}
		})
		if _, err := p.Run(t.Context(), tg, sshx.Command{Script: "true"}); err == nil {
			t.Fatal("reached the target with its bastion off")
		}
	})

	t.Run("Sudo", func(t *testing.T) {
		h := hosts[1]
		for _, u := range []string{"deploy", "nosudo"} {
			// A locked account cannot log in by key without PAM: give it an
			// unusable password instead of none.
			mustRun(t, h, fmt.Sprintf("useradd -m -s /bin/sh %[1]s && usermod -p '*' %[1]s && "+
				"install -d -m 700 -o %[1]s -g %[1]s /home/%[1]s/.ssh && "+
				"install -m 600 -o %[1]s -g %[1]s /root/.ssh/authorized_keys /home/%[1]s/.ssh/", u))
		}
		mustRun(t, h, "echo 'deploy ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy")
		p := newPool(t, nil)
		tg := target(h)
		tg.User, tg.Sudo = "deploy", true
		// The script runs as root, and the run's token is not left among its arguments.
		res, err := p.Run(t.Context(), tg, sshx.Command{Script: "id -un; echo \"args $#\""})
		if err != nil || string(res.Stdout) != "root\nargs 0\n" {
			t.Fatalf("with sudo: %q %q, %v", res.Stdout, res.Stderr, err)
		}
		res, err = p.Run(t.Context(), tg, sshx.Command{Script: "id -un", NoSudo: true})
		if err != nil || string(res.Stdout) != "deploy\n" {
			t.Fatalf("without sudo: %q, %v", res.Stdout, err)
		}
		// Cancelling a command run as root through sudo kills it too.
		cancelKills(t, p, tg, h)

		tg.User = "nosudo"
		res, err = p.Run(t.Context(), tg, sshx.Command{Script: "touch /tmp/nosudo-ran"})
		if !errors.Is(err, sshx.ErrNotStarted) || !strings.Contains(string(res.Stderr), "password") {
			t.Fatalf("user without sudo rights: %v (stderr %q), want ErrNotStarted", err, res.Stderr)
		}
	})

	t.Run("Memory", func(t *testing.T) {
		// Raw connections: what one idle connection costs the client.
		p := newPool(t, nil)
		const conns = 30
		before := heap()
		var clients []*ssh.Client
		for range conns {
			c, err := p.Dial(t.Context(), target(hosts[0]))
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
		perConn := (heap() - before) / conns
		for _, c := range clients {
			c.Close()
		}

		// Sessions: 9 commands at once on each of two hosts (OpenSSH allows
		// 10 sessions per connection; one is kept back for kills).
		p = newPool(t, nil)
		for _, h := range hosts[:2] {
			if _, err := p.Run(t.Context(), target(h), sshx.Command{Script: "true"}); err != nil {
				t.Fatal(err)
			}
		}
		const perHost = 9
		before = heap()
		var started, wg sync.WaitGroup
		for _, h := range hosts[:2] {
			for range perHost {
				started.Add(1)
				wg.Go(func() {
					w := &signalWriter{f: started.Done}
					if _, err := p.Run(t.Context(), target(h), sshx.Command{Script: "echo go; sleep 3", Output: w}); err != nil {
						t.Error(err)
					}
				})
			}
		}
		started.Wait()
		perSession := (heap() - before) / (2 * perHost)
		wg.Wait()
		// A figure, not an assertion: heap deltas move with the garbage other tests leave, and
		// the executor's budget (1,000 sessions in 300 MB) is measured by its benchmark.
		t.Logf("client heap and stacks: %d KiB per connection, %d KiB per running command",
			int64(perConn)>>10, int64(perSession)>>10)
	})
}

// cancelKills starts a long command on tg, cancels it, and checks that no
// process of it is left on h: the foreground sleep and a background one.
func cancelKills(t *testing.T, p *sshx.Pool, tg sshx.Target, h *testfleet.Host) {
	t.Helper()
	n := rand.IntN(1e9)
	mark := fmt.Sprintf("1000.%d", n)
	pattern := fmt.Sprintf("1000[.]%d", n) // does not match the grep looking for it
	count := func() int {
		res, err := h.Run(context.Background(), "grep -l '"+pattern+"' /proc/[0-9]*/cmdline 2>/dev/null | wc -l")
		if err != nil {
			t.Fatal(err)
		}
		var c int
		fmt.Sscan(res.Stdout, &c)
		return c
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, tg, sshx.Command{Script: "sleep " + mark + "1 &\nsleep " + mark + "2"})
		errc <- err
	}()
	waitFor(t, "both sleeps to start", func() bool { return count() == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	waitFor(t, "the cancelled command's processes to be gone", func() bool { return count() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustRun(t *testing.T, h *testfleet.Host, cmd string) {
	t.Helper()
	if _, err := h.MustRun(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse // goroutines are part of the cost
}

type signalWriter struct {
	once sync.Once
	f    func()
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(w.f)
	return len(p), nil
}
