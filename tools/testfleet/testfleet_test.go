package testfleet

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseMountsUnder(t *testing.T) {
	mountinfo := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:30 / /tmp/testfleet-1/pf-host-1/merged rw,relatime - overlay overlay rw,lowerdir=/a
36 35 0:31 / /tmp/testfleet-1/pf-host-1/merged/run rw - tmpfs tmpfs rw
37 22 0:32 / /tmp/testfleet-10 rw - tmpfs tmpfs rw
38 22 0:33 / /tmp/testfleet-1/with\040space rw - tmpfs tmpfs rw
`
	got := parseMountsUnder(mountinfo, "/tmp/testfleet-1/")
	want := []string{"/tmp/testfleet-1/pf-host-1/merged", "/tmp/testfleet-1/pf-host-1/merged/run", "/tmp/testfleet-1/with space"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNewBootID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := newBootID(), newBootID()
	if !re.MatchString(a) || a == b {
		t.Errorf("boot ids %q, %q: want distinct kernel-format UUIDs", a, b)
	}
}

func TestRootfsSpecKey(t *testing.T) {
	s := RootfsSpec{Suite: "bookworm", Variant: "minbase", Packages: []string{"python3", "openssh-server"}, Mirror: "http://m", Arch: "amd64", Keyring: "/k"}
	same := s
	same.Packages = []string{"openssh-server", "python3"}
	same.Keyring = "/other"
	if s.Key() != same.Key() {
		t.Error("key depends on package order or keyring")
	}
	for _, change := range []func(*RootfsSpec){
		func(s *RootfsSpec) { s.Suite = "trixie" },
		func(s *RootfsSpec) { s.Variant = "buildd" },
		func(s *RootfsSpec) { s.Packages = append(s.Packages, "curl") },
		func(s *RootfsSpec) { s.Mirror = "http://other" },
		func(s *RootfsSpec) { s.Arch = "arm64" },
	} {
		c := s
		c.Packages = append([]string(nil), s.Packages...)
		change(&c)
		if c.Key() == s.Key() {
			t.Errorf("key unchanged by %+v", c)
		}
	}
}

func TestCatalogue(t *testing.T) {
	installed := map[string]Package{}
	for _, p := range InstalledPackages() {
		installed[p.Name] = p
		if p.Version != "1.0" {
			t.Errorf("%s installed at %s, want 1.0", p.Name, p.Version)
		}
	}
	for _, p := range UpdatePackages() {
		if _, ok := installed[p.Name]; !ok || p.Version != "1.1" {
			t.Errorf("update %s %s has no installed 1.0", p.Name, p.Version)
		}
	}
	for _, name := range []string{"libpfdemo1", "pf-libdemo-bin"} {
		if !strings.Contains(installed[name].Control(), "\nSource: pf-libdemo\n") {
			t.Errorf("%s control lacks Source: pf-libdemo:\n%s", name, installed[name].Control())
		}
	}
	if strings.Contains(installed["pf-demo"].Control(), "Source:") {
		t.Error("pf-demo is its own source and should not name one")
	}
}

func TestReleaseFile(t *testing.T) {
	packages := []byte("Package: pf-demo\nVersion: 1.1\n")
	sum := sha256.Sum256(packages)
	got := ReleaseFile(packages, time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC))
	for _, want := range []string{
		"Origin: Debian\n", "Label: Debian-Security\n", "Codename: bookworm-security\n",
		"Date: Fri, 02 Jan 2099 03:04:05 UTC\n",
		"SHA256:\n " + hex.EncodeToString(sum[:]) + " 30 Packages\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Release lacks %q:\n%s", want, got)
		}
	}
}

// BuildDeb runs the real dpkg-deb (part of dpkg, on every Debian system).
func TestBuildDeb(t *testing.T) {
	p := UpdatePackages()[0] // pf-demo 1.1, with a postinst
	deb, err := BuildDeb(context.Background(), p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "Package: pf-demo\nVersion: 1.1\nArchitecture: all\n"; string(out) != want {
		t.Errorf("control fields = %q, want %q", out, want)
	}
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(list, []byte("-rwxr-xr-x root/root")) || !bytes.Contains(list, []byte("./usr/bin/pf-demo")) {
		t.Errorf("contents:\n%s", list)
	}
	postinst, err := exec.Command("dpkg-deb", "-I", deb, "postinst").Output()
	if err != nil || !bytes.Contains(postinst, []byte("/var/run/reboot-required.pkgs")) {
		t.Errorf("postinst = %q, %v", postinst, err)
	}
}

func TestIndexStanza(t *testing.T) {
	p := InstalledPackages()[0]
	deb := []byte("not really a deb")
	sum := sha256.Sum256(deb)
	got := p.IndexStanza("pool/"+p.Filename(), deb)
	want := p.Control() + "Filename: pool/pf-demo_1.0_all.deb\nSize: 16\n" +
		"MD5sum: " + fmt.Sprintf("%x", md5.Sum(deb)) + "\nSHA256: " + hex.EncodeToString(sum[:]) + "\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Concurrent builders of one cache entry build it once; flock locks are per
// open file, so goroutines exercise the same exclusion as processes.
func TestEnsureCachedBuildsOnce(t *testing.T) {
	cache := t.TempDir()
	var builds atomic.Int32
	build := func(ctx context.Context, tmp string) error {
		builds.Add(1)
		time.Sleep(50 * time.Millisecond) // widen the race window
		return os.WriteFile(filepath.Join(tmp, "done"), []byte("ok"), 0o644)
	}
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = ensureCached(t.Context(), cache, "thing", build) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != filepath.Join(cache, "thing") {
			t.Errorf("builder %d: %q, %v", i, dirs[i], errs[i])
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(cache, ".tmp-*")); len(leftovers) > 0 {
		t.Errorf("temporary build dirs left: %v", leftovers)
	}
}

func TestEnsureCachedFailedBuildLeavesNothing(t *testing.T) {
	cache := t.TempDir()
	_, err := ensureCached(t.Context(), cache, "thing", func(ctx context.Context, tmp string) error {
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("want the build error")
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "*thing-*")); len(m) > 0 {
		t.Errorf("failed build left %v", m)
	}
	if _, err := os.Stat(filepath.Join(cache, "thing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed build published its result: %v", err)
	}
}
