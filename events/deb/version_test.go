package deb

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	debversion "github.com/knqyf263/go-deb-version"
)

type vector struct {
	line int
	a, b string
	want int
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/debian-compare.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			continue // header
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			t.Fatalf("debian-compare.tsv:%d: %d fields, want 3", n, len(f))
		}
		want, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("debian-compare.tsv:%d: %v", n, err)
		}
		vs = append(vs, vector{n, f[0], f[1], want})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestCompareVectors checks every pair from dpkg's and APT's test suites,
// both ways round.
func TestCompareVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) != 142 {
		t.Fatalf("got %d vectors, want 142", len(vs))
	}
	for _, v := range vs {
		got, err := Compare(v.a, v.b)
		if err != nil {
			t.Errorf("line %d: Compare(%q, %q): %v", v.line, v.a, v.b, err)
			continue
		}
		if got != v.want {
			t.Errorf("line %d: Compare(%q, %q) = %d, want %d", v.line, v.a, v.b, got, v.want)
		}
		if rev, _ := Compare(v.b, v.a); rev != -v.want {
			t.Errorf("line %d: Compare(%q, %q) = %d, want %d", v.line, v.b, v.a, rev, -v.want)
		}
	}
}

// TestGoDebVersionDifferences pins down the reasons given in the package
// doc for not wrapping github.com/knqyf263/go-deb-version.
func TestGoDebVersionDifferences(t *testing.T) {
	lib := func(a, b string) (int, error) {
		va, err := debversion.NewVersion(a)
		if err != nil {
			return 0, err
		}
		vb, err := debversion.NewVersion(b)
		if err != nil {
			return 0, err
		}
		return va.Compare(vb), nil
	}
	misses := 0
	for _, v := range loadVectors(t) {
		got, err := lib(v.a, v.b)
		if err != nil || sign(got) != v.want {
			misses++
		}
	}
	if misses != 2 {
		t.Errorf("go-deb-version misses %d vectors, the package doc says 2", misses)
	}
	// Long digit runs: dpkg and this package order them, the library saturates.
	a, b := "1.100000000000000000000", "1.100000000000000000001"
	if got, _ := lib(a, b); got != 0 {
		t.Errorf("go-deb-version now orders %s and %s (%d); revisit the package doc", a, b, got)
	}
	if got, _ := Compare(a, b); got != -1 {
		t.Errorf("Compare(%s, %s) = %d, want -1", a, b, got)
	}
	if got, _ := lib("1.0-", "1.0"); got != 0 {
		t.Errorf("go-deb-version now refuses or orders 1.0-; revisit the package doc")
	}
}

func TestCompareLongDigitRuns(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.99999999999999999999", "1.9999999999999999999", 1},
		{"1.000000000000000000000000000001", "1.1", 0},
		{"20230101123456789012345", "20230101123456789012346", -1},
		{"1:99999999999999999999999999", "2:0", -1},
	} {
		got, err := Compare(tc.a, tc.b)
		if err != nil || got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		str  string
	}{
		{"1.0", Version{0, "1.0", ""}, "1.0"},
		{"0:1.0", Version{0, "1.0", ""}, "1.0"},
		{"1:2.38.1-5+deb12u3", Version{1, "2.38.1", "5+deb12u3"}, "1:2.38.1-5+deb12u3"},
		{"5.2.15-2+b8", Version{0, "5.2.15", "2+b8"}, "5.2.15-2+b8"},
		{"1.18.36-0.17.35-18", Version{0, "1.18.36-0.17.35", "18"}, "1.18.36-0.17.35-18"},
		{"9:1.18.36:5.4-20", Version{9, "1.18.36:5.4", "20"}, "9:1.18.36:5.4-20"},
		{"2.2~rc-4", Version{0, "2.2~rc", "4"}, "2.2~rc-4"},
		{"1.4+OOo3.0.0~", Version{0, "1.4+OOo3.0.0~", ""}, "1.4+OOo3.0.0~"},
		{"2147483647:1", Version{2147483647, "1", ""}, "2147483647:1"},
		// A zero epoch stays when dropping it would change the parse.
		{"0:0:0-0", Version{0, "0:0", "0"}, "0:0:0-0"},
	} {
		got, err := ParseVersion(tc.in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseVersion(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.str {
			t.Errorf("ParseVersion(%q).String() = %q, want %q", tc.in, s, tc.str)
		}
	}
}

func TestValidVersionRejects(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		reason string // substring of the reason
	}{
		{"", -1, "empty"},
		{strings.Repeat("1", MaxVersionLen+1), -1, "longer than 256"},
		{"1.0 ", 3, "' '"},
		{"1.0;reboot", 3, "';'"},
		{"1.0$(id)", 3, "'$'"},
		{"1.0`id`", 3, "'`'"},
		{"1.0'", 3, `'\''`},
		{`1.0"`, 3, `'"'`},
		{"1.0\nx", 3, `'\n'`},
		{"1.0|x", 3, "'|'"},
		{"1.0&", 3, "'&'"},
		{"1.0>x", 3, "'>'"},
		{"1.0*", 3, "'*'"},
		{"1.0\\", 3, `'\\'`},
		{"1.\x00", 2, `'\x00'`},
		{"1.\xc3\xa9", 2, `'\xc3'`},
		{"-1.0", 0, "empty upstream"},
		{"--force-yes", 0, "must start with a digit"},
		{"1.0-", 3, "empty revision"},
		{":1.0", 0, "empty epoch"},
		{"1:", -1, "nothing after the epoch"},
		{"a:1.0", 0, "'a' not allowed in epoch"},
		{"+1:1.0", 0, "'+' not allowed in epoch"},
		{"2147483648:1", 0, "epoch larger"},
		{"abc", 0, "must start with a digit"},
		{"a-0", 0, "must start with a digit"},
		{"1:x1", 2, "must start with a digit"},
		{"6.0-4.el6.x86_64", 13, "'_' not allowed"},
		{"1.0_1", 3, "'_' not allowed"},
		{"1.2:3", 1, "'.' not allowed in epoch"},
		{"1-2:3", 1, "'-' not allowed in epoch"},
		{"1:2-3:4", 5, "':' not allowed in revision"},
		{"1.0=2", 3, "'='"},
		{"1.0#", 3, "'#'"},
		{"1.0/2", 3, "'/'"},
	} {
		err := ValidVersion(tc.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("ValidVersion(%q) = %v, want a *SyntaxError", tc.in, err)
			continue
		}
		if se.Offset != tc.offset || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("ValidVersion(%q) = %v (offset %d), want offset %d and reason containing %q",
				tc.in, err, se.Offset, tc.offset, tc.reason)
		}
	}
}

func TestCompareRejects(t *testing.T) {
	// These are the pairs dpkg's library tests use but dpkg --compare-versions
	// refuses (see testdata/README.md).
	for _, in := range []string{"0foo-", "-0.6.5", "0:0-", "", " 1.0", "1.0\t", "1:", "x:1"} {
		if _, err := Compare(in, "1.0"); err == nil {
			t.Errorf("Compare(%q, 1.0) succeeded", in)
		}
		if _, err := Compare("1.0", in); err == nil {
			t.Errorf("Compare(1.0, %q) succeeded", in)
		}
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	err := ValidVersion("1.0;rm -rf /")
	want := `invalid version "1.0;rm -rf /": character ';' not allowed at offset 3`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	err = ValidVersion(strings.Repeat("1", 300))
	if err == nil || len(err.Error()) > 160 {
		t.Errorf("long input not shortened in the message: %v", err)
	}
}
