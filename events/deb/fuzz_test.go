package deb

import (
	"regexp"
	"strings"
	"testing"

	debversion "github.com/knqyf263/go-deb-version"
)

// shellMeta holds every byte a POSIX shell treats specially somewhere in a
// word, plus whitespace. '~' is absent on purpose: policy allows it in
// versions (see the package doc).
const shellMeta = "|&;<>()$`\\\"' \t\n\r*?[]#={}!%^,"

func noShellMeta(t *testing.T, what, s string) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || strings.IndexByte(shellMeta, c) >= 0 {
			t.Fatalf("valid %s %q holds %q at offset %d", what, s, c, i)
		}
	}
}

// longDigits finds digit runs go-deb-version cannot hold in an int.
var longDigits = regexp.MustCompile(`[0-9]{19,}`)

func FuzzParseVersion(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.a, v.b)
	}
	f.Add("1.0;id", "1:1.0-1")
	f.Add("0foo-", "-0.6.5")
	f.Add("1.100000000000000000000", "1.100000000000000000001")
	f.Fuzz(func(t *testing.T, a, b string) {
		ca, errA := Compare(a, a)
		cab, errAB := Compare(a, b)
		cba, errBA := Compare(b, a)
		if errA == nil && ca != 0 {
			t.Fatalf("Compare(%q, %q) = %d, want 0", a, a, ca)
		}
		if (errAB == nil) != (errBA == nil) {
			t.Fatalf("Compare(%q, %q) err %v but reversed err %v", a, b, errAB, errBA)
		}
		if errAB == nil && cab != -cba {
			t.Fatalf("Compare(%q, %q) = %d but reversed = %d", a, b, cab, cba)
		}
		if errAB == nil && (cab < -1 || cab > 1) {
			t.Fatalf("Compare(%q, %q) = %d, want -1, 0 or 1", a, b, cab)
		}

		for _, s := range []string{a, b} {
			if ValidPackageName(s) == nil {
				noShellMeta(t, "package name", s)
			}
			v, err := ParseVersion(s)
			if err != nil {
				continue
			}
			noShellMeta(t, "version", s)
			if _, err := Compare(s, s); err != nil {
				t.Fatalf("ParseVersion accepts %q but Compare refuses it: %v", s, err)
			}
			w, err := ParseVersion(v.String())
			if err != nil || w.Compare(v) != 0 || w.String() != v.String() {
				t.Fatalf("%q: String %q does not round-trip: %v", s, v.String(), err)
			}
		}

		// Where go-deb-version is sound (policy-valid input, digit runs
		// that fit an int) it must agree with us.
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		if errA != nil || errB != nil || longDigits.MatchString(a) || longDigits.MatchString(b) {
			return
		}
		la, err1 := debversion.NewVersion(a)
		lb, err2 := debversion.NewVersion(b)
		if err1 != nil || err2 != nil {
			t.Fatalf("go-deb-version refuses policy-valid %q or %q: %v %v", a, b, err1, err2)
		}
		if got, want := va.Compare(vb), sign(la.Compare(lb)); got != want {
			t.Fatalf("Compare(%q, %q) = %d, go-deb-version says %d", a, b, got, want)
		}
	})
}
