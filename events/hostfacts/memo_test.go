package hostfacts

import (
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestParserRemembersOnlyWhatParseWouldSay parses reports twice through one Parser, the
// second time from its memory, and wants exactly what Parse says of each.
func TestParserRemembersOnlyWhatParseWouldSay(t *testing.T) {
	debian := readFile(t, "testdata/debian12-dpkg.tsv")
	lagging := strings.Replace(debian, "\tii ", "\tii", 1) // same packages, one line differs
	bad := debian + "\nevil;reboot\t1.0\tamd64\t\t\tii \n"
	reports := map[string]string{
		"debian12":                         minimal("packages", debian),
		"same list, other lines before it": minimal("os-release", "ID=debian\nVERSION_ID=\"12\"\nNAME=Debian\n", "packages", debian),
		"one line differs":                 minimal("packages", lagging),
		"a bad line":                       minimal("packages", bad),
		"a bad line, shifted":              minimal("os-release", "ID=debian\nVERSION_ID=\"12\"\nNAME=Debian\n", "packages", bad),
		"no packages":                      minimal(),
	}
	m := NewParser(8)
	for round := range 2 {
		for name, r := range reports {
			want, werr := Parse([]byte(r))
			got, gerr := m.Parse([]byte(r))
			if werr != nil || gerr != nil {
				t.Fatalf("%s: errors %v, %v", name, werr, gerr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round %d, %s: the parser's facts differ from Parse's", round, name)
			}
		}
	}
	// Only the clean lists are remembered: debian12, the one with a line changed, the empty one.
	if len(m.lists) != 3 {
		t.Errorf("%d lists remembered, want 3", len(m.lists))
	}
}

// TestParserSharesListsSafely appends to the packages a parse returned and parses again.
func TestParserSharesListsSafely(t *testing.T) {
	r := []byte(minimal("packages", readFile(t, "testdata/debian12-dpkg.tsv")))
	m := NewParser(1)
	first, err := m.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	n := len(first.Packages)
	_ = append(first.Packages, Package{Name: "appended"})
	second, err := m.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Packages) != n || cap(second.Packages) != n {
		t.Errorf("a remembered list of %d packages came back with length %d, capacity %d", n, len(second.Packages), cap(second.Packages))
	}
}

// TestParserForgetsTheLeastRecentlyUsed fills a parser of two lists with three.
func TestParserForgetsTheLeastRecentlyUsed(t *testing.T) {
	list := func(v string) []byte {
		return []byte(minimal("packages", "adduser\t"+v+"\tall\tadduser\t"+v+"\tii "))
	}
	m := NewParser(2)
	for _, v := range []string{"1", "2", "1", "3"} { // 2 is the least recently used when 3 comes
		f, err := m.Parse(list(v))
		if err != nil || len(f.Packages) != 1 || f.Packages[0].Version != v {
			t.Fatalf("version %s: %+v, %v", v, f.Packages, err)
		}
	}
	var kept []string
	for _, e := range m.lists {
		kept = append(kept, e.pkgs[0].Version)
	}
	if len(kept) != 2 || strings.Contains(strings.Join(kept, ""), "2") {
		t.Errorf("kept versions %v, want 1 and 3", kept)
	}
}

// TestParserConcurrently parses from many goroutines at once (run with -race).
func TestParserConcurrently(t *testing.T) {
	debian := readFile(t, "testdata/debian12-dpkg.tsv")
	reports := [][]byte{[]byte(minimal("packages", debian)), []byte(minimal("packages", strings.Replace(debian, "\tii ", "\tii", 1)))}
	want := make([]Facts, len(reports))
	for i, r := range reports {
		want[i], _ = Parse(r)
	}
	m := NewParser(1) // the two lists keep displacing each other
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				r := (g + i) % len(reports)
				got, err := m.Parse(reports[r])
				if err != nil || !reflect.DeepEqual(got, want[r]) {
					t.Errorf("report %d: facts differ from Parse's (%v)", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkParserDebian12 parses the report of BenchmarkParseDebian12 with a Parser that
// has read it before: a scan of a host built from a known image.
func BenchmarkParserDebian12(b *testing.B) {
	out := []byte(minimal(
		"os-release", readFile(b, "testdata/debian12-os-release"),
		"packages", readFile(b, "testdata/debian12-dpkg.tsv"),
	))
	m := NewParser(1)
	b.ReportAllocs()
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if _, err := m.Parse(out); err != nil {
			b.Fatal(err)
		}
	}
}
