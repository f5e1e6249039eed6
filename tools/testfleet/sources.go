package testfleet

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// AptSource is one apt repository entry: a URI serving one suite, from either
// a one-line sources.list entry or a deb822 .sources stanza.
type AptSource struct {
	Type       string // "deb" or "deb-src"
	URI        string
	Suite      string
	Components []string
	SignedBy   string // keyring path, when the entry names one
	Enabled    bool
}

// ParseSourcesList parses the one-line format of sources.list(5).
func ParseSourcesList(r io.Reader) ([]AptSource, error) {
	var out []AptSource
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		src := AptSource{Type: fields[0], Enabled: true}
		if src.Type != "deb" && src.Type != "deb-src" {
			return nil, fmt.Errorf("line %d: unknown type %q", n, src.Type)
		}
		rest := fields[1:]
		if len(rest) > 0 && strings.HasPrefix(rest[0], "[") {
			// Options may contain spaces: "[ arch=amd64 signed-by=/k.gpg ]".
			var opts []string
			for len(rest) > 0 {
				f := rest[0]
				rest = rest[1:]
				opts = append(opts, strings.Trim(f, "[]"))
				if strings.HasSuffix(f, "]") {
					break
				}
			}
			for _, o := range opts {
				if k, v, ok := strings.Cut(o, "="); ok && k == "signed-by" {
					src.SignedBy = v
				}
			}
		}
		if len(rest) < 2 {
			return nil, fmt.Errorf("line %d: want URI and suite", n)
		}
		src.URI, src.Suite, src.Components = rest[0], rest[1], rest[2:]
		out = append(out, src)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read sources list: %w", err)
	}
	return out, nil
}

// ParseDeb822Sources parses the deb822 format of sources.list(5): stanzas
// separated by blank lines, one AptSource per (type, URI, suite).
func ParseDeb822Sources(r io.Reader) ([]AptSource, error) {
	var out []AptSource
	stanza := map[string]string{}
	last := ""
	flush := func() error {
		defer func() { clear(stanza); last = "" }()
		if len(stanza) == 0 {
			return nil
		}
		types, uris, suites := strings.Fields(stanza["types"]), strings.Fields(stanza["uris"]), strings.Fields(stanza["suites"])
		if len(types) == 0 || len(uris) == 0 || len(suites) == 0 {
			return fmt.Errorf("stanza without Types, URIs or Suites")
		}
		enabled := !strings.EqualFold(strings.TrimSpace(stanza["enabled"]), "no")
		signedBy := strings.TrimSpace(stanza["signed-by"])
		if strings.Contains(signedBy, "\n") {
			signedBy = "" // an embedded key block, not a path
		}
		for _, t := range types {
			for _, u := range uris {
				for _, s := range suites {
					out = append(out, AptSource{
						Type: t, URI: u, Suite: s,
						Components: strings.Fields(stanza["components"]),
						SignedBy:   signedBy, Enabled: enabled,
					})
				}
			}
		}
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			if err := flush(); err != nil {
				return nil, err
			}
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				stanza[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("malformed line %q", line)
			}
			last = strings.ToLower(strings.TrimSpace(k))
			stanza[last] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read deb822 sources: %w", err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadAptSources reads the sources apt itself would read under root (normally
// "/"): etc/apt/sources.list and etc/apt/sources.list.d/*.list and *.sources.
func ReadAptSources(root string) ([]AptSource, error) {
	var files []string
	if _, err := os.Stat(filepath.Join(root, "etc/apt/sources.list")); err == nil {
		files = append(files, filepath.Join(root, "etc/apt/sources.list"))
	}
	for _, pat := range []string{"*.list", "*.sources"} {
		m, err := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d", pat))
		if err != nil {
			return nil, fmt.Errorf("glob apt sources: %w", err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	var all []AptSource
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("open apt sources: %w", err)
		}
		var srcs []AptSource
		if strings.HasSuffix(f, ".sources") {
			srcs, err = ParseDeb822Sources(fh)
		} else {
			srcs, err = ParseSourcesList(fh)
		}
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		all = append(all, srcs...)
	}
	return all, nil
}

// MirrorFor picks the first enabled binary source serving suite with the main
// component: the mirror debootstrap should use.
func MirrorFor(srcs []AptSource, suite string) (AptSource, error) {
	for _, s := range srcs {
		if s.Enabled && s.Type == "deb" && s.Suite == suite && slices.Contains(s.Components, "main") {
			return s, nil
		}
	}
	return AptSource{}, fmt.Errorf("no apt source for suite %s with component main", suite)
}
