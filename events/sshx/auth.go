package sshx

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// LoadSigners reads private keys from files. Keys must not be
// passphrase-protected: a service has no one to ask, so use an ssh-agent
// (Config.AgentSocket) for protected keys.
func LoadSigners(paths ...string) ([]ssh.Signer, error) {
	var signers []ssh.Signer
	for _, p := range paths {
		pem, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read private key %s: %w", p, err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("load private key %s: passphrase-protected keys are not supported, use an ssh-agent", p)
		}
		if err != nil {
			// The parse error never quotes key material.
			return nil, fmt.Errorf("load private key %s: %w", p, err)
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// authMethods returns the configured methods and a function to call once the
// handshake is over (it closes the agent connection).
func (c Config) authMethods() ([]ssh.AuthMethod, func(), error) {
	var methods []ssh.AuthMethod
	if len(c.Signers) > 0 {
		methods = append(methods, ssh.PublicKeys(c.Signers...))
	}
	done := func() {}
	if c.AgentSocket != "" {
		conn, err := net.Dial("unix", c.AgentSocket)
		if err != nil {
			return nil, done, fmt.Errorf("connect to ssh-agent: %w", err)
		}
		methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		done = func() { conn.Close() }
	}
	if len(methods) == 0 {
		return nil, done, errors.New("no signers and no ssh-agent configured")
	}
	return methods, done, nil
}
