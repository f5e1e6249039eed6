package hostfacts

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// report wraps section bodies the way the scan script prints them, all
// with status 0, in the order given.
func report(sections ...string) string {
	var b strings.Builder
	b.WriteString("==> patchfleet:scan 1\n")
	for i := 0; i+1 < len(sections); i += 2 {
		b.WriteString("==> patchfleet:section " + sections[i] + "\n")
		if body := strings.TrimSuffix(sections[i+1], "\n"); body != "" {
			b.WriteString(body + "\n")
		}
		b.WriteString("==> patchfleet:status 0\n")
	}
	b.WriteString("==> patchfleet:end\n")
	return b.String()
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// minimal holds every host section, so a test only adds what it is about.
func minimal(extra ...string) string {
	base := []string{
		"os-release", "ID=debian\nVERSION_ID=\"12\"\n",
		"kernel", "6.1.0-37-amd64",
		"arch", "x86_64",
		"dpkg-arch", "amd64",
		"boot-id", "9d7205ff-ab21-47e5-8ae9-1fa49b1bca6f",
		"hostname", "web-1",
		"packages", "",
		"reboot-required", "no",
		"reboot-required-pkgs", "",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if j := slices.Index(base, extra[i]); j >= 0 && j%2 == 0 {
			base[j+1] = extra[i+1]
		} else {
			base = append(base, extra[i], extra[i+1])
		}
	}
	return report(base...)
}

func noProblems(t *testing.T, f Facts) {
	t.Helper()
	for _, p := range f.Problems {
		t.Errorf("problem: %s", p)
	}
}

// TestParseDebian12 reads dpkg-query output and os-release captured on a
// Debian 12.11 machine.
func TestParseDebian12(t *testing.T) {
	f, err := Parse([]byte(minimal(
		"os-release", readFile(t, "testdata/debian12-os-release"),
		"packages", readFile(t, "testdata/debian12-dpkg.tsv"),
	)))
	if err != nil {
		t.Fatal(err)
	}
	noProblems(t, f)
	wantOS := OSRelease{ID: "debian", Name: "Debian GNU/Linux", PrettyName: "Debian GNU/Linux 12 (bookworm)",
		VersionID: "12", VersionCodename: "bookworm"}
	if !reflect.DeepEqual(f.OS, wantOS) {
		t.Errorf("OS = %+v, want %+v", f.OS, wantOS)
	}
	if len(f.Packages) != 703 {
		t.Fatalf("got %d packages, want 703", len(f.Packages))
	}
	byName := map[string]Package{}
	for _, p := range f.Packages {
		byName[p.Name] = p
		if !p.Installed || p.Status != "ii" {
			t.Errorf("%s: Installed %v, Status %q; want true, ii", p.Name, p.Installed, p.Status)
		}
	}
	for _, want := range []Package{
		// Same source and binary.
		{"adduser", "3.134", "all", "adduser", "3.134", "ii", true},
		// binNMU: the binary has +b8, the source does not.
		{"bash", "5.2.15-2+b8", "amd64", "bash", "5.2.15-2", "ii", true},
		// Epoch on the binary, none on the source, different names.
		{"bsdutils", "1:2.38.1-5+deb12u3", "amd64", "util-linux", "2.38.1-5+deb12u3", "ii", true},
		// Unrelated binary and source versions.
		{"cpp", "4:12.2.0-3", "amd64", "gcc-defaults", "1.203", "ii", true},
		{"g++", "4:12.2.0-3", "amd64", "gcc-defaults", "1.203", "ii", true},
		// Epoch on both, plus a binNMU.
		{"libatm1", "1:2.5.1-4+b2", "amd64", "linux-atm", "1:2.5.1-4", "ii", true},
	} {
		if got := byName[want.Name]; got != want {
			t.Errorf("package %s = %+v, want %+v", want.Name, got, want)
		}
	}
}

// TestParseLocalCapture reads the script's own output captured on a
// Debian 12 machine as an unprivileged user (testdata/PROVENANCE.md).
func TestParseLocalCapture(t *testing.T) {
	f, err := Parse([]byte(readFile(t, "testdata/scan-debian12-nobody.txt")))
	if err != nil {
		t.Fatal(err)
	}
	noProblems(t, f)
	if f.OS.ID != "debian" || f.OS.VersionID != "12" || f.OS.VersionCodename != "bookworm" {
		t.Errorf("OS = %+v", f.OS)
	}
	if f.Kernel != "6.18.44-fc-v595" || f.Arch != "x86_64" || f.DpkgArch != "amd64" ||
		f.BootID != "9d7205ff-ab21-47e5-8ae9-1fa49b1bca6f" || f.Hostname != "vm" {
		t.Errorf("host = %q %q %q %q %q", f.Kernel, f.Arch, f.DpkgArch, f.BootID, f.Hostname)
	}
	if len(f.Packages) != 706 {
		t.Errorf("got %d packages, want 706", len(f.Packages))
	}
	if f.RebootRequired || len(f.RebootPackages) != 0 || len(f.Held) != 0 {
		t.Errorf("reboot %v %v, held %v; want none", f.RebootRequired, f.RebootPackages, f.Held)
	}
	want := []Component{
		{Name: "ruby"},
		{Name: "passenger"},
		{Name: "docker", Present: true, Version: "28.2.2"},
		{Name: "weave"},
		{Name: "nginx"},
	}
	if !reflect.DeepEqual(f.Components, want) {
		t.Errorf("components = %+v, want %+v", f.Components, want)
	}
}

func TestParseNotAReport(t *testing.T) {
	for _, in := range []string{"", "\n", "Permission denied (publickey).\n", "==> patchfleet:scan 2\n==> patchfleet:end\n"} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrNotReport) {
			t.Errorf("Parse(%q) error = %v, want ErrNotReport", in, err)
		}
	}
}

