package testfleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultCacheDir is where built root filesystems and packages are kept.
const DefaultCacheDir = "/var/cache/patchfleet/testfleet"

// CacheDirFromEnv returns $PATCHFLEET_TESTFLEET_CACHE, or DefaultCacheDir.
func CacheDirFromEnv() string {
	if d := os.Getenv("PATCHFLEET_TESTFLEET_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

// ensureCached returns cacheDir/name, building it first if needed. The build
// runs in a temporary directory renamed into place when complete, under a
// file lock, so concurrent processes build it once and never see half of it.
func ensureCached(ctx context.Context, cacheDir, name string, build func(ctx context.Context, tmp string) error) (string, error) {
	final := filepath.Join(cacheDir, name)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, final+".lock")
	if err != nil {
		return "", fmt.Errorf("lock %s: %w", name, err)
	}
	defer unlock()
	if _, err := os.Stat(final); err == nil {
		return final, nil // built by someone else while we waited
	}
	// Leftovers of builds that died half-way.
	stale, _ := filepath.Glob(filepath.Join(cacheDir, ".tmp-"+name+"-*"))
	for _, s := range stale {
		if err := removeTree(s); err != nil {
			return "", fmt.Errorf("remove stale build %s: %w", s, err)
		}
	}
	tmp, err := os.MkdirTemp(cacheDir, ".tmp-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	if err := build(ctx, tmp); err != nil {
		_ = removeTree(tmp)
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = removeTree(tmp)
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return final, nil
}

// lockFile takes an exclusive flock on path, polling so ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeTree removes dir, refusing if anything is mounted beneath it in this
// mount namespace: RemoveAll through a stray bind mount would delete the
// mount's source.
func removeTree(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove %s: still mounted: %v", dir, mounts)
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists mount points at or below dir in this mount namespace.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return parseMountsUnder(string(data), dir), nil
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}
