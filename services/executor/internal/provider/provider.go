// Package provider runs the replace strategy's provider hooks: local commands that provision
// a new host, move the failover address to it, and retire a host. Each runs with
// exec.CommandContext and a timeout, its arguments as argv (never through a shell), in a
// process group of its own that is killed whole when it times out; its output goes to the
// job log.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
)

// Hooks are the provider's commands, each an argv to which the hook's arguments are appended:
//
//	provision <old-host-id>              → one JSON object on stdout (see ParseProvision)
//	switch <old-host-id> <new-host-id>   → the failover address now points at the new host
//	retire <host-id>                     → the host is gone
//
// A hook succeeds when it exits 0. switch and retire must be idempotent: a job taken over
// after a crash may run them again.
type Hooks struct {
	Provision, Switch, Retire []string
	Timeout                   time.Duration // per hook run
}

// Configured reports whether every hook is set.
func (h Hooks) Configured() bool {
	return len(h.Provision) > 0 && len(h.Switch) > 0 && len(h.Retire) > 0
}

// maxStdout bounds what a hook may print on stdout.
const maxStdout = 1 << 20

// ProvisionHost runs the provision hook for oldID and returns the host it made.
func (h Hooks) ProvisionHost(ctx context.Context, oldID string, log io.Writer) (job.NewHost, error) {
	out, err := h.run(ctx, "provision", h.Provision, []string{oldID}, log)
	if err != nil {
		return job.NewHost{}, err
	}
	return ParseProvision(out)
}

// SwitchTo runs the switch hook.
func (h Hooks) SwitchTo(ctx context.Context, oldID, newID string, log io.Writer) error {
	_, err := h.run(ctx, "switch", h.Switch, []string{oldID, newID}, log)
	return err
}

// RetireHost runs the retire hook.
func (h Hooks) RetireHost(ctx context.Context, id string, log io.Writer) error {
	_, err := h.run(ctx, "retire", h.Retire, []string{id}, log)
	return err
}

func (h Hooks) run(ctx context.Context, name string, argv, args []string, log io.Writer) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("provider hook %s: not configured", name)
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	full := append(append([]string(nil), argv[1:]...), args...)
	cmd := exec.CommandContext(ctx, argv[0], full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second // a grandchild holding the pipes open
	var stdout limited
	stdout.max = maxStdout
	cmd.Stdout = io.MultiWriter(&stdout, prefixed{log, "hook " + name + ": "})
	cmd.Stderr = prefixed{log, "hook " + name + " stderr: "}
	fmt.Fprintf(log, "==> %s provider hook %s %s\n", time.Now().UTC().Format(time.RFC3339), name, strings.Join(args, " "))
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		fmt.Fprintf(log, "==> provider hook %s failed after %s: %v\n", name, time.Since(start).Round(time.Millisecond), err)
		return stdout.Bytes(), fmt.Errorf("provider hook %s: %w", name, err)
	}
	fmt.Fprintf(log, "==> provider hook %s done (%s)\n", name, time.Since(start).Round(time.Millisecond))
	if stdout.over {
		return nil, fmt.Errorf("provider hook %s: more than %d bytes on stdout", name, maxStdout)
	}
	return stdout.Bytes(), nil
}

// ParseProvision reads the provision hook's answer: one JSON object,
//
//	{"host_id": "web-7", "name": "web-7.example.net", "address": "203.0.113.7", "port": 22,
//	 "user": "root", "host_key": "ssh-ed25519 AAAA…"}
//
// name, address and host_key (authorized_keys format: the key to pin) are required;
// host_id defaults to name, port to 22, user to the old host's.
func ParseProvision(out []byte) (job.NewHost, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var h job.NewHost
	if err := dec.Decode(&h); err != nil {
		return job.NewHost{}, fmt.Errorf("provision output: want one JSON object: %w", err)
	}
	if dec.More() {
		return job.NewHost{}, errors.New("provision output: more than one JSON value")
	}
	if h.ID == "" {
		h.ID = h.Name
	}
	if h.Port == 0 {
		h.Port = 22
	}
	var errs []error
	if h.Name == "" || h.Address == "" || h.HostKey == "" {
		errs = append(errs, errors.New("name, address and host_key are required"))
	}
	if h.Port < 1 || h.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", h.Port))
	}
	if h.HostKey != "" {
		if _, err := sshx.ParseHostKey(h.HostKey); err != nil {
			errs = append(errs, fmt.Errorf("host_key: %w", err))
		}
	}
	for _, s := range []string{h.ID, h.Name, h.Address, h.User} {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) || len(s) > 255 {
			errs = append(errs, fmt.Errorf("field %.40q: control characters or longer than 255 bytes", s))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return job.NewHost{}, fmt.Errorf("provision output: %w", err)
	}
	return h, nil
}

// limited keeps the first max bytes written.
type limited struct {
	bytes.Buffer
	max  int
	over bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room < len(p) {
		l.over = true
		l.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return l.Buffer.Write(p)
}

// prefixed writes each chunk to the job log after a prefix.
type prefixed struct {
	w      io.Writer
	prefix string
}

func (p prefixed) Write(b []byte) (int, error) {
	s := strings.TrimRight(string(b), "\n")
	for line := range strings.SplitSeq(s, "\n") {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, line)
	}
	return len(b), nil
}
