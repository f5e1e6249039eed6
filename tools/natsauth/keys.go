package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// Users returns every NKEY user: the roles and the system user.
func Users() []string {
	var out []string
	for _, r := range Roles() {
		out = append(out, r.User)
	}
	return append(out, SystemUser)
}

// SeedFile is the name of a user's seed file in a keys directory.
func SeedFile(user string) string { return user + ".nk" }

// WriteKeys creates an NKEY pair for every user that has none in dir yet: the seed in
// <user>.nk (mode 0600; give it to that user's processes only) and the public keys of all
// users in nkeys.conf (for the servers, not secret). Existing seeds are kept, so running it
// again after a role was added creates only the new one.
func WriteKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys dir: %w", err)
	}
	var conf bytes.Buffer
	conf.WriteString("# Public NKEYs of this deployment's Patchfleet NATS users (natsauth keys). Not secret.\n")
	for _, u := range Users() {
		path := filepath.Join(dir, SeedFile(u))
		seed, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return fmt.Errorf("create nkey %s: %w", u, err)
			}
			if seed, err = kp.Seed(); err != nil {
				return fmt.Errorf("seed %s: %w", u, err)
			}
			if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
				return fmt.Errorf("write seed %s: %w", u, err)
			}
		} else if err != nil {
			return fmt.Errorf("read seed %s: %w", u, err)
		}
		kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
		if err != nil {
			return fmt.Errorf("seed %s: %w", path, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return fmt.Errorf("public key %s: %w", u, err)
		}
		fmt.Fprintf(&conf, "%s: %q\n", NKeyVar(u), pub)
	}
	if err := os.WriteFile(filepath.Join(dir, "nkeys.conf"), conf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write nkeys.conf: %w", err)
	}
	return nil
}
