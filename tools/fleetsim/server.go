package fleetsim

import (
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxScript bounds a script read from stdin; ours are a few kilobytes.
const maxScript = 1 << 20

func (h *Host) serve(ln net.Listener) {
	defer h.fleet.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed: shut down or rebooting
		}
		h.mu.Lock()
		if !h.up || h.ln != ln {
			h.mu.Unlock()
			c.Close()
			return
		}
		if h.conns == nil {
			h.conns = map[net.Conn]struct{}{}
		}
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		h.fleet.wg.Add(1)
		go h.handleConn(c)
	}
}

func (h *Host) forget(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	c.Close()
}

func (h *Host) handleConn(c net.Conn) {
	defer h.fleet.wg.Done()
	defer h.forget(c)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // handshake
	sc, chans, reqs, err := ssh.NewServerConn(c, h.config)
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		h.fleet.wg.Add(1)
		go h.session(c, ch, creqs)
	}
}

// session serves one exec. Accepted commands are the ones the scanner and
// the executor send: "sh -s" and "sudo -n sh -s" with the script on stdin.
func (h *Host) session(c net.Conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer h.fleet.wg.Done()
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "env":
			_ = req.Reply(true, nil) // accepted and ignored, like AcceptEnv
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			h.exec(c, ch, cmd.Command)
			return
		default:
			_ = req.Reply(false, nil) // no shell, no pty, no subsystems
		}
	}
}

func (h *Host) exec(c net.Conn, ch ssh.Channel, command string) {
	var out outcome
	switch command {
	case "sh -s", "sh -s --", "sudo -n sh -s", "sudo -n sh -s --":
		script, err := io.ReadAll(io.LimitReader(ch, maxScript))
		if err != nil {
			return
		}
		out = h.run(string(script), time.Now())
	default:
		out = outcome{stderr: fmt.Sprintf("sh: 1: %.80s: not found\n", command), status: 127}
	}
	h.mu.Lock()
	faults := h.faults
	h.mu.Unlock()
	d := h.fleet.opts.Latency + out.work
	if faults&FaultSlow != 0 {
		d = time.Duration(float64(d) * h.fleet.opts.Faults.SlowFactor)
	}
	if d > 0 && !h.fleet.sleep(d) {
		return
	}
	if faults&FaultDrop != 0 {
		_, _ = io.WriteString(ch, out.stdout[:len(out.stdout)/2])
		c.Close()
		return
	}
	_, _ = io.WriteString(ch, out.stdout)
	if out.stderr != "" {
		_, _ = io.WriteString(ch.Stderr(), out.stderr)
	}
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(out.status)}))
	_ = ch.CloseWrite()
	if out.after != nil {
		out.after()
	}
}
