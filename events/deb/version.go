// Package deb validates and orders Debian package names and versions.
//
// Everything here is pure: values in, values out.
//
// # Ordering
//
// Compare and Version.Compare implement dpkg's algorithm (lib/dpkg/version.c:
// verrevcmp, dpkg_version_compare) directly rather than wrapping
// github.com/knqyf263/go-deb-version. That library was evaluated against the
// 142 vectors in testdata/debian-compare.tsv (taken from dpkg's and APT's own
// test suites and checked with dpkg --compare-versions) and differs from dpkg
// in ways a wrapper cannot fix cleanly:
//
//   - it refuses versions dpkg orders with only a warning (a-0 against b-0,
//     two of the 142 vectors);
//   - it converts digit runs to int, so runs of 20 or more digits saturate and
//     compare equal (1.100000000000000000000 = 1.100000000000000000001),
//     where dpkg compares digit strings of any length;
//   - it returns the difference of the first differing values, not -1/0/1;
//   - it trims surrounding spaces, accepts an empty revision ("1.0-"), a
//     signed epoch ("+1:1.0") and non-ASCII letters, all of which dpkg
//     refuses or treats differently.
//
// The algorithm is small and fully specified by dpkg, so this package carries
// its own copy; the tests prove it against all 142 vectors.
//
// # Validation is a security boundary
//
// Package names and versions from advisory feeds and host scans end up in
// remote commands such as apt-get install name=version. ValidPackageName and
// ValidVersion (and ParseVersion, which applies the same rules) accept only
// what Debian policy allows, which excludes every shell metacharacter, and
// report the offending character and its byte offset. Callers must still
// quote arguments: '~' after ':' can be tilde-expanded by bash in words that
// look like assignments.
package deb

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxVersionLen bounds a version string. Real versions are far shorter; the
// cap keeps hostile input from costing more than it should.
const MaxVersionLen = 256

// maxEpoch matches dpkg, which stores the epoch in an int and refuses
// anything above INT_MAX.
const maxEpoch = math.MaxInt32

// Version is a parsed Debian version: [epoch:]upstream[-revision].
type Version struct {
	Epoch    int
	Upstream string
	Revision string // empty when the version has no '-'
}

// String returns the version in canonical form: the epoch only when it is
// not zero, the revision only when it is not empty, as dpkg and APT print
// versions. A zero epoch is kept when the upstream version holds a ':', since
// without it the first ':' would be read as the epoch separator.
func (v Version) String() string {
	var b strings.Builder
	if v.Epoch != 0 || strings.IndexByte(v.Upstream, ':') >= 0 {
		b.WriteString(strconv.Itoa(v.Epoch))
		b.WriteByte(':')
	}
	b.WriteString(v.Upstream)
	if v.Revision != "" {
		b.WriteByte('-')
		b.WriteString(v.Revision)
	}
	return b.String()
}

// Compare orders v and w like dpkg: -1 if v < w, 0 if equal, +1 if v > w.
func (v Version) Compare(w Version) int {
	switch {
	case v.Epoch < w.Epoch:
		return -1
	case v.Epoch > w.Epoch:
		return 1
	}
	if c := verrevcmp(v.Upstream, w.Upstream); c != 0 {
		return c
	}
	return verrevcmp(v.Revision, w.Revision)
}

// ParseVersion parses a version that conforms to Debian policy (see
// ValidVersion). A Version returned without error is safe to print into a
// command line.
func ParseVersion(s string) (Version, error) {
	// Report the first character outside the policy alphabet before
	// anything structural, so the message points at the real problem.
	if len(s) <= MaxVersionLen {
		for i := 0; i < len(s); i++ {
			if c := s[i]; !isAlnum(c) && c != '.' && c != '+' && c != '~' && c != ':' && c != '-' {
				return Version{}, versionError(s, i, "character %s not allowed", quoteByte(c))
			}
		}
	}
	v, err := parseVersion(s)
	if err != nil {
		return Version{}, err
	}
	if err := checkPolicy(s, v); err != nil {
		return Version{}, err
	}
	return v, nil
}

// ValidVersion reports whether s is a version Debian policy allows: an
// optional epoch of digits, an upstream version that starts with a digit and
// holds only [A-Za-z0-9.+~-] (':' too when there is an epoch; '-' only when
// there is a revision), and a revision of [A-Za-z0-9.+~]. Empty strings,
// strings longer than MaxVersionLen, spaces, quotes and every other shell
// metacharacter are refused, naming the character and its byte offset.
func ValidVersion(s string) error {
	_, err := ParseVersion(s)
	return err
}

