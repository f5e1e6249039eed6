package sshx

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events"
)

// Target is a host to run commands on.
type Target struct {
	Name    string // for errors, logs and callbacks; defaults to Address
	Address string
	Port    int    // 22 when zero
	User    string // root when empty
	// Bastion is an optional jump host, "user@host:port" (user root and port 22
	// when omitted). Its key is pinned in Config.BastionKeys or known_hosts.
	Bastion string
	Sudo    bool // wrap commands in sudo -n
	// HostKey is the pinned host key. Nil only with TOFU, or when the pool
	// has known_hosts files to check it against.
	HostKey ssh.PublicKey
	TOFU    bool
}

// TargetFrom converts the event contract's SSH target.
func TargetFrom(s events.SSHTarget, name string) (Target, error) {
	t := Target{Name: name, Address: s.Address, Port: s.Port, User: s.User,
		Bastion: s.Bastion, Sudo: s.Sudo, TOFU: s.TOFU}
	if s.HostKey != "" {
		k, err := ParseHostKey(s.HostKey)
		if err != nil {
			return Target{}, fmt.Errorf("target %s: %w", name, err)
		}
		t.HostKey = k
	}
	if _, _, _, err := t.bastion(); err != nil {
		return Target{}, fmt.Errorf("target %s: %w", name, err)
	}
	return t, nil
}

// ParseHostKey parses a public key in authorized_keys format ("ssh-ed25519
// AAAA... comment").
func ParseHostKey(s string) (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("parse host key: %w", err)
	}
	return k, nil
}

func (t Target) addr() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Address, strconv.Itoa(port))
}

func (t Target) user() string {
	if t.User == "" {
		return "root"
	}
	return t.User
}

func (t Target) name() string {
	if t.Name != "" {
		return t.Name
	}
	return t.addr()
}

// key identifies the connection a target shares with others.
func (t Target) key() string {
	return t.user() + "@" + t.addr() + " via " + t.Bastion
}

// bastion splits Bastion into user, "host:port" and the normalised spec.
func (t Target) bastion() (user, addr, spec string, err error) {
	if t.Bastion == "" {
		return "", "", "", nil
	}
	return ParseBastion(t.Bastion)
}

// ParseBastion parses "user@host:port" (user and port optional) into the user
// and the address, and returns the normalised "user@host:port" too.
func ParseBastion(s string) (user, addr, spec string, err error) {
	user, hostport := "root", s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, hostport = s[:i], s[i+1:]
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "22"
	}
	if host == "" || user == "" || strings.ContainsAny(host, "[]@ ") {
		return "", "", "", fmt.Errorf("parse bastion %q: want user@host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", "", fmt.Errorf("parse bastion %q: %w", s, errors.New("bad port"))
	}
	addr = net.JoinHostPort(host, port)
	return user, addr, user + "@" + addr, nil
}