func TestParsePackageProblems(t *testing.T) {
	pkgs := strings.Join([]string{
		"adduser\t3.134\tall\tadduser\t3.134\tii ",                 // line 3
		"broken line without tabs",                                 // 4
		"bash\t5.2.15-2+b8\tamd64\tbash\t5.2.15-2",                 // 5: five fields
		"evil;reboot\t1.0\tamd64\t\t\tii ",                         // 6
		"curl\t7.88.1-10+deb12u12$(id)\tamd64\tcurl\t\tii ",        // 7
		"curl\t7.88.1-10\tamd64\tcurl\t7.88.1-10 `id`\tii ",        // 8
		"libfoo1\t1.0-1\tamd 64\tfoo\t1.0-1\tii ",                  // 9
		"libfoo2\t1.0-1\tamd64\tfoo\t1.0-1\txx ",                   // 10
		"oldpkg\t1.0-1\tamd64\t\t\tii ",                            // 11: old dpkg, no source fields
		"gone\t\t\t\t\tpn ",                                        // 12: purged, remembered only
		"confonly\t2.0-1\tamd64\tconfonly\t2.0-1\trc ",             // 13
		"half\t2.0-1\tamd64\thalf\t2.0-1\tiU ",                     // 14
		"adduser\t3.134\tall\tadduser\t3.134\tii ",                 // 15: duplicate
		"libc6\t2.36-9+deb12u10\ti386\tglibc\t2.36-9+deb12u10\thi", // 16: foreign arch, held, space trimmed
		"libc6\t2.36-9+deb12u10\tamd64\tglibc\t2.36-9+deb12u10\tiiR",
	}, "\n")
	f, err := Parse([]byte(report("packages", pkgs)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range f.Packages {
		names = append(names, p.Name+":"+p.Arch)
	}
	wantNames := []string{"adduser:all", "oldpkg:amd64", "confonly:amd64", "half:amd64", "libc6:i386", "libc6:amd64"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("stored %v, want %v", names, wantNames)
	}
	old := f.Packages[1]
	if old.SourceName != "oldpkg" || old.SourceVersion != "1.0-1" {
		t.Errorf("empty source fields: got %s %s, want the binary's", old.SourceName, old.SourceVersion)
	}
	if f.Packages[2].Installed || f.Packages[3].Installed || !f.Packages[4].Installed {
		t.Errorf("Installed: rc=%v iU=%v hi=%v; want false false true",
			f.Packages[2].Installed, f.Packages[3].Installed, f.Packages[4].Installed)
	}
	if f.Packages[4].Status != "hi" || f.Packages[5].Status != "iiR" {
		t.Errorf("status %q %q", f.Packages[4].Status, f.Packages[5].Status)
	}

	wantProblems := map[int]string{
		4:  "want 6 tab-separated fields, got 1",
		5:  "want 6 tab-separated fields, got 5",
		6:  `invalid package name "evil;reboot": character ';' not allowed at offset 4`,
		7:  "character '$' not allowed at offset 18",
		8:  "source: invalid version \"7.88.1-10 `id`\": character ' ' not allowed at offset 9",
		9:  `invalid architecture "amd 64": character ' ' not allowed at offset 3`,
		10: `unknown desired action 'x'`,
		15: "already listed on line 3",
	}
	got := map[int]string{}
	for _, p := range f.Problems {
		if p.Section != "packages" {
			// The other host sections are missing from this report.
			if p.Reason != "section missing" {
				t.Errorf("unexpected problem %s", p)
			}
			continue
		}
		got[p.Line] = p.Reason
	}
	for line, want := range wantProblems {
		if !strings.Contains(got[line], want) {
			t.Errorf("line %d: problem %q, want it to contain %q", line, got[line], want)
		}
	}
	if len(got) != len(wantProblems) {
		t.Errorf("got problems on lines %v, want %d", got, len(wantProblems))
	}
}

func TestParseSections(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		check    func(t *testing.T, f Facts)
		problems []string // substrings, in order
	}{
		{
			name: "ubuntu os-release with ID_LIKE and single quotes",
			in: minimal("os-release", `NAME="Ubuntu"
VERSION_ID="22.04"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME='Ubuntu 22.04.4 LTS'
VERSION_CODENAME=jammy
UBUNTU_CODENAME=jammy`),
			check: func(t *testing.T, f Facts) {
				want := OSRelease{ID: "ubuntu", IDLike: []string{"debian"}, Name: "Ubuntu",
					PrettyName: "Ubuntu 22.04.4 LTS", VersionID: "22.04", VersionCodename: "jammy"}
				if !reflect.DeepEqual(f.OS, want) {
					t.Errorf("OS = %+v, want %+v", f.OS, want)
				}
			},
		},
		{
			name: "hostile os-release",
			in:   minimal("os-release", "ID=debian;reboot\nVERSION_ID=\"12\\\" x\"\nPRETTY_NAME=\"a\x1b[31mb\"\nID_LIKE=\"debian ubu$ntu\"\njunk"),
			problems: []string{
				`line 3 (os-release): ID: ';' in unquoted value`,
				`line 4 (os-release): VERSION_ID: character '"' at offset 2`,
				`line 5 (os-release): PRETTY_NAME: control character`,
				`line 6 (os-release): ID_LIKE: unescaped '$'`,
				`line 7 (os-release): want KEY=value`,
				`line 2 (os-release): no ID`,
			},
		},
		{
			name: "reboot required, packages deduplicated",
			in:   minimal("reboot-required", "yes", "reboot-required-pkgs", "linux-image-6.1.0-37-amd64\nlibc6\nlinux-image-6.1.0-37-amd64\nbad name\n"),
			check: func(t *testing.T, f Facts) {
				if !f.RebootRequired || !slices.Equal(f.RebootPackages, []string{"linux-image-6.1.0-37-amd64", "libc6"}) {
					t.Errorf("reboot %v %v", f.RebootRequired, f.RebootPackages)
				}
			},
			problems: []string{`(reboot-required-pkgs): invalid package name "bad name"`},
		},
		{
			// A section's lines are views of the report's lines; a marker between two of
			// them must neither lose the second nor overwrite the marker's line.
			name: "stray markers inside bodies and stderr",
			in: strings.Replace(minimal("held", "docker-ce\n==> patchfleet:bogus\nlibc6:i386\n==> patchfleet:bogus2\nvim", "reboot-required", "yes"),
				"==> patchfleet:section dpkg-arch\namd64\n==> patchfleet:status 0\n",
				"==> patchfleet:section dpkg-arch\n==> patchfleet:stderr\nsh: 1:\n==> patchfleet:odd\ndpkg: not found\n==> patchfleet:status 127\n", 1),
			check: func(t *testing.T, f Facts) {
				if !slices.Equal(f.Held, []string{"docker-ce", "libc6:i386", "vim"}) || !f.RebootRequired || f.DpkgArch != "" {
					t.Errorf("held %v, reboot required %v, dpkg arch %q", f.Held, f.RebootRequired, f.DpkgArch)
				}
			},
			problems: []string{`unknown marker "odd"`, `unknown marker "bogus"`, `unknown marker "bogus2"`, `(dpkg-arch): exit status 127: sh: 1:`},
		},
		{
			name: "held packages with architecture",
			in:   minimal("held", "docker-ce\nlibc6:i386\nrm -rf\n"),
			check: func(t *testing.T, f Facts) {
				if !slices.Equal(f.Held, []string{"docker-ce", "libc6:i386"}) {
					t.Errorf("held %v", f.Held)
				}
			},
			problems: []string{`(held): invalid package name "rm -rf"`},
		},
		{
			name: "failed probe keeps its stderr, the rest still parses",
			in: strings.Replace(minimal(), "==> patchfleet:section dpkg-arch\namd64\n==> patchfleet:status 0\n",
				"==> patchfleet:section dpkg-arch\n==> patchfleet:stderr\nsh: 1: dpkg: not found\n==> patchfleet:status 127\n", 1),
			check: func(t *testing.T, f Facts) {
				if f.Hostname != "web-1" || f.DpkgArch != "" {
					t.Errorf("hostname %q, dpkg arch %q", f.Hostname, f.DpkgArch)
				}
			},
			problems: []string{"(dpkg-arch): exit status 127: sh: 1: dpkg: not found"},
		},
		{
			name: "held from dpkg selections, the blank line closing each body ignored",
			in: minimal("kernel", "6.1.0-37-amd64\n", "packages", "docker-ce\t5:24.0.7-1~debian.12~bookworm\tamd64\tdocker-ce\t5:24.0.7-1~debian.12~bookworm\thi \n"+
				"zlib1g\t1:1.2.13.dfsg-1\tamd64\tzlib\t1:1.2.13.dfsg-1\tii \n"),
			check: func(t *testing.T, f Facts) {
				if !slices.Equal(f.Held, []string{"docker-ce"}) || f.Kernel != "6.1.0-37-amd64" || len(f.Packages) != 2 {
					t.Errorf("held %v, kernel %q, %d packages", f.Held, f.Kernel, len(f.Packages))
				}
			},
		},
		{
			name: "held listed by an earlier script's apt-mark section",
			in:   minimal("packages", "docker-ce\t5:24.0.7-1~debian.12~bookworm\tamd64\tdocker-ce\t5:24.0.7-1~debian.12~bookworm\tii ", "held", "docker-ce"),
			check: func(t *testing.T, f Facts) {
				if !slices.Equal(f.Held, []string{"docker-ce"}) {
					t.Errorf("held %v", f.Held)
				}
			},
		},
		{
			name: "held derived from dpkg selections when an earlier script's apt-mark failed",
			in: strings.Replace(minimal("packages", "docker-ce\t5:24.0.7-1~debian.12~bookworm\tamd64\tdocker-ce\t5:24.0.7-1~debian.12~bookworm\thi ", "held", ""),
				"==> patchfleet:section held\n==> patchfleet:status 0\n", "==> patchfleet:section held\n==> patchfleet:status 1\n", 1),
			check: func(t *testing.T, f Facts) {
				if !slices.Equal(f.Held, []string{"docker-ce"}) {
					t.Errorf("held %v", f.Held)
				}
			},
			problems: []string{"(held): exit status 1"},
		},
		{
			name: "truncated report",
			in:   minimal()[:strings.Index(minimal(), "==> patchfleet:status 0\n==> patchfleet:end")],
			check: func(t *testing.T, f Facts) {
				if f.Hostname != "web-1" {
					t.Errorf("hostname %q: sections before the cut not read", f.Hostname)
				}
			},
			problems: []string{"(reboot-required-pkgs): no status line", "report truncated: no end marker"},
		},
		{
			name: "CRLF and a banner before the header",
			in:   "Welcome!\r\n" + strings.ReplaceAll(minimal(), "\n", "\r\n"),
			check: func(t *testing.T, f Facts) {
				if f.Hostname != "web-1" || f.BootID == "" {
					t.Errorf("hostname %q boot id %q", f.Hostname, f.BootID)
				}
			},
			problems: []string{"line 1: 1 lines before the scan header ignored"},
		},
		{
			name:     "bad single-value sections",
			in:       minimal("kernel", "6.1.0 $(id)", "boot-id", "not-a-uuid", "hostname", "a\nb", "reboot-required", "maybe"),
			problems: []string{"(kernel): kernel release", "(boot-id): boot id", "(hostname): more than one line", "(reboot-required): want yes or no"},
		},
		{
			name: "components",
			in: minimal(
				"component ruby", "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]",
				"component rails /srv/app one", "    rails (7.0.8.1)",
				"component passenger", "Phusion Passenger(R) 6.0.17",
				"component docker", "24.0.7",
				"component nginx", "nginx version: nginx/1.22.1",
			),
			check: func(t *testing.T, f Facts) {
				want := []Component{
					{Name: "ruby", Present: true, Version: "3.1.2p20"},
					{Name: "rails", App: "/srv/app one", Present: true, Version: "7.0.8.1"},
					{Name: "passenger", Present: true, Version: "6.0.17"},
					{Name: "docker", Present: true, Version: "24.0.7"},
					{Name: "nginx", Present: true, Version: "1.22.1"},
				}
				if !reflect.DeepEqual(f.Components, want) {
					t.Errorf("components = %+v, want %+v", f.Components, want)
				}
			},
		},
		{
			name: "component statuses",
			in: strings.NewReplacer(
				"component weave\nweave script 2.8.1\n==> patchfleet:status 0", "component weave\nweave script 2.8.1\n==> patchfleet:stderr\ncannot connect\n==> patchfleet:status 1",
				"component docker\n==> patchfleet:status 0", "component docker\n==> patchfleet:status 124",
				"component nginx\n==> patchfleet:status 0", "component nginx\n==> patchfleet:status 127",
				"component passenger\n==> patchfleet:status 0", "component passenger\n==> patchfleet:stderr\nSegmentation fault\n==> patchfleet:status 139",
			).Replace(minimal(
				"component weave", "weave script 2.8.1",
				"component docker", "",
				"component nginx", "",
				"component passenger", "",
				"component ruby", "ruby something odd",
				"component future-thing", "1.0",
			)),
			check: func(t *testing.T, f Facts) {
				want := []Component{
					{Name: "weave", Present: true, Version: "2.8.1"},
					{Name: "docker"},
					{Name: "nginx"},
					{Name: "passenger"},
					{Name: "ruby"},
				}
				if !reflect.DeepEqual(f.Components, want) {
					t.Errorf("components = %+v, want %+v", f.Components, want)
				}
			},
			problems: []string{"(component docker): timed out", "(component passenger): exit status 139: Segmentation fault", "(component ruby): no version in the output"},
		},
		{
			name: "stray markers and text",
			in: strings.Replace(minimal(), "==> patchfleet:section kernel\n",
				"stray\n==> patchfleet:bogus\n==> patchfleet:status x\n==> patchfleet:section kernel\n", 1),
			problems: []string{"(os-release): text after the section's status", "unknown marker \"bogus\"", "status marker outside a section"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
			var got []string
			for _, p := range f.Problems {
				got = append(got, p.String())
			}
			if len(got) != len(tc.problems) {
				t.Fatalf("problems:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(got[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}

// BenchmarkParseDebian12 parses a scan of the real Debian 12 capture (703 packages): the
// inventory's per-scan parsing cost.
func BenchmarkParseDebian12(b *testing.B) {
	out := []byte(minimal(
		"os-release", readFile(b, "testdata/debian12-os-release"),
		"packages", readFile(b, "testdata/debian12-dpkg.tsv"),
	))
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if _, err := Parse(out); err != nil {
			b.Fatal(err)
		}
	}
}
