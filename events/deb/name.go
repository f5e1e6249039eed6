package deb

import (
	"fmt"
	"strings"
)

// MaxPackageNameLen bounds a package name. Debian's longest names are well
// under 100 bytes.
const MaxPackageNameLen = 128

// maxArchLen bounds an architecture name (the longest real ones, such as
// kfreebsd-amd64 or musl-linux-riscv64, are under 20 bytes).
const maxArchLen = 32

func nameError(what, s string, off int, format string, args ...any) error {
	return &SyntaxError{What: what, Input: s, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// ValidPackageName reports whether s is a binary or source package name as
// Debian policy 5.6.1 defines it: at least two characters from [a-z0-9+.-],
// starting with a letter or digit. An architecture qualifier is not part of
// the name; see SplitArchQualifier.
func ValidPackageName(s string) error {
	const what = "package name"
	switch {
	case s == "":
		return nameError(what, s, -1, "empty")
	case len(s) < 2:
		return nameError(what, s, -1, "shorter than 2 characters")
	case len(s) > MaxPackageNameLen:
		return nameError(what, s, -1, "longer than %d bytes", MaxPackageNameLen)
	}
	if c := s[0]; !isLowerAlnum(c) {
		return nameError(what, s, 0, "must start with a lowercase letter or digit, not %s", quoteByte(c))
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '+' && c != '-' && c != '.' {
			return nameError(what, s, i, "character %q not allowed", c)
		}
	}
	return nil
}

// ValidArchitecture reports whether s is a Debian architecture name such as
// amd64, all or kfreebsd-amd64: [a-z0-9-], starting with a letter or digit.
// dpkg also tolerates upper case; no real architecture uses it, so it is
// refused here.
func ValidArchitecture(s string) error {
	const what = "architecture"
	switch {
	case s == "":
		return nameError(what, s, -1, "empty")
	case len(s) > maxArchLen:
		return nameError(what, s, -1, "longer than %d bytes", maxArchLen)
	}
	if c := s[0]; !isLowerAlnum(c) {
		return nameError(what, s, 0, "must start with a lowercase letter or digit, not %s", quoteByte(c))
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return nameError(what, s, i, "character %q not allowed", c)
		}
	}
	return nil
}

// SplitArchQualifier splits "name" or "name:arch" (as printed by apt-mark
// and dpkg for Multi-Arch packages) and validates both parts. arch is empty
// when s has no qualifier.
func SplitArchQualifier(s string) (name, arch string, err error) {
	name, arch, found := strings.Cut(s, ":")
	if err := ValidPackageName(name); err != nil {
		return "", "", err
	}
	if !found {
		return name, "", nil
	}
	if err := ValidArchitecture(arch); err != nil {
		return "", "", fmt.Errorf("package %s: %w", name, err)
	}
	return name, arch, nil
}

func isLowerAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' }
