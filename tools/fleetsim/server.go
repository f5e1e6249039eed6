package fleetsim

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/hostops"
	"github.com/patchfleet/patchfleet/events/shell"
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
	h.note(func(r *record) { r.conns++ })
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

// session serves one exec: the command lines in README.md, with the script
// on stdin.
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

// command is what an exec asked for.
type command struct {
	kind  int    // cmdUnknown, cmdScript, cmdWrapped or cmdKill
	token string // cmdWrapped, cmdKill: the run's token
	pid   int    // cmdKill: the process group to kill
}

const (
	cmdUnknown = iota
	cmdScript  // sh -s: the script on stdin as is
	cmdWrapped // the sshx wrapper: pid line first, the script in a brace group on stdin
	cmdKill    // the sshx kill of a wrapped script's process group
)

var (
	tokenArg = regexp.MustCompile(`patchfleet-run:([0-9a-f]{1,64})`)
	pidArg   = regexp.MustCompile(`^(?:sudo -n )?sh -c 'p=([0-9]{1,9});`)
)

// wrapperLine, preamble and killLine are what events/sshx sends (run.go
// there): the command line that runs a script with the run's token as sh's
// argument, the first line of its stdin, which prints the process group id,
// and the kill of a cancelled script's group, guarded by the token.
func wrapperLine(sudo bool, token string) string {
	cmd := "exec "
	if sudo {
		cmd += "sudo -n "
	}
	return cmd + "sh -s patchfleet-run:" + token
}

func preamble(token string) string {
	return `read -r pf_s </proc/$$/stat; pf_s=${pf_s##*) }; set -- $pf_s; printf 'patchfleet-pid %s %s\n' "$3" ` + token + "; set --; unset pf_s\n"
}

func killLine(sudo bool, pid int, token string) string {
	s := `p=` + strconv.Itoa(pid) + `; if tr '\0' '\n' </proc/$p/cmdline 2>/dev/null | grep -qx patchfleet-run:` + token + `; then kill -s KILL -- -$p; fi`
	if sudo {
		return "sudo -n sh -c " + shell.Quote(s)
	}
	return "sh -c " + shell.Quote(s)
}

// parseCommand recognises exactly the accepted command lines: the values are
// picked out, then the whole line must be what sshx would have sent.
func parseCommand(s string) command {
	switch s {
	case "sh -s", "sh -s --", "sudo -n sh -s", "sudo -n sh -s --":
		return command{kind: cmdScript}
	}
	m := tokenArg.FindStringSubmatch(s)
	if m == nil {
		return command{}
	}
	token := m[1]
	for _, sudo := range []bool{false, true} {
		if s == wrapperLine(sudo, token) {
			return command{kind: cmdWrapped, token: token}
		}
	}
	if p := pidArg.FindStringSubmatch(s); p != nil {
		pid, err := strconv.Atoi(p[1])
		for _, sudo := range []bool{false, true} {
			if err == nil && s == killLine(sudo, pid, token) {
				return command{kind: cmdKill, pid: pid, token: token}
			}
		}
	}
	return command{}
}

// unwrap takes the script out of the brace group sshx sends it in.
func unwrap(stdin string) string {
	s, ok := strings.CutPrefix(stdin, "{\n")
	if !ok {
		return stdin
	}
	return strings.TrimSuffix(s, "\n} </dev/null\n")
}

// running is a wrapped script between its pid line and its exit.
type running struct {
	token  string
	killed chan struct{}
}

func (h *Host) exec(c net.Conn, ch ssh.Channel, line string) {
	h.note(func(r *record) { r.commands++ })
	cmd := parseCommand(line)
	var killed chan struct{}
	switch cmd.kind {
	case cmdUnknown:
		h.finish(c, ch, outcome{stderr: fmt.Sprintf("sh: 1: %.80s: not found\n", line), status: 127}, nil)
		return
	case cmdKill:
		h.kill(cmd.pid, cmd.token)
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
		return
	}
	script, err := io.ReadAll(io.LimitReader(ch, maxScript))
	if err != nil {
		return
	}
	s := string(script)
	if cmd.kind == cmdWrapped {
		// The first line prints the group id, as sh runs it before reading on.
		rest, ok := strings.CutPrefix(s, preamble(cmd.token))
		if !ok {
			h.finish(c, ch, outcome{stderr: "sh: 1: unexpected first line\n", status: 2}, nil)
			return
		}
		pid, k := h.startRunning(cmd.token)
		defer h.stopRunning(pid)
		killed = k
		if _, err := fmt.Fprintf(ch, "patchfleet-pid %d %s\n", pid, cmd.token); err != nil {
			return
		}
		s = unwrap(rest)
	}
	if op, _, _ := hostops.ParseOp(s); alters(op) {
		h.note(func(r *record) { r.changing++; r.maxChanging = max(r.maxChanging, r.changing) })
		defer h.note(func(r *record) { r.changing-- })
	}
	h.finish(c, ch, h.run(s, time.Now()), killed)
}

// startRunning gives a wrapped script a process group id.
func (h *Host) startRunning(token string) (int, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running == nil {
		h.running = map[int]*running{}
	}
	h.lastPID++
	pid := 1000 + h.lastPID
	r := &running{token: token, killed: make(chan struct{})}
	h.running[pid] = r
	h.fleet.active.Add(1)
	h.fleet.started.Add(1)
	return pid, r.killed
}

func (h *Host) stopRunning(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.running, pid)
	h.fleet.active.Add(-1)
}

// kill ends the script whose group is pid if it still carries token, as the
// guarded kill does on a real host.
func (h *Host) kill(pid int, token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.running[pid]
	if r == nil || r.token != token {
		return
	}
	delete(h.running, pid)
	close(r.killed)
}

// writeString writes s without io.WriteString's copy of it: a scan report is tens of
// kilobytes, copied for every simulated scan. io.Writer's contract forbids w to modify
// or retain the bytes, so they may be the string's own.
func writeString(w io.Writer, s string) (int, error) {
	return w.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// finish sends the first line of the command's output, waits out its
// simulated time, then sends the rest and the exit status; a killed command
// ends with signal KILL and nothing more.
func (h *Host) finish(c net.Conn, ch ssh.Channel, out outcome, killed <-chan struct{}) {
	if out.lost {
		c.Close()
		return
	}
	h.mu.Lock()
	faults := h.faults
	h.mu.Unlock()
	d := h.fleet.opts.Latency + out.work
	if faults&FaultSlow != 0 {
		d = time.Duration(float64(d) * h.fleet.opts.Faults.SlowFactor)
	}
	stdout := out.stdout
	if faults&FaultDrop == 0 {
		// A real script prints its report's first line before apt starts.
		if i := strings.IndexByte(stdout, '\n'); i >= 0 {
			if _, err := writeString(ch, stdout[:i+1]); err != nil {
				return
			}
			stdout = stdout[i+1:]
		}
	}
	switch h.fleet.wait(d, killed) {
	case waitClosed:
		return
	case waitKilled:
		_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: "KILL"}))
		return
	}
	if faults&FaultDrop != 0 {
		_, _ = writeString(ch, out.stdout[:len(out.stdout)/2])
		c.Close()
		return
	}
	_, _ = writeString(ch, stdout)
	if out.stderr != "" {
		_, _ = writeString(ch.Stderr(), out.stderr)
	}
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(out.status)}))
	_ = ch.CloseWrite()
	if out.after != nil {
		out.after()
	}
}
