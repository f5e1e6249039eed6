package sshx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/shell"
)

// DefaultMaxOutput is how much of each output stream a Result keeps.
const DefaultMaxOutput = 64 << 10

// Command is a shell script to run on a target.
type Command struct {
	// Script is sent on stdin of sh -s, never on a command line. Its
	// commands read stdin from /dev/null.
	Script string
	// NoSudo runs the script as the login user even when the target uses
	// sudo (for unprivileged probes).
	NoSudo  bool
	Timeout time.Duration // overrides Config.CommandTimeout
	// Output, when set, receives stdout and stderr as they arrive, in the
	// order received (for people watching a rollout). Writes are serialised;
	// a failing writer is ignored.
	Output io.Writer
	// MaxOutput is how many bytes of each stream the Result keeps (the
	// last ones); DefaultMaxOutput when zero.
	MaxOutput int
	// StdoutHint is how much stdout the caller expects: the buffer starts
	// with that capacity (at most MaxOutput) instead of growing to it, which
	// spares the copies and the garbage of a large output. A guess: output
	// beyond it is kept all the same.
	StdoutHint int
}

// Result is what a command did. A non-zero exit status is data, not an error.
type Result struct {
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool // the start of the stream was dropped
	ExitStatus                       int
	Signal                           string // set when a signal ended the script ("KILL")
	Duration                         time.Duration
}

// ErrNotStarted means the wrapper around the script failed before running
// it: sudo refused (a password is required), or sh is missing.
// The Result holds what the host said.
var ErrNotStarted = errors.New("script did not start")

// Run runs cmd on t and returns its result. When ctx ends or the timeout
// passes, the script's whole process group on the host is killed and the
// error wraps ctx's error; the Result then holds the output so far.
func (p *Pool) Run(ctx context.Context, t Target, cmd Command) (Result, error) {
	timeout := cmd.Timeout
	if timeout <= 0 {
		timeout = p.cfg.CommandTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		c, err := p.acquire(ctx, t)
		if err != nil {
			return Result{}, fmt.Errorf("run on %s: %w", t.name(), err)
		}
		res, started, err := p.run(ctx, c, t, cmd)
		p.release(c)
		if err != nil && !started && attempt == 0 && ctx.Err() == nil {
			// The connection died while idle: nothing ran, dial again.
			p.log.Info("ssh connection lost, reconnecting", "host", t.name(), "err", err)
			continue
		}
		return res, err
	}
}

// run returns started=false when no session could be opened.
func (p *Pool) run(ctx context.Context, c *conn, t Target, cmd Command) (Result, bool, error) {
	name := t.name()
	select {
	case c.sessions <- struct{}{}:
		defer func() { <-c.sessions }()
	case <-ctx.Done():
		return Result{}, true, fmt.Errorf("run on %s: wait for a session: %w", name, ctx.Err())
	}
	sess, err := c.client.NewSession()
	var refused *ssh.OpenChannelError
	if errors.As(err, &refused) {
		// A live server said no (its session limit is below MaxSessions).
		return Result{}, true, fmt.Errorf("run on %s: open session: %w", name, err)
	}
	if err != nil {
		p.discard(c)
		return Result{}, false, fmt.Errorf("run on %s: open session: %w", name, err)
	}
	defer sess.Close()

	token := newToken()
	sudo := t.Sudo && !cmd.NoSudo
	limit := cmd.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	out := &output{live: cmd.Output, stdout: tail{max: limit, hint: cmd.StdoutHint}, stderr: tail{max: limit}}
	marker := &markerFilter{out: out, want: "patchfleet-pid ", token: token, pid: make(chan int, 1)}
	sess.Stdout = marker
	sess.Stderr = streamWriter{out, &out.stderr}
	// The script goes straight to the channel: Session.Stdin would copy it through a pipe
	// and a 32 KiB buffer per session.
	stdin, err := sess.StdinPipe()
	if err != nil {
		return Result{}, true, fmt.Errorf("run on %s: stdin: %w", name, err)
	}

	start := time.Now()
	if err := sess.Start(wrapper(sudo, token)); err != nil {
		return Result{}, true, fmt.Errorf("run on %s: start: %w", name, err)
	}
	go func() {
		// Fails only when the session ends first, which Wait reports.
		_, _ = io.WriteString(stdin, preamble(token)+"{\n"+cmd.Script+"\n} </dev/null\n")
		_ = stdin.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	var werr, cancelled error
	select {
	case werr = <-done:
	case <-ctx.Done():
		cancelled = ctx.Err()
		p.kill(c, name, sudo, token, marker.pid, done)
		select {
		case werr = <-done:
		case <-time.After(p.cfg.ConnectTimeout):
			// The kill failed. sshd keeps the session open while the
			// script runs, so do not wait for it: the result is what
			// arrived so far, and later output goes nowhere.
			p.log.Warn("cancelled command still running on host", "host", name)
		}
	}
	res := out.result()
	res.Duration = time.Since(start)
	if cancelled != nil {
		return res, true, fmt.Errorf("run on %s: %w", name, cancelled)
	}
	var exit *ssh.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &exit):
		res.ExitStatus, res.Signal = exit.ExitStatus(), exit.Signal()
	default:
		return res, true, fmt.Errorf("run on %s: %w", name, werr)
	}
	if !marker.seen() && res.ExitStatus != 0 {
		return res, true, fmt.Errorf("run on %s: %w (exit %d): %s", name, ErrNotStarted, res.ExitStatus, firstLine(res.Stderr))
	}
	return res, true, nil
}

