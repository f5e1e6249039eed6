package testfleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/tools/freeport"
)

// Options configure a fleet. The zero value is usable.
type Options struct {
	// CacheDir keeps the built root filesystem, image layer and packages
	// between runs. Default: DefaultCacheDir.
	CacheDir string
	// Dir is the parent of the fleet's working directory. Default: os.TempDir().
	Dir string
	// NamePrefix names the hosts: <prefix>-1, <prefix>-2, ... Default: "pf-host".
	NamePrefix string
	// RebootDelay is how long a rebooting host stays down. Default: 300ms.
	RebootDelay time.Duration
	// Logger receives progress; default: discarded.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.NamePrefix == "" {
		o.NamePrefix = "pf-host"
	}
	if o.RebootDelay == 0 {
		o.RebootDelay = 300 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Fleet is a set of hosts sharing one client key and one repository. The
// process that started it supervises the hosts; Close tears everything down.
type Fleet struct {
	dir        string
	repo       *Repository
	hosts      []*Host
	client     ssh.Signer
	clientKey  string
	knownHosts string
	log        *slog.Logger
	closeOnce  sync.Once
	closeErr   error
}

// image is the prepared, cached material hosts are made from.
type image struct {
	lower  string // overlay lowerdir: image layer on top of the base rootfs
	debDir string // built .debs of the catalogue
}

// Prepare builds (or finds in the cache) everything hosts are made from: the
// debootstrap root filesystem, the catalogue's .debs and the image layer.
func Prepare(ctx context.Context, opts Options) error {
	_, err := prepare(ctx, opts.withDefaults())
	return err
}

func prepare(ctx context.Context, opts Options) (image, error) {
	spec, err := DefaultRootfsSpec(ctx)
	if err != nil {
		return image{}, err
	}
	base, err := ensureBase(ctx, opts.CacheDir, spec, opts.Logger)
	if err != nil {
		return image{}, err
	}
	debDir, err := ensureDebs(ctx, opts.CacheDir, append(InstalledPackages(), UpdatePackages()...))
	if err != nil {
		return image{}, err
	}
	layer, err := ensureImage(ctx, opts.CacheDir, base, debDir, InstalledPackages(), opts.Logger)
	if err != nil {
		return image{}, err
	}
	return image{lower: layer + ":" + base, debDir: debDir}, nil
}

// ensureDebs builds the packages once into a cached directory.
func ensureDebs(ctx context.Context, cacheDir string, pkgs []Package) (string, error) {
	var digests []string
	for _, p := range pkgs {
		digests = append(digests, p.Digest())
	}
	key := shortHash(strings.Join(digests, ","))
	return ensureCached(ctx, cacheDir, "debs-"+key, func(ctx context.Context, tmp string) error {
		for _, p := range pkgs {
			if _, err := BuildDeb(ctx, p, tmp); err != nil {
				return err
			}
		}
		return nil
	})
}

// Start starts n hosts and waits until every one answers SSH.
func Start(ctx context.Context, opts Options, n int) (*Fleet, error) {
	opts = opts.withDefaults()
	img, err := prepare(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	dir, err := os.MkdirTemp(opts.Dir, "testfleet-")
	if err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	f := &Fleet{dir: dir, log: opts.Logger}
	if err := f.start(ctx, opts, img, n); err != nil {
		return nil, errors.Join(fmt.Errorf("start fleet: %w", err), f.Close())
	}
	return f, nil
}

func (f *Fleet) start(ctx context.Context, opts Options, img image, n int) error {
	if err := os.Chmod(f.dir, 0o755); err != nil {
		return err
	}
	repo, err := newRepository(filepath.Join(f.dir, "repo"))
	if err != nil {
		return err
	}
	f.repo = repo
	if err := repo.addPrebuilt(append(InstalledPackages(), UpdatePackages()...), img.debDir); err != nil {
		return err
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate client key: %w", err)
	}
	if f.client, err = ssh.NewSignerFromKey(clientPriv); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	f.clientKey = filepath.Join(f.dir, "id_ed25519")
	if err := writeKeyPair(f.clientKey, clientPub, clientPriv, "root@testfleet"); err != nil {
		return fmt.Errorf("write client key: %w", err)
	}
	authorized := ssh.MarshalAuthorizedKey(f.client.PublicKey())
	f.knownHosts = filepath.Join(f.dir, "known_hosts")

	for i := 1; i <= n; i++ {
		h, err := f.newHost(fmt.Sprintf("%s-%d", opts.NamePrefix, i), img.lower, authorized, opts)
		if err != nil {
			return err
		}
		f.hosts = append(f.hosts, h)
	}
	var known strings.Builder
	for _, h := range f.hosts {
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s", h.port, ssh.MarshalAuthorizedKey(h.hostKey))
	}
	if err := os.WriteFile(f.knownHosts, []byte(known.String()), 0o644); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	for _, h := range f.hosts {
		h.started = true
		go h.supervise()
	}
	for _, h := range f.hosts {
		if err := h.WaitUp(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) newHost(name, lower string, authorized []byte, opts Options) (*Host, error) {
	dir := filepath.Join(f.dir, name)
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o700); err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	if err := writeKeyPair(filepath.Join(seed, "ssh_host_ed25519_key"), pub, priv, "root@"+name); err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(seed, "authorized_keys"), authorized, 0o600); err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	hostKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	port, err := freeport.Get()
	if err != nil {
		return nil, fmt.Errorf("create host %s: %w", name, err)
	}
	return &Host{
		name: name, dir: dir, port: port, lower: lower, repo: f.repo.Dir(),
		hostKey: hostKey, client: f.client, log: opts.Logger,
		rebootDelay: opts.RebootDelay,
		changed:     make(chan struct{}), powerOn: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

func writeKeyPair(path string, pub ed25519.PublicKey, priv ed25519.PrivateKey, comment string) error {
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	return os.WriteFile(path+".pub", []byte(line), 0o644)
}

// New starts n hosts for a test and tears them down when it ends. The cache
// directory comes from $PATCHFLEET_TESTFLEET_CACHE (see CacheDirFromEnv).
func New(t testing.TB, n int) *Fleet {
	t.Helper()
	return NewWithOptions(t, Options{CacheDir: CacheDirFromEnv()}, n)
}

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, opts Options, n int) *Fleet {
	t.Helper()
	// Building the root filesystem the first time downloads Debian.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	f, err := Start(ctx, opts, n)
	if err != nil {
		t.Fatalf("testfleet: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range f.Hosts() {
				data, _ := os.ReadFile(h.ConsoleLog())
				t.Logf("testfleet: console of %s:\n%s", h.Name(), tail(data, 3000))
			}
		}
		if err := f.Close(); err != nil {
			t.Errorf("testfleet: %v", err)
		}
	})
	return f
}

// Hosts are the fleet's hosts.
func (f *Fleet) Hosts() []*Host { return f.hosts }

// Repository is the fleet's apt repository, served to every host.
func (f *Fleet) Repository() *Repository { return f.repo }

// ClientSigner logs in as root on every host.
func (f *Fleet) ClientSigner() ssh.Signer { return f.client }

// ClientKeyPath is the client's private key file (OpenSSH format), for ssh -i.
func (f *Fleet) ClientKeyPath() string { return f.clientKey }

// KnownHostsPath is an OpenSSH known_hosts file listing every host's key.
func (f *Fleet) KnownHostsPath() string { return f.knownHosts }

// Dir is the fleet's working directory.
func (f *Fleet) Dir() string { return f.dir }

// Close stops every host, waits until no process is left in any of their
// namespaces (so no mount is left either) and removes the working directory.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, h := range f.hosts {
			wg.Go(h.stopHost)
		}
		wg.Wait()
		var nss []string
		for _, h := range f.hosts {
			nss = append(nss, h.MountNamespaces()...)
		}
		// Processes entered with nsenter leave a moment after init dies.
		deadline := time.Now().Add(10 * time.Second)
		for {
			pids, err := ProcessesInNamespaces(nss)
			if err != nil {
				f.closeErr = fmt.Errorf("close fleet: %w", err)
				return
			}
			if len(pids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				f.closeErr = fmt.Errorf("close fleet: processes %v still in host namespaces", pids)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := removeTree(f.dir); err != nil {
			f.closeErr = fmt.Errorf("close fleet: %w", err)
		}
	})
	return f.closeErr
}

// ProcessesInNamespaces returns the pids of processes whose mount namespace
// is one of nss (as read from /proc/<pid>/ns/mnt, "mnt:[inode]").
func ProcessesInNamespaces(nss []string) ([]int, error) {
	if len(nss) == 0 {
		return nil, nil
	}
	want := map[string]bool{}
	for _, ns := range nss {
		want[ns] = true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/mnt"))
		if err == nil && want[ns] {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
