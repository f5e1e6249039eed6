package deb

import (
	"errors"
	"strings"
	"testing"
)

func TestValidPackageName(t *testing.T) {
	for _, ok := range []string{"libc6", "g++", "libstdc++6", "x11-common", "python3.11", "0ad", "7zip", "zz", "libgtk-3-0"} {
		if err := ValidPackageName(ok); err != nil {
			t.Errorf("ValidPackageName(%q): %v", ok, err)
		}
	}
	for _, tc := range []struct {
		in     string
		offset int
		reason string
	}{
		{"", -1, "empty"},
		{"a", -1, "shorter than 2"},
		{strings.Repeat("a", MaxPackageNameLen+1), -1, "longer than"},
		{"-foo", 0, "must start"},
		{"+foo", 0, "must start"},
		{".foo", 0, "must start"},
		{"Libc6", 0, "must start"},
		{"libC6", 3, "'C'"},
		{"lib c6", 3, "' '"},
		{"libc6;id", 5, "';'"},
		{"libc6$x", 5, "'$'"},
		{"libc6`", 5, "'`'"},
		{"libc6\n", 5, `'\n'`},
		{"libc6=1.0", 5, "'='"},
		{"libc6:amd64", 5, "':'"},
		{"lib_c6", 3, "'_'"},
		{"libc6/bookworm", 5, "'/'"},
		{"libc6*", 5, "'*'"},
	} {
		err := ValidPackageName(tc.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("ValidPackageName(%q) = %v, want a *SyntaxError", tc.in, err)
			continue
		}
		if se.Offset != tc.offset || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("ValidPackageName(%q) = %v (offset %d), want offset %d and reason containing %q",
				tc.in, err, se.Offset, tc.offset, tc.reason)
		}
	}
}

func TestSplitArchQualifier(t *testing.T) {
	for _, tc := range []struct {
		in, name, arch string
		bad            bool
	}{
		{in: "libc6", name: "libc6"},
		{in: "libc6:amd64", name: "libc6", arch: "amd64"},
		{in: "libc6:i386", name: "libc6", arch: "i386"},
		{in: "libc6:kfreebsd-amd64", name: "libc6", arch: "kfreebsd-amd64"},
		{in: "libc6:", bad: true},
		{in: ":amd64", bad: true},
		{in: "libc6:amd64:x", bad: true},
		{in: "libc6:AMD64", bad: true},
		{in: "libc6:-amd64", bad: true},
		{in: "libc6:amd64;id", bad: true},
	} {
		name, arch, err := SplitArchQualifier(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("SplitArchQualifier(%q) = %q, %q, want an error", tc.in, name, arch)
			}
			continue
		}
		if err != nil || name != tc.name || arch != tc.arch {
			t.Errorf("SplitArchQualifier(%q) = %q, %q, %v; want %q, %q", tc.in, name, arch, err, tc.name, tc.arch)
		}
	}
}
