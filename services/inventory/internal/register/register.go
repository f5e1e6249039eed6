// Package register checks host registrations and reads hosts files. A registration is the
// HostRegistered event whatever its path (HTTP API, the bus, a hosts file), so all three are
// validated the same way.
package register

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events"
)

// Check validates a registration: the event's own rules (an id, a name, a fleet, an address,
// a host key unless trust on first use is allowed) plus a host key that parses.
func Check(e events.HostRegistered) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if e.SSH.HostKey != "" {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(e.SSH.HostKey)); err != nil {
			return fmt.Errorf("ssh.host_key: not an authorized_keys public key: %w", err)
		}
	}
	if strings.ContainsAny(e.SSH.Address, " \t\r\n@/") {
		return fmt.Errorf("ssh.address %q is not a host name or address", e.SSH.Address)
	}
	return nil
}

// Fingerprint returns the SHA256 fingerprint of a key in authorized_keys format, or "" if
// it does not parse.
func Fingerprint(key string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

// File is a hosts file:
//
//	hosts:
//	  - id: web-1                 # required, stable: the register's key
//	    name: web-1.example.net   # defaults to id
//	    fleet: prod-web           # required
//	    tags: {env: prod, role: web}
//	    new: false                # a freshly built server: full upgrade before traffic
//	    app_path: /srv/app        # Rails application directory, for the Rails probe
//	    ssh:
//	      address: 10.0.0.5       # required
//	      port: 22
//	      user: patchfleet
//	      bastion: jump@bastion.example.net:22
//	      sudo: true
//	      host_key: ssh-ed25519 AAAA...   # required unless tofu: true
//	      tofu: false             # allow trust on first use: the first key seen is pinned
type File struct {
	Hosts []FileHost `yaml:"hosts"`
}

// FileHost is one host of a hosts file.
type FileHost struct {
	ID      string            `yaml:"id"`
	Name    string            `yaml:"name"`
	Fleet   string            `yaml:"fleet"`
	Tags    map[string]string `yaml:"tags"`
	New     bool              `yaml:"new"`
	AppPath string            `yaml:"app_path"`
	SSH     struct {
		Address string `yaml:"address"`
		Port    int    `yaml:"port"`
		User    string `yaml:"user"`
		Bastion string `yaml:"bastion"`
		Sudo    bool   `yaml:"sudo"`
		HostKey string `yaml:"host_key"`
		TOFU    bool   `yaml:"tofu"`
	} `yaml:"ssh"`
}

// ParseFile reads a hosts file (YAML, unknown fields refused) and checks every host; the
// error names each bad host by its position and id. Nothing is returned unless all are good,
// so an import is all or nothing.
func ParseFile(r io.Reader) ([]events.HostRegistered, error) {
	var f File
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("hosts file is empty")
		}
		return nil, fmt.Errorf("hosts file: %w", err)
	}
	var errs []error
	out := make([]events.HostRegistered, 0, len(f.Hosts))
	seen := map[string]bool{}
	for i, h := range f.Hosts {
		e := events.HostRegistered{HostID: h.ID, Name: h.Name, Fleet: h.Fleet, Tags: h.Tags, New: h.New, AppPath: h.AppPath,
			SSH: events.SSHTarget{Address: h.SSH.Address, Port: h.SSH.Port, User: h.SSH.User, Bastion: h.SSH.Bastion,
				Sudo: h.SSH.Sudo, HostKey: strings.TrimSpace(h.SSH.HostKey), TOFU: h.SSH.TOFU}}
		if e.Name == "" {
			e.Name = e.HostID
		}
		if err := Check(e); err != nil {
			errs = append(errs, fmt.Errorf("hosts[%d] (%s): %w", i, h.ID, err))
		}
		if seen[h.ID] {
			errs = append(errs, fmt.Errorf("hosts[%d]: duplicate id %s", i, h.ID))
		}
		seen[h.ID] = true
		out = append(out, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseFileBytes is ParseFile on a byte slice.
func ParseFileBytes(b []byte) ([]events.HostRegistered, error) { return ParseFile(bytes.NewReader(b)) }
