package testfleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// RootfsSpec holds the inputs of the base root filesystem built by
// debootstrap; the cache key is a hash of them.
type RootfsSpec struct {
	Suite    string
	Variant  string
	Packages []string // --include
	Mirror   string
	Arch     string
	Keyring  string // verifies the mirror; not part of the key
}

// baseRecipe changes whenever buildBase changes what it does to the tree.
const baseRecipe = "base-1"

// DefaultPackages are the packages a host needs beyond minbase. sudo is there
// for tests that log in as a non-root user and escalate with sudo -n.
var DefaultPackages = []string{"openssh-server", "python3", "sudo"}

// Key identifies the root filesystem built from the spec.
func (s RootfsSpec) Key() string {
	pkgs := slices.Clone(s.Packages)
	slices.Sort(pkgs)
	h := sha256.Sum256([]byte(strings.Join([]string{
		baseRecipe, s.Suite, s.Variant, strings.Join(pkgs, ","), s.Mirror, s.Arch,
	}, "\x00")))
	return hex.EncodeToString(h[:8])
}

// DefaultRootfsSpec describes Debian 12 minbase from the mirror this machine's
// apt is configured with.
func DefaultRootfsSpec(ctx context.Context) (RootfsSpec, error) {
	srcs, err := ReadAptSources("/")
	if err != nil {
		return RootfsSpec{}, fmt.Errorf("find apt mirror: %w", err)
	}
	const suite = "bookworm"
	src, err := MirrorFor(srcs, suite)
	if err != nil {
		return RootfsSpec{}, fmt.Errorf("find apt mirror: %w", err)
	}
	out, err := exec.CommandContext(ctx, "dpkg", "--print-architecture").Output()
	if err != nil {
		return RootfsSpec{}, fmt.Errorf("find architecture: %w", err)
	}
	return RootfsSpec{
		Suite: suite, Variant: "minbase", Packages: DefaultPackages,
		Mirror: src.URI, Arch: strings.TrimSpace(string(out)), Keyring: src.SignedBy,
	}, nil
}

// ensureBase returns the cached base root filesystem, building it if needed.
func ensureBase(ctx context.Context, cacheDir string, spec RootfsSpec, log *slog.Logger) (string, error) {
	return ensureCached(ctx, cacheDir, "rootfs-"+spec.Key(), func(ctx context.Context, tmp string) error {
		if err := ensureTool(ctx, "debootstrap", "debootstrap", log); err != nil {
			return err
		}
		args := []string{"--variant=" + spec.Variant, "--arch=" + spec.Arch}
		if len(spec.Packages) > 0 {
			args = append(args, "--include="+strings.Join(spec.Packages, ","))
		}
		if spec.Keyring != "" {
			args = append(args, "--keyring="+spec.Keyring)
		}
		args = append(args, spec.Suite, tmp, spec.Mirror)
		log.Info("building root filesystem", "suite", spec.Suite, "mirror", spec.Mirror, "key", spec.Key())
		start := time.Now()
		cmd := exec.CommandContext(ctx, "debootstrap", args...)
		// debootstrap mounts /proc and /sys in the target; a private mount
		// namespace makes sure they go away even if it dies half-way.
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("debootstrap: %w: %s", err, tail(out, 2000))
		}
		// Hosts get their own host keys; nothing is downloaded after this.
		for _, pat := range []string{"etc/ssh/ssh_host_*", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"} {
			m, _ := filepath.Glob(filepath.Join(tmp, pat))
			for _, f := range m {
				if err := os.Remove(f); err != nil {
					return fmt.Errorf("clean root filesystem: %w", err)
				}
			}
		}
		log.Info("built root filesystem", "key", spec.Key(), "took", time.Since(start).Round(time.Millisecond))
		return nil
	})
}

