// Package gemver validates and orders RubyGems versions the way Gem::Version
// does. Gem versions are not Debian versions: "1.0.a" sorts before "1.0"
// (a letter starts a prerelease), and "1.0-rc1" means "1.0.pre.rc1".
//
// It is written here rather than imported because validation is a security
// boundary (versions end up in commands and messages) and must be stricter
// than Gem::Version, which tolerates surrounding whitespace; the ordering
// itself is a short transcription of Gem::Version#<=>.
package gemver

import (
	"fmt"
	"strings"
)

// MaxLen bounds a version; real gem versions are well under 64 bytes.
const MaxLen = 128

// Valid reports whether s matches Gem::Version's pattern
// `[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?` with nothing
// around it.
func Valid(s string) error {
	if s == "" {
		return fmt.Errorf("invalid gem version %q: empty", s)
	}
	if len(s) > MaxLen {
		return fmt.Errorf("invalid gem version %.32q...: longer than %d bytes", s, MaxLen)
	}
	main, pre, hasPre := strings.Cut(s, "-")
	if err := checkParts(s, main, isAlnum, true); err != nil {
		return err
	}
	if hasPre {
		return checkParts(s, pre, func(c byte) bool { return isAlnum(c) || c == '-' }, false)
	}
	return nil
}

func checkParts(s, part string, ok func(byte) bool, leadingDigits bool) error {
	for i, p := range strings.Split(part, ".") {
		if p == "" {
			return fmt.Errorf("invalid gem version %q: empty segment", s)
		}
		for j := 0; j < len(p); j++ {
			c := p[j]
			if i == 0 && leadingDigits && !isDigit(c) {
				return fmt.Errorf("invalid gem version %q: must start with digits, not %q", s, c)
			}
			if !ok(c) {
				return fmt.Errorf("invalid gem version %q: character %q not allowed", s, c)
			}
		}
	}
	return nil
}

// segment is a run of digits or of letters; Gem::Version compares numbers
// numerically and letters as strings, and a string sorts before a number.
type segment struct {
	s   string
	num bool
}

func segments(s string) []segment {
	s = strings.ReplaceAll(s, "-", ".pre.")
	var out []segment
	for i := 0; i < len(s); {
		j := i
		switch {
		case isDigit(s[i]):
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			n := strings.TrimLeft(s[i:j], "0")
			if n == "" {
				n = "0"
			}
			out = append(out, segment{n, true})
		case isAlpha(s[i]):
			for j < len(s) && isAlpha(s[j]) {
				j++
			}
			out = append(out, segment{s[i:j], false})
		default:
			j++
		}
		i = j
	}
	return out
}

// canonical drops trailing zeros from the numeric release part and from each
// numeric run before the prerelease, as Gem::Version#canonical_segments does,
// so that 1.0 == 1 and 1.0.a == 1.a.
func canonical(segs []segment) []segment {
	split := len(segs)
	for i, s := range segs {
		if !s.num {
			split = i
			break
		}
	}
	trim := func(ss []segment) []segment {
		for len(ss) > 0 && ss[len(ss)-1].num && ss[len(ss)-1].s == "0" {
			ss = ss[:len(ss)-1]
		}
		return ss
	}
	head := trim(append([]segment(nil), segs[:split]...))
	return append(head, trim(append([]segment(nil), segs[split:]...))...)
}

// Compare orders two valid gem versions: -1, 0 or +1. It returns an error if
// either is not Valid.
func Compare(a, b string) (int, error) {
	if err := Valid(a); err != nil {
		return 0, err
	}
	if err := Valid(b); err != nil {
		return 0, err
	}
	return compare(canonical(segments(a)), canonical(segments(b))), nil
}

func compare(l, r []segment) int {
	zero := segment{"0", true}
	for i := 0; i < max(len(l), len(r)); i++ {
		ls, rs := zero, zero
		if i < len(l) {
			ls = l[i]
		}
		if i < len(r) {
			rs = r[i]
		}
		if ls == rs {
			continue
		}
		switch {
		case !ls.num && rs.num:
			return -1
		case ls.num && !rs.num:
			return 1
		case ls.num:
			if len(ls.s) != len(rs.s) {
				return sign(len(ls.s) - len(rs.s))
			}
		}
		return strings.Compare(ls.s, rs.s)
	}
	return 0
}

// Prerelease reports whether a valid version contains a letter, which makes
// it a prerelease for RubyGems.
func Prerelease(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 128 && isAlpha(byte(r)) }) >= 0
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

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
