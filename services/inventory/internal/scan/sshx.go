package scan

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events/sshx"
)

// MaxOutput is the most scan output kept: a host's dpkg list is 50-100 KiB, a large one
// several times that, and a truncated report would lose packages.
const MaxOutput = 16 << 20

// SSH runs scans through an sshx pool. Targets are named by host id, so the key a
// trust-on-first-use contact accepted can be handed back with the scan it belongs to.
type SSH struct {
	pool     *sshx.Pool
	accepted sync.Map // host id -> authorized_keys line
	// lastSize is the size of the last scan's stdout: hosts of a fleet report lists of
	// similar length, so the next scan's buffer starts there (sshx.Command.StdoutHint).
	lastSize atomic.Int64
}

// NewSSH returns a runner on a new pool; cfg.OnTOFU is taken over.
func NewSSH(cfg sshx.Config) *SSH {
	s := &SSH{}
	cfg.OnTOFU = func(target string, key ssh.PublicKey) {
		s.accepted.Store(target, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
	}
	s.pool = sshx.NewPool(cfg)
	return s
}

// Close closes the pool's connections.
func (s *SSH) Close() { s.pool.Close() }

// Run runs the script as the login user: the scan needs no privileges, so a sudo target's
// sudo is not used.
func (s *SSH) Run(ctx context.Context, t Target, script string) (Result, error) {
	target, err := sshx.TargetFrom(t.SSH, t.ID)
	if err != nil {
		return Result{}, err
	}
	// An eighth more than the last scan's, so a slightly longer list does not grow it.
	hint := int(s.lastSize.Load() * 9 / 8)
	res, err := s.pool.Run(ctx, target, sshx.Command{Script: script, NoSudo: true, MaxOutput: MaxOutput, StdoutHint: hint})
	var km *sshx.HostKeyMismatchError
	if errors.As(err, &km) {
		return Result{}, &KeyMismatchError{Expected: km.Expected, Presented: km.Presented, Err: err}
	}
	if errors.Is(err, sshx.ErrUnknownHostKey) {
		return Result{}, errors.Join(ErrNoHostKey, err)
	}
	if err != nil {
		return Result{}, err
	}
	s.lastSize.Store(int64(len(res.Stdout)))
	out := Result{Stdout: res.Stdout, Stderr: res.Stderr, ExitStatus: res.ExitStatus}
	if k, ok := s.accepted.LoadAndDelete(t.ID); ok && t.SSH.HostKey == "" {
		out.AcceptedKey = k.(string)
	}
	return out, nil
}
