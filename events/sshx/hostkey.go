package sshx

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyMismatchError refuses a host that presented a key other than its
// pinned one. Callers detect it with errors.As, publish HostKeyMismatch and
// fail the job with reason host_key_mismatch.
type HostKeyMismatchError struct {
	Host      string // the target's (or bastion's) name
	Addr      string // host:port dialled
	Expected  string // SHA256 fingerprint of the pinned key; several are comma-separated
	Presented string // SHA256 fingerprint of the key offered
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch for %s (%s): presented %s, pinned %s", e.Host, e.Addr, e.Presented, e.Expected)
}

// ErrUnknownHostKey means no key is pinned for a host that does not allow
// trust on first use.
var ErrUnknownHostKey = errors.New("no pinned host key and trust on first use not allowed")

// KnownHosts reads OpenSSH known_hosts files, an alternative source of pins
// for operator tools (Config.KnownHosts).
func KnownHosts(files ...string) (ssh.HostKeyCallback, error) {
	cb, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", strings.Join(files, ", "), err)
	}
	return cb, nil
}

// verifier checks one host's key during a handshake. It records the key
// accepted, so the pool can hold later connections to the same key.
type verifier struct {
	name       string
	pinned     ssh.PublicKey
	knownHosts ssh.HostKeyCallback
	tofu       bool
	onTOFU     func(ssh.PublicKey)
	accepted   ssh.PublicKey
}

func (v *verifier) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	presented := ssh.FingerprintSHA256(key)
	if v.pinned != nil {
		if !bytes.Equal(v.pinned.Marshal(), key.Marshal()) {
			return &HostKeyMismatchError{Host: v.name, Addr: hostname, Expected: ssh.FingerprintSHA256(v.pinned), Presented: presented}
		}
		v.accepted = key
		return nil
	}
	known := false
	if v.knownHosts != nil {
		err := v.knownHosts(hostname, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			known = true
		case errors.As(err, &ke) && len(ke.Want) == 0:
			// Not in known_hosts: trust on first use decides.
		case errors.As(err, &ke):
			fps := make([]string, len(ke.Want))
			for i, w := range ke.Want {
				fps[i] = ssh.FingerprintSHA256(w.Key)
			}
			return &HostKeyMismatchError{Host: v.name, Addr: hostname, Expected: strings.Join(fps, ","), Presented: presented}
		default:
			return fmt.Errorf("verify host key of %s (%s): %w", v.name, hostname, err)
		}
	}
	if !known {
		if !v.tofu {
			return fmt.Errorf("verify host key of %s (%s): %w", v.name, hostname, ErrUnknownHostKey)
		}
		if v.onTOFU != nil {
			v.onTOFU(key)
		}
	}
	v.accepted = key
	return nil
}
