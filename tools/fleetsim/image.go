package fleetsim

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events/deb"
)

//go:embed testdata/debian12-dpkg.tsv
var debian12Packages string

//go:embed testdata/debian12-os-release
var debian12OSRelease string

// pkg is one dpkg database entry, as the scan prints it.
type pkg struct {
	Name, Version, Arch, SourceName, SourceVersion string
	Status                                         string // db:Status-Abbrev without the trailing space
}

// Image is a host variant: a package table shared by every host made from
// it (hosts store only their differences) and what the scan reports
// besides packages.
type Image struct {
	Name      string
	OSRelease string
	Kernel    string
	pkgs      []pkg // sorted by name
	index     map[string]int
	// Components maps a scan component (docker, nginx…) to its version.
	Components map[string]string
	// scanPackages is the rendered packages section of an unchanged host.
	scanPackages []byte
}

func (im *Image) lookup(name string) (pkg, bool) {
	if i, ok := im.index[name]; ok {
		return im.pkgs[i], true
	}
	return pkg{}, false
}

// parseDpkgTSV reads the scan's dpkg-query format.
func parseDpkgTSV(tsv string) ([]pkg, error) {
	var out []pkg
	for n, line := range strings.Split(strings.TrimSuffix(tsv, "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("dpkg table line %d: want 6 fields, got %d", n+1, len(f))
		}
		p := pkg{Name: f[0], Version: f[1], Arch: f[2], SourceName: f[3], SourceVersion: f[4], Status: strings.TrimRight(f[5], " ")}
		if err := deb.ValidPackageName(p.Name); err != nil {
			return nil, fmt.Errorf("dpkg table line %d: %w", n+1, err)
		}
		if err := deb.ValidVersion(p.Version); err != nil {
			return nil, fmt.Errorf("dpkg table line %d: %w", n+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// newImage derives an image from the capture: change replaces or adds
// packages (by name).
func newImage(name, kernel string, base []pkg, change []pkg, components map[string]string) *Image {
	pkgs := slices.Clone(base)
	for _, c := range change {
		if i := slices.IndexFunc(pkgs, func(p pkg) bool { return p.Name == c.Name }); i >= 0 {
			pkgs[i] = c
		} else {
			pkgs = append(pkgs, c)
		}
	}
	slices.SortFunc(pkgs, func(a, b pkg) int { return strings.Compare(a.Name, b.Name) })
	im := &Image{Name: name, OSRelease: debian12OSRelease, Kernel: kernel, pkgs: pkgs, index: map[string]int{}, Components: components}
	for i, p := range pkgs {
		im.index[p.Name] = i
	}
	var b strings.Builder
	for _, p := range pkgs {
		writePkgLine(&b, p)
	}
	im.scanPackages = []byte(b.String())
	return im
}

// writePkgLine writes p in the scan's dpkg-query format.
func writePkgLine(b *strings.Builder, p pkg) {
	b.WriteString(p.Name + "\t" + p.Version + "\t" + p.Arch + "\t" + p.SourceName + "\t" + p.SourceVersion + "\t" + p.Status + statusPad(p.Status) + "\n")
}

// statusPad restores the trailing space dpkg prints when there is no error flag.
func statusPad(s string) string {
	if len(s) == 2 {
		return " "
	}
	return ""
}

func bin(name, version, arch, src string) pkg {
	return pkg{Name: name, Version: version, Arch: arch, SourceName: src, SourceVersion: version, Status: "ii"}
}

// DefaultImages are the variants hosts are made from, round robin:
//
//   - debian12: the capture as it is;
//   - debian12-lagging: openssl and glibc one security update behind;
//   - debian12-docker: with Docker CE from Docker's repository;
//   - debian12-web: with nginx.
func DefaultImages() ([]*Image, error) {
	base, err := parseDpkgTSV(debian12Packages)
	if err != nil {
		return nil, err
	}
	const kernel = "6.1.0-37-amd64"
	return []*Image{
		newImage("debian12", kernel, base, nil, nil),
		newImage("debian12-lagging", "6.1.0-35-amd64", base, []pkg{
			bin("openssl", "3.0.17-1~deb12u2", "amd64", "openssl"),
			bin("libssl3", "3.0.17-1~deb12u2", "amd64", "openssl"),
			bin("libc6", "2.36-9+deb12u10", "amd64", "glibc"),
			bin("libc6-dev", "2.36-9+deb12u10", "amd64", "glibc"),
			bin("libc6-dbg", "2.36-9+deb12u10", "amd64", "glibc"),
		}, nil),
		newImage("debian12-docker", kernel, base, []pkg{
			bin("docker-ce", "5:27.5.1-1~debian.12~bookworm", "amd64", "docker-ce"),
			bin("docker-ce-cli", "5:27.5.1-1~debian.12~bookworm", "amd64", "docker-ce"),
			bin("containerd.io", "1.7.25-1", "amd64", "containerd.io"),
		}, map[string]string{"docker": "27.5.1"}),
		newImage("debian12-web", kernel, base, []pkg{
			bin("nginx", "1.22.1-9+deb12u1", "amd64", "nginx"),
			bin("nginx-common", "1.22.1-9+deb12u1", "all", "nginx"),
		}, map[string]string{"nginx": "1.22.1"}),
	}, nil
}

// Update is a newer version the simulated repository serves.
type Update struct {
	Name    string
	Version string
	// Reboot: upgrading to it creates /var/run/reboot-required and names
	// the package in .pkgs, as libc6 and linux-image postinsts do.
	Reboot bool
	// Security: it comes from the security archive (Debian-Security); the
	// security-upgrade op takes only these.
	Security bool
}

// DefaultUpdates are security fixes newer than every image has — a
// synthetic OpenSSL update, a glibc update that asks for a reboot, nginx —
// and updates from other origins: the Docker release the docker op pins,
// and a stable point-release base-files.
func DefaultUpdates() []Update {
	return []Update{
		{Name: "openssl", Version: "3.0.19-1~deb12u3", Security: true},
		{Name: "libssl3", Version: "3.0.19-1~deb12u3", Security: true},
		{Name: "libssl-dev", Version: "3.0.19-1~deb12u3", Security: true},
		{Name: "libc6", Version: "2.36-9+deb12u15", Reboot: true, Security: true},
		{Name: "libc6-dev", Version: "2.36-9+deb12u15", Security: true},
		{Name: "libc6-dbg", Version: "2.36-9+deb12u15", Security: true},
		{Name: "nginx", Version: "1.22.1-9+deb12u2", Security: true},
		{Name: "nginx-common", Version: "1.22.1-9+deb12u2", Security: true},
		{Name: "docker-ce", Version: "5:28.2.2-1~debian.12~bookworm"},
		{Name: "docker-ce-cli", Version: "5:28.2.2-1~debian.12~bookworm"},
		{Name: "containerd.io", Version: "1.7.27-1"},
		{Name: "base-files", Version: "12.4+deb12u12"},
	}
}