// ensureTool installs a missing command's Debian package with apt-get.
func ensureTool(ctx context.Context, command, pkg string, log *slog.Logger) error {
	if _, err := exec.LookPath(command); err == nil {
		return nil
	}
	log.Info("installing missing tool", "package", pkg)
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err != nil {
		// Perhaps the package lists were never fetched.
		if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
			return fmt.Errorf("install %s: apt-get update: %w: %s", pkg, err, tail(out, 1000))
		}
		if out, err := install(); err != nil {
			return fmt.Errorf("install %s: %w: %s", pkg, err, tail(out, 1000))
		}
	}
	if _, err := exec.LookPath(command); err != nil {
		return fmt.Errorf("install %s: %w", pkg, err)
	}
	return nil
}

//go:embed hostinit.sh
var hostInit []byte

//go:embed all:image
var imageFiles embed.FS

// imageRecipe changes whenever buildImage changes what it does.
const imageRecipe = "image-1"

// setupScript prepares the image layer, run inside it as root.
func setupScript(installed []Package) string {
	var debs []string
	for _, p := range installed {
		debs = append(debs, RepoPath+"/"+p.Filename())
	}
	return fmt.Sprintf(`# The fleet's repository is the only apt source.
find /etc/apt/sources.list.d -type f ! -name patchfleet-security.list -delete
rm -f /etc/apt/sources.list
dpkg -i %s
cat >/etc/pf-conf.conf <<'PFEOF'
%sPFEOF
apt-get clean
`, strings.Join(debs, " "), LocalConfig)
}

// imageKey identifies the image layer built on base with installed packages.
func imageKey(base string, installed []Package) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", imageRecipe, filepath.Base(base), hostInit, setupScript(installed))
	for _, p := range installed {
		fmt.Fprintf(h, "%s\x00", p.Digest())
	}
	_ = fs.WalkDir(imageFiles, "image", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := imageFiles.ReadFile(p)
			fmt.Fprintf(h, "%s\x00%s\x00", p, data)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// ensureImage returns the cached image layer: an overlay upper directory on
// top of base with the testfleet shims, sshd and apt configuration, and the
// installed packages. Hosts stack their own upper directory on top of it.
func ensureImage(ctx context.Context, cacheDir, base, debDir string, installed []Package, log *slog.Logger) (string, error) {
	dir, err := ensureCached(ctx, cacheDir, "image-"+imageKey(base, installed), func(ctx context.Context, tmp string) error {
		upper := filepath.Join(tmp, "upper")
		if err := os.Mkdir(upper, 0o755); err != nil {
			return err
		}
		err := fs.WalkDir(imageFiles, "image", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := imageFiles.ReadFile(p)
			if err != nil {
				return err
			}
			rel := strings.TrimPrefix(p, "image/")
			mode := os.FileMode(0o644)
			if strings.HasPrefix(rel, "usr/") {
				mode = 0o755
			}
			return writeTreeFile(upper, rel, data, mode)
		})
		if err != nil {
			return fmt.Errorf("write image files: %w", err)
		}
		if err := writeTreeFile(upper, "tmp/pf-setup.sh", []byte(setupScript(installed)), 0o644); err != nil {
			return fmt.Errorf("write setup script: %w", err)
		}
		if err := os.Chmod(filepath.Join(upper, "tmp"), 0o777|os.ModeSticky); err != nil {
			return err
		}
		b := bootSpec{
			lower: base, upper: upper, work: filepath.Join(tmp, "work"), merged: filepath.Join(tmp, "merged"),
			repo: debDir, hostname: "testfleet-image", bootID: newBootID(), setup: true,
		}
		cmd, err := b.command(ctx)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("set up image: %w: %s", err, tail(buf.Bytes(), 2000))
		}
		for _, d := range []string{b.work, b.merged, filepath.Join(tmp, "init.sh")} {
			if err := removeTree(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "upper"), nil
}

// writeTreeFile writes root/rel, creating missing parent directories 0755
// (what every parent in a Debian tree has).
func writeTreeFile(root, rel string, data []byte, mode os.FileMode) error {
	full := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(full, data, mode); err != nil {
		return err
	}
	return os.Chmod(full, mode)
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
