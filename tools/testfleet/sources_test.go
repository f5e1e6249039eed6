package testfleet

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// This machine's /etc/apt/sources.list.d/debian.sources, as captured.
const debianSources = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

func TestParseDeb822Sources(t *testing.T) {
	got, err := ParseDeb822Sources(strings.NewReader(debianSources))
	if err != nil {
		t.Fatal(err)
	}
	key := "/usr/share/keyrings/debian-archive-keyring.gpg"
	want := []AptSource{
		{Type: "deb", URI: "http://deb.debian.org/debian", Suite: "bookworm", Components: []string{"main"}, SignedBy: key, Enabled: true},
		{Type: "deb", URI: "http://deb.debian.org/debian", Suite: "bookworm-updates", Components: []string{"main"}, SignedBy: key, Enabled: true},
		{Type: "deb", URI: "http://deb.debian.org/debian-security", Suite: "bookworm-security", Components: []string{"main"}, SignedBy: key, Enabled: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParseDeb822SourcesEdgeCases(t *testing.T) {
	in := `Types: deb deb-src
URIs: http://a.example/debian http://b.example/debian
Suites: bookworm
Components: main contrib
Enabled: no

Types: deb
URIs: http://c.example/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----
`
	got, err := ParseDeb822Sources(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("got %d sources, want 4 from the first stanza and 1 from the second: %+v", len(got), got)
	}
	for _, s := range got[:4] {
		if s.Enabled {
			t.Errorf("%+v: want disabled", s)
		}
	}
	if got[4].SignedBy != "" || !got[4].Enabled || got[4].URI != "http://c.example/debian" {
		t.Errorf("inline key stanza: %+v", got[4])
	}
	if _, err := ParseDeb822Sources(strings.NewReader("Types: deb\nSuites: x\n")); err == nil {
		t.Error("stanza without URIs: want an error")
	}
}

func TestParseSourcesList(t *testing.T) {
	in := `# comment
deb http://deb.debian.org/debian bookworm main contrib # trailing
deb [ arch=amd64 signed-by=/usr/share/keyrings/k.gpg ] http://mirror.example/debian bookworm main
deb-src http://deb.debian.org/debian bookworm main

deb [trusted=yes] file:/srv/patchfleet-repo ./
`
	got, err := ParseSourcesList(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []AptSource{
		{Type: "deb", URI: "http://deb.debian.org/debian", Suite: "bookworm", Components: []string{"main", "contrib"}, Enabled: true},
		{Type: "deb", URI: "http://mirror.example/debian", Suite: "bookworm", Components: []string{"main"}, SignedBy: "/usr/share/keyrings/k.gpg", Enabled: true},
		{Type: "deb-src", URI: "http://deb.debian.org/debian", Suite: "bookworm", Components: []string{"main"}, Enabled: true},
		{Type: "deb", URI: "file:/srv/patchfleet-repo", Suite: "./", Components: []string{}, Enabled: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := ParseSourcesList(strings.NewReader("deb http://x\n")); err == nil {
		t.Error("entry without suite: want an error")
	}
	if _, err := ParseSourcesList(strings.NewReader("rpm http://x y main\n")); err == nil {
		t.Error("unknown type: want an error")
	}
}

func TestMirrorFor(t *testing.T) {
	srcs := []AptSource{
		{Type: "deb", URI: "http://disabled", Suite: "bookworm", Components: []string{"main"}},
		{Type: "deb-src", URI: "http://src", Suite: "bookworm", Components: []string{"main"}, Enabled: true},
		{Type: "deb", URI: "http://security", Suite: "bookworm-security", Components: []string{"main"}, Enabled: true},
		{Type: "deb", URI: "http://contrib-only", Suite: "bookworm", Components: []string{"contrib"}, Enabled: true},
		{Type: "deb", URI: "http://mirror", Suite: "bookworm", Components: []string{"main"}, Enabled: true},
	}
	got, err := MirrorFor(srcs, "bookworm")
	if err != nil || got.URI != "http://mirror" {
		t.Errorf("MirrorFor = %+v, %v; want http://mirror", got, err)
	}
	if _, err := MirrorFor(srcs, "trixie"); err == nil {
		t.Error("no trixie source: want an error")
	}
}

func TestReadAptSources(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "etc/apt/sources.list.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/apt/sources.list":                        "deb http://one bookworm main\n",
		"etc/apt/sources.list.d/debian.sources":       debianSources,
		"etc/apt/sources.list.d/x.list.disabled-by-y": "deb http://ignored bookworm main\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadAptSources(root)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, s := range got {
		uris = append(uris, s.URI)
	}
	want := []string{"http://one", "http://deb.debian.org/debian", "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"}
	if !reflect.DeepEqual(uris, want) {
		t.Errorf("URIs = %v, want %v", uris, want)
	}
}

func FuzzParseDeb822Sources(f *testing.F) {
	f.Add(debianSources)
	f.Add("Types: deb\nURIs: x\nSuites: y\n a\n\n\n#\n")
	f.Fuzz(func(t *testing.T, in string) {
		srcs, err := ParseDeb822Sources(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range srcs {
			if s.Type == "" || s.URI == "" || s.Suite == "" {
				t.Errorf("incomplete source %+v", s)
			}
		}
	})
}

func FuzzParseSourcesList(f *testing.F) {
	f.Add("deb [ arch=amd64 signed-by=/k ] http://m bookworm main\n")
	f.Fuzz(func(t *testing.T, in string) {
		srcs, err := ParseSourcesList(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range srcs {
			if s.URI == "" || s.Suite == "" {
				t.Errorf("incomplete source %+v", s)
			}
		}
	})
}
