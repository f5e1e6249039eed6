package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// FindBinDir returns the directory holding the newest installed PostgreSQL server
// (initdb and postgres): /usr/lib/postgresql/<version>/bin on Debian and Ubuntu, else the
// directory of initdb on PATH.
func FindBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorVersion(dirs[i]) > majorVersion(dirs[j]) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasServer(d) {
			return d, nil
		}
	}
	return "", errors.New("no postgresql server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH")
}

func majorVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// EnsureBinDir is FindBinDir, installing the distribution's postgresql package first when
// none is found and we are root on a system with apt-get (Debian, Ubuntu).
func EnsureBinDir(ctx context.Context, logger *slog.Logger) (string, error) {
	dir, err := FindBinDir()
	if err == nil {
		return dir, nil
	}
	aptGet, lookErr := exec.LookPath("apt-get")
	if os.Geteuid() != 0 || lookErr != nil {
		return "", fmt.Errorf("%w; install PostgreSQL (e.g. apt-get install postgresql) or point PATCHFLEET_TEST_DATABASE_URL at a server", err)
	}
	logger.Info("postgresql not found; installing the postgresql package with apt-get")
	if installErr := aptInstall(ctx, aptGet); installErr != nil {
		return "", fmt.Errorf("%w; installing it failed: %w", err, installErr)
	}
	dir, err = FindBinDir()
	if err != nil {
		return "", fmt.Errorf("after installing postgresql: %w", err)
	}
	return dir, nil
}

func aptInstall(ctx context.Context, aptGet string) error {
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, aptGet, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, lastLines(out, 5))
		}
		return nil
	}
	install := []string{"install", "-y", "-q", "--no-install-recommends", "postgresql"}
	if err := run(install...); err == nil {
		return nil
	}
	// Usually a fresh machine without package lists: update once and retry.
	if err := run("update", "-q"); err != nil {
		return err
	}
	return run(install...)
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