// Compare orders two version strings like dpkg --compare-versions. It
// accepts what dpkg accepts, including versions dpkg only warns about (an
// upstream version not starting with a digit, '_' in a revision), because
// installed third-party packages carry such versions and still need
// ordering. It refuses what dpkg refuses (empty parts, a bad epoch), as well
// as whitespace, bytes outside printable ASCII and strings longer than
// MaxVersionLen. Use ValidVersion before a version goes anywhere near a shell.
func Compare(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

// SyntaxError describes an invalid package name, architecture or version.
type SyntaxError struct {
	What   string // "version", "package name", "architecture"
	Input  string
	Offset int // byte offset of the offending character, or -1
	Reason string
}

func (e *SyntaxError) Error() string {
	in := e.Input
	if len(in) > 64 {
		in = in[:64] + "..."
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("invalid %s %q: %s at offset %d", e.What, in, e.Reason, e.Offset)
	}
	return fmt.Sprintf("invalid %s %q: %s", e.What, in, e.Reason)
}

func versionError(s string, off int, format string, args ...any) error {
	return &SyntaxError{What: "version", Input: s, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// parseVersion splits s the way dpkg's parseversion does (first ':' ends the
// epoch, last '-' starts the revision) and applies only the checks dpkg
// treats as errors, plus a printable-ASCII rule.
func parseVersion(s string) (Version, error) {
	if s == "" {
		return Version{}, versionError(s, -1, "empty")
	}
	if len(s) > MaxVersionLen {
		return Version{}, versionError(s, -1, "longer than %d bytes", MaxVersionLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return Version{}, versionError(s, i, "character %s not allowed", quoteByte(c))
		}
	}
	var v Version
	rest := s
	if colon := strings.IndexByte(s, ':'); colon >= 0 {
		if colon == 0 {
			return Version{}, versionError(s, 0, "empty epoch")
		}
		for i := 0; i < colon; i++ {
			if !isDigit(s[i]) {
				return Version{}, versionError(s, i, "character %s not allowed in epoch", quoteByte(s[i]))
			}
		}
		e, err := strconv.Atoi(s[:colon])
		if err != nil || e > maxEpoch {
			return Version{}, versionError(s, 0, "epoch larger than %d", maxEpoch)
		}
		v.Epoch = e
		rest = s[colon+1:]
		if rest == "" {
			return Version{}, versionError(s, -1, "nothing after the epoch")
		}
	}
	v.Upstream = rest
	if hyphen := strings.LastIndexByte(rest, '-'); hyphen >= 0 {
		v.Upstream, v.Revision = rest[:hyphen], rest[hyphen+1:]
		if v.Revision == "" {
			return Version{}, versionError(s, len(s)-1, "empty revision after '-'")
		}
		if v.Upstream == "" {
			return Version{}, versionError(s, len(s)-len(rest), "empty upstream version")
		}
	}
	return v, nil
}

// checkPolicy applies Debian policy 5.6.12 on top of parseVersion.
func checkPolicy(s string, v Version) error {
	upOff := len(s) - len(v.Upstream) // upstream starts after "epoch:"
	if v.Revision != "" {
		upOff -= len(v.Revision) + 1
	}
	if !isDigit(v.Upstream[0]) {
		return versionError(s, upOff, "upstream version must start with a digit, not %s", quoteByte(v.Upstream[0]))
	}
	hasEpoch := strings.IndexByte(s, ':') >= 0
	for i := 0; i < len(v.Upstream); i++ {
		c := v.Upstream[i]
		switch {
		case isAlnum(c), c == '.', c == '+', c == '~', c == '-':
			// '-' can only be here when there is a revision: the last one
			// was taken as the separator.
		case c == ':' && hasEpoch:
		default:
			return versionError(s, upOff+i, "character %s not allowed in upstream version", quoteByte(c))
		}
	}
	revOff := len(s) - len(v.Revision)
	for i := 0; i < len(v.Revision); i++ {
		c := v.Revision[i]
		if !isAlnum(c) && c != '.' && c != '+' && c != '~' {
			return versionError(s, revOff+i, "character %s not allowed in revision", quoteByte(c))
		}
	}
	return nil
}

// verrevcmp is dpkg's comparison of an upstream version or a revision:
// alternate runs of non-digits (compared character by character with
// order) and digits (compared numerically, without converting, so any
// length works).
func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(a, i), order(b, j)
			if ac != bc {
				return sign(ac - bc)
			}
			// Equal orders here mean both sides hold the same non-digit
			// character, so neither index is at the end.
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		firstDiff := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

// order weights a character in a non-digit run: '~' before the end of the
// string, the end before letters, letters before everything else.
func order(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case isAlpha(c):
		return int(c)
	case c == '~':
		return -1
	default:
		return int(c) + 256
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// quoteByte quotes c for an error message; bytes outside ASCII are shown
// as \xNN rather than as the Latin-1 character they happen to encode.
func quoteByte(c byte) string {
	if c < utf8.RuneSelf {
		return strconv.QuoteRuneToASCII(rune(c))
	}
	return fmt.Sprintf(`'\x%02x'`, c)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