// wrapper is the remote command line: no part of the script is in it. sshd
// starts the login shell as the leader of a session and process group of its
// own, and exec keeps sh in that place, so the script's group is the one to
// kill. The run's token is sh's argument, in its command line for killScript
// to find (/proc/<pid>/cmdline). sudo, when used, leads the group or puts sh
// at the head of one; either way the leader's command line has the token.
func wrapper(sudo bool, token string) string {
	cmd := "exec "
	if sudo {
		cmd += "sudo -n "
	}
	return cmd + "sh -s " + tokenArg + token
}

// tokenArg marks the token among sh's arguments.
const tokenArg = "patchfleet-run:"

// preamble is the first line sh reads: it prints "patchfleet-pid <process
// group id> <token>" (from /proc/$$/stat, without a process) and clears the
// token from the positional parameters, which the script may use.
func preamble(token string) string {
	return `read -r pf_s </proc/$$/stat; pf_s=${pf_s##*) }; set -- $pf_s; printf 'patchfleet-pid %s %s\n' "$3" ` + token + "; set --; unset pf_s\n"
}

// killScript kills the process group led by pid if the leader's command line
// still carries this run's token, so a pid recycled since cannot be hit.
func killScript(sudo bool, pid int, token string) string {
	s := `p=` + strconv.Itoa(pid) + `; if tr '\0' '\n' </proc/$p/cmdline 2>/dev/null | grep -qx ` + tokenArg + token + `; then kill -s KILL -- -$p; fi`
	if sudo {
		return "sudo -n sh -c " + shell.Quote(s)
	}
	return "sh -c " + shell.Quote(s)
}

// kill stops a cancelled script. It runs in a session of its own, outside the
// command slots, on the same connection.
func (p *Pool) kill(c *conn, name string, sudo bool, token string, pids <-chan int, done <-chan error) {
	var pid int
	select {
	case pid = <-pids:
	case <-done:
		return
	case <-time.After(p.cfg.ConnectTimeout):
	}
	if pid <= 0 {
		p.log.Warn("cannot kill cancelled command: its process group is unknown", "host", name)
		return
	}
	deadline := time.Now().Add(p.cfg.ConnectTimeout)
	for {
		s, err := c.client.NewSession()
		if err == nil {
			res := make(chan error, 1)
			go func() { _, err := s.CombinedOutput(killScript(sudo, pid, token)); res <- err }()
			select {
			case err = <-res:
			case <-time.After(time.Until(deadline)):
				err = errors.New("timed out")
			}
			s.Close()
			if err != nil {
				p.log.Warn("kill cancelled command", "host", name, "pgid", pid, "err", err)
			}
			return
		}
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || time.Now().After(deadline) {
			p.log.Warn("kill cancelled command: open session", "host", name, "pgid", pid, "err", err)
			return
		}
		time.Sleep(50 * time.Millisecond) // the server's session limit: wait for one to end
	}
}

func newToken() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// output collects both streams of one command.
type output struct {
	mu             sync.Mutex
	live           io.Writer
	liveFailed     bool
	stopped        bool // Run returned
	stdout, stderr tail
}

