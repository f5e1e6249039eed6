package gemver

import "testing"

func TestCompare(t *testing.T) {
	// Expectations from RubyGems' test_gem_version.rb (test_spaceship,
	// test_prerelease, test_canonical_segments).
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0.0", 0},
		{"1.0", "1", 0},
		{"1.8.2", "0.0.0", 1},
		{"1.8.2", "1.8.2.a", 1},
		{"1.8.2.b", "1.8.2.a", 1},
		{"1.8.2.a", "1.8.2", -1},
		{"1.8.2.a10", "1.8.2.a9", 1},
		{"1.0.0.a10", "1.0.0.a9", 1},
		{"0.beta.1", "0.0.beta.1", 0},
		{"0.0.beta", "0.0.beta.1", -1},
		{"5.a", "5.0.0.rc2", -1},
		{"5.x", "5.0.0.rc2", 1},
		{"1.0.a", "1.0.b", -1},
		{"1.0-rc1", "1.0.pre.rc1", 0},
		{"1.0-rc1", "1.0", -1},
		{"6.1.7.1", "6.1.7", 1},
		{"6.1.7.1", "6.1.10", -1},
		{"5.2.8.15", "5.2.8.2", 1},
		{"7.0.4.1", "7.0.4.1", 0},
		{"10", "9", 1},
		{"01", "1", 0},
		{"99999999999999999999999", "99999999999999999999998", 1},
	}
	for _, tt := range tests {
		got, err := Compare(tt.a, tt.b)
		if err != nil {
			t.Fatalf("Compare(%q, %q): %v", tt.a, tt.b, err)
		}
		if got != tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if back, _ := Compare(tt.b, tt.a); back != -tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.b, tt.a, back, -tt.want)
		}
	}
}

func TestValid(t *testing.T) {
	for _, s := range []string{"0", "1.0", "6.1.7.1", "1.0.0.rc1", "1.0-rc1", "1.0-x-y.z", "2.0.0.beta3"} {
		if err := Valid(s); err != nil {
			t.Errorf("Valid(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"", " 1.0", "1.0 ", "a1.0", ".1", "1..0", "1.0;rm", "1.0$(id)", "1.0-", "1_0", "1.0\n", "-1"} {
		if err := Valid(s); err == nil {
			t.Errorf("Valid(%q) = nil, want an error", s)
		}
	}
}

func TestPrerelease(t *testing.T) {
	if !Prerelease("1.0.rc1") || Prerelease("1.0.1") {
		t.Error("Prerelease misclassifies")
	}
}

func FuzzCompare(f *testing.F) {
	f.Add("1.0", "1.0.a")
	f.Add("6.1.7.1", "5.2.8.15")
	f.Add("1.0-rc1", "1.0.pre.rc1")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, err := Compare(a, b)
		if err != nil {
			return
		}
		ba, _ := Compare(b, a)
		if ab != -ba {
			t.Fatalf("Compare(%q,%q)=%d but Compare(%q,%q)=%d", a, b, ab, b, a, ba)
		}
		if aa, _ := Compare(a, a); aa != 0 {
			t.Fatalf("Compare(%q,%q)=%d", a, a, aa)
		}
	})
}
