package testfleet

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// RepoPath is where every host sees the fleet's repository (read-only).
const RepoPath = "/srv/patchfleet-repo"

// Repository is a flat apt repository in a directory: pool/*.deb, Packages
// and Release. Each fleet has its own, so publishing to it affects only that
// fleet's hosts. Hosts reach it as the apt source
// "deb [trusted=yes] file:/srv/patchfleet-repo ./".
type Repository struct {
	dir string

	mu      sync.Mutex
	entries map[string]string // pool path -> Packages stanza
}

func newRepository(dir string) (*Repository, error) {
	if err := os.MkdirAll(filepath.Join(dir, "pool"), 0o755); err != nil {
		return nil, fmt.Errorf("create repository: %w", err)
	}
	// Hosts' apt drops privileges to _apt; everything must be world-readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create repository: %w", err)
	}
	return &Repository{dir: dir, entries: map[string]string{}}, nil
}

// Dir is the repository's directory on the machine running the fleet.
func (r *Repository) Dir() string { return r.dir }

// Publish builds the packages, adds them to the repository and rewrites its
// index. Hosts see them after their next apt-get update.
func (r *Repository) Publish(ctx context.Context, pkgs ...Package) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkgs {
		deb, err := BuildDeb(ctx, p, filepath.Join(r.dir, "pool"))
		if err != nil {
			return fmt.Errorf("publish %s %s: %w", p.Name, p.Version, err)
		}
		if err := r.addLocked(p, deb); err != nil {
			return fmt.Errorf("publish %s %s: %w", p.Name, p.Version, err)
		}
	}
	return r.writeIndexLocked(time.Now())
}

// addPrebuilt copies .debs built earlier (and cached) into the pool.
func (r *Repository) addPrebuilt(pkgs []Package, debDir string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkgs {
		data, err := os.ReadFile(filepath.Join(debDir, p.Filename()))
		if err != nil {
			return fmt.Errorf("add %s to repository: %w", p.Filename(), err)
		}
		dst := filepath.Join(r.dir, "pool", p.Filename())
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("add %s to repository: %w", p.Filename(), err)
		}
		if err := r.addLocked(p, dst); err != nil {
			return err
		}
	}
	return r.writeIndexLocked(time.Now())
}

func (r *Repository) addLocked(p Package, deb string) error {
	data, err := os.ReadFile(deb)
	if err != nil {
		return fmt.Errorf("index %s: %w", p.Filename(), err)
	}
	rel := "pool/" + p.Filename()
	r.entries[rel] = p.IndexStanza(rel, data)
	return nil
}

func (r *Repository) writeIndexLocked(now time.Time) error {
	keys := make([]string, 0, len(r.entries))
	for k := range r.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var stanzas []string
	for _, k := range keys {
		stanzas = append(stanzas, r.entries[k])
	}
	packages := []byte(strings.Join(stanzas, "\n"))
	// Packages first, then Release: a reader that sees the new Release also
	// sees the Packages it describes.
	if err := writeFileAtomic(filepath.Join(r.dir, "Packages"), packages, 0o644); err != nil {
		return fmt.Errorf("write repository index: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, "Release"), []byte(ReleaseFile(packages, now)), 0o644); err != nil {
		return fmt.Errorf("write repository release: %w", err)
	}
	return nil
}

// ReleaseFile renders a flat repository's Release file for its Packages
// index. Origin, Label and Codename are those of Debian's security archive,
// so unattended-upgrades' stock security origin pattern matches the repository.
func ReleaseFile(packages []byte, date time.Time) string {
	md := md5.Sum(packages)
	sh := sha256.Sum256(packages)
	return fmt.Sprintf(`Origin: Debian
Label: Debian-Security
Suite: stable-security
Codename: bookworm-security
Date: %s
Architectures: all
Description: Patchfleet test fleet security repository
MD5Sum:
 %s %d Packages
SHA256:
 %s %d Packages
`, date.UTC().Format(time.RFC1123), hex.EncodeToString(md[:]), len(packages), hex.EncodeToString(sh[:]), len(packages))
}

func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