func (o *output) write(t *tail, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return
	}
	t.write(p)
	if o.live != nil && !o.liveFailed {
		if _, err := o.live.Write(p); err != nil {
			o.liveFailed = true
		}
	}
}

// result returns what was written and stops the output: later writes go nowhere, so the
// result can keep the buffers.
func (o *output) result() Result {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stopped = true
	return Result{Stdout: o.stdout.bytes(), Stderr: o.stderr.bytes(),
		StdoutTruncated: o.stdout.truncated, StderrTruncated: o.stderr.truncated}
}

type streamWriter struct {
	o *output
	t *tail
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.o.write(w.t, p)
	return len(p), nil
}

func (w streamWriter) ReadFrom(r io.Reader) (int64, error) { return readFrom(w, r) }

// copyBuffer is the read size for output. io.Copy would use 32 KiB per stream
// and session, which is most of what a session costs when 1,000 run at once.
const copyBuffer = 4 << 10

func readFrom(w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, copyBuffer)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			w.Write(buf[:k]) // never fails
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// markerFilter takes the wrapper's "patchfleet-pid <pgid> <token>" line out
// of stdout. Lines before it (a chatty login shell) are output; if it has not
// come after maxPreamble bytes, it is not coming.
type markerFilter struct {
	out   *output
	want  string
	token string
	pid   chan int
	line  []byte
	done  bool
	found bool
	n     int
}

const maxPreamble = 16 << 10

func (m *markerFilter) seen() bool { return m.found }

func (m *markerFilter) Write(p []byte) (int, error) {
	n := len(p)
	for !m.done && len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			m.line = append(m.line, p...)
			m.n += len(p)
			if m.n > maxPreamble {
				m.giveUp()
			}
			return n, nil
		}
		m.line = append(m.line, p[:i+1]...)
		m.n += i + 1
		p = p[i+1:]
		if pid, ok := m.parse(m.line); ok {
			m.found, m.done = true, true
			m.pid <- pid
			m.line = nil
			break
		}
		m.out.write(&m.out.stdout, m.line)
		m.line = m.line[:0]
		if m.n > maxPreamble {
			m.giveUp()
		}
	}
	if len(p) > 0 {
		m.out.write(&m.out.stdout, p)
	}
	return n, nil
}

func (m *markerFilter) ReadFrom(r io.Reader) (int64, error) { return readFrom(m, r) }

func (m *markerFilter) giveUp() {
	m.done = true
	close(m.pid)
	if len(m.line) > 0 {
		m.out.write(&m.out.stdout, m.line)
		m.line = nil
	}
}

func (m *markerFilter) parse(line []byte) (int, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), m.want)
	if !ok {
		return 0, false
	}
	pid, token, ok := strings.Cut(rest, " ")
	if !ok || token != m.token {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	return n, err == nil && n > 1
}

// tail keeps the last max bytes written: a slice until it would overflow,
// then a ring of exactly max bytes.
type tail struct {
	buf       []byte
	max       int
	hint      int // the capacity of the first buffer
	start     int
	ring      bool
	truncated bool
}

func (t *tail) write(p []byte) {
	if len(p) == 0 {
		return
	}
	if !t.ring {
		if t.buf == nil && t.hint > 0 {
			t.buf = make([]byte, 0, min(max(t.hint, len(p)), t.max))
		}
		if len(t.buf)+len(p) <= t.max {
			t.buf = append(t.buf, p...)
			return
		}
		nb := make([]byte, t.max)
		k := min(len(p), t.max)
		copy(nb[t.max-k:], p[len(p)-k:])
		copy(nb[:t.max-k], t.buf[len(t.buf)-(t.max-k):])
		t.buf, t.start, t.ring, t.truncated = nb, 0, true, true
		return
	}
	t.truncated = true
	if len(p) >= t.max {
		copy(t.buf, p[len(p)-t.max:])
		t.start = 0
		return
	}
	n := copy(t.buf[t.start:], p)
	copy(t.buf, p[n:])
	t.start = (t.start + len(p)) % t.max
}

// bytes returns what the tail holds; the tail must not be written after it.
func (t *tail) bytes() []byte {
	if !t.ring {
		return t.buf
	}
	return append(bytes.Clone(t.buf[t.start:]), t.buf[:t.start]...)
}
