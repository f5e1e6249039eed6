package testfleet

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Package describes a binary .deb the fleet's repository can serve. Packages
// are tiny and architecture "all", so they install on any host.
type Package struct {
	Name        string
	Version     string
	Source      string // source package, when it differs from Name
	Depends     string
	Description string
	Files       []File
	Conffiles   []string // absolute paths, each also in Files
	Postinst    string   // maintainer script body, run by /bin/sh -e
}

// File is one file a Package ships.
type File struct {
	Path string // absolute
	Data string
	Mode os.FileMode
}

// Filename is the .deb's name in the repository pool.
func (p Package) Filename() string {
	return fmt.Sprintf("%s_%s_all.deb", p.Name, p.Version)
}

// Control renders the DEBIAN/control file.
func (p Package) Control() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\n", p.Name)
	if p.Source != "" && p.Source != p.Name {
		fmt.Fprintf(&b, "Source: %s\n", p.Source)
	}
	fmt.Fprintf(&b, "Version: %s\n", p.Version)
	b.WriteString("Architecture: all\n")
	b.WriteString("Maintainer: Patchfleet test fleet <testfleet@patchfleet.invalid>\n")
	b.WriteString("Section: admin\nPriority: optional\n")
	if p.Depends != "" {
		fmt.Fprintf(&b, "Depends: %s\n", p.Depends)
	}
	desc := p.Description
	if desc == "" {
		desc = p.Name + " test package"
	}
	fmt.Fprintf(&b, "Description: %s\n", desc)
	return b.String()
}

// IndexStanza renders the package's entry in a Packages index for a .deb
// whose bytes are deb, stored at filename relative to the repository root.
func (p Package) IndexStanza(filename string, deb []byte) string {
	md := md5.Sum(deb)
	sh := sha256.Sum256(deb)
	return fmt.Sprintf("%sFilename: %s\nSize: %d\nMD5sum: %s\nSHA256: %s\n",
		p.Control(), filename, len(deb), hex.EncodeToString(md[:]), hex.EncodeToString(sh[:]))
}

// Digest identifies the package's content, for caching built .debs.
func (p Package) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%v\x00%s\x00", p.Control(), p.Postinst, p.Conffiles, debFormat)
	files := append([]File(nil), p.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00", f.Path, f.Mode, f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// debFormat changes when BuildDeb's output format changes.
const debFormat = "dpkg-deb-gzip-1"

// BuildDeb builds the package with dpkg-deb into dir and returns its path.
func BuildDeb(ctx context.Context, p Package, dir string) (string, error) {
	stage, err := os.MkdirTemp("", "testfleet-deb-")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", p.Filename(), err)
	}
	defer os.RemoveAll(stage)
	write := func(rel, data string, mode os.FileMode) error {
		full := filepath.Join(stage, rel)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(data), mode); err != nil {
			return err
		}
		return os.Chmod(full, mode) // WriteFile's mode is subject to umask
	}
	files := []File{{Path: "/DEBIAN/control", Data: p.Control(), Mode: 0o644}}
	if len(p.Conffiles) > 0 {
		files = append(files, File{Path: "/DEBIAN/conffiles", Data: strings.Join(p.Conffiles, "\n") + "\n", Mode: 0o644})
	}
	if p.Postinst != "" {
		files = append(files, File{Path: "/DEBIAN/postinst", Data: "#!/bin/sh\nset -e\n" + p.Postinst, Mode: 0o755})
	}
	for _, f := range p.Files {
		if !path.IsAbs(f.Path) {
			return "", fmt.Errorf("build %s: file path %q is not absolute", p.Filename(), f.Path)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		files = append(files, File{Path: f.Path, Data: f.Data, Mode: mode})
	}
	for _, f := range files {
		if err := write(f.Path, f.Data, f.Mode); err != nil {
			return "", fmt.Errorf("build %s: stage %s: %w", p.Filename(), f.Path, err)
		}
	}
	out := filepath.Join(dir, p.Filename())
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", stage, out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: dpkg-deb: %w: %s", p.Filename(), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
