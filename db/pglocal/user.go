package pglocal

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// osUser is who the server runs as: nil means the current user. PostgreSQL refuses to run
// as root, so as root we run it as the "postgres" user the distribution package creates.
type osUser struct {
	name     string
	uid, gid uint32
}

func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, postgresql must run as the postgres user: %w (install the postgresql package, or create the user)", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user gid %q: %w", u.Gid, err)
	}
	return &osUser{name: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

func (u *osUser) apply(cmd *exec.Cmd) {
	if u == nil {
		return
	}
	setCredential(cmd, u.uid, u.gid)
	cmd.Env = append(os.Environ(), "HOME="+os.TempDir(), "USER="+u.name, "LOGNAME="+u.name)
	cmd.Dir = os.TempDir() // the server user may not be able to enter our working directory
}

// own gives the data directory to the server user and makes sure that user can reach it:
// every parent directory must be searchable (x) by it.
func (u *osUser) own(dir string, logger *slog.Logger) error {
	if err := os.Chmod(dir, 0o700); err != nil { // initdb and postgres insist on 0700 or 0750
		return fmt.Errorf("chmod data directory %s: %w", dir, err)
	}
	if u == nil {
		return nil
	}
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == u.uid {
			return u.searchableParents(dir, logger) // an existing cluster, already given
		}
	}
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(u.uid), int(u.gid))
	})
	if err != nil {
		return fmt.Errorf("give data directory %s to user %s: %w", dir, u.name, err)
	}
	return u.searchableParents(dir, logger)
}

func (u *osUser) searchableParents(dir string, logger *slog.Logger) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("data directory parent %s: %w", p, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			// Search permission only: the postgres user can pass through, not list.
			logger.Info("making directory searchable for the postgres user", "dir", p)
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("make %s searchable for user %s: %w", p, u.name, err)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
