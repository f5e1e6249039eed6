package dsalist

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

func decode(t *testing.T, in string) (map[string]advisory.Advisory, []*RecordError) {
	t.Helper()
	got := map[string]advisory.Advisory{}
	var bads []*RecordError
	if err := Decode(strings.NewReader(in), func(a advisory.Advisory) error {
		got[a.ID] = a
		return nil
	}, func(e *RecordError) { bads = append(bads, e) }); err != nil {
		t.Fatal(err)
	}
	return got, bads
}

func TestSample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "debian", "DSA"))
	if err != nil {
		t.Fatal(err)
	}
	if !LooksLike(b) {
		t.Error("sample not recognised")
	}
	got, bads := decode(t, string(b))
	// DSA-2819-1, DSA-3281-1 and DSA-4205-1 fix nothing.
	if len(got) != 7 || len(bads) != 3 {
		t.Errorf("%d advisories, bad %v", len(got), bads)
	}
	for _, b := range bads {
		if !errors.Is(b, advisory.ErrNoAffected) {
			t.Errorf("bad: %v", b)
		}
	}
	d := got["DSA-140"]
	if len(d.Aliases) != 2 || len(d.Affected) != 2 || d.Affected[0].Release != "3.0" || d.Affected[1].Package != "libpng3" ||
		d.Affected[1].FixedVersion != "1.2.1-1.1.woody.2" || d.Published.Format("2006-01-02") != "2002-08-05" {
		t.Errorf("DSA-140 = %+v", d)
	}
	s := got["DSA-5970-1"]
	if s.Affected[0].Release != "12" || s.Affected[0].FixedVersion != "5.8.0-1+deb12u1" || s.Title != "sope - security update" {
		t.Errorf("DSA-5970-1 = %+v", s)
	}
	if o := got["DSA-2808-2"]; len(o.Affected) != 2 || o.Affected[0].Release != "6.0" || o.Affected[1].Release != "7" {
		t.Errorf("DSA-2808-2 = %+v", o.Affected)
	}
}

func TestBadEntry(t *testing.T) {
	in := "[01 Aug 2002] DSA-141 mpack - buffer overflow\n\t[woody] - mpack 1.5-7woody2;reboot\n" +
		"[01 Aug 2002] DSA-139 super - format string\n\t{CVE-2002-0817}\n\t[woody] - super 3.16.1-1.2\n" +
		"[99 Foo 2002] DSA-138 x - y\n\t[woody] - gallery 1.2.5-7\n"
	got, bads := decode(t, in)
	if len(got) != 1 || got["DSA-139"].Affected[0].FixedVersion != "3.16.1-1.2" {
		t.Errorf("got %v", got)
	}
	if len(bads) != 2 || !strings.Contains(bads[0].Error(), `debian dsa list DSA-141 (line 1): advisory DSA-141: affected[0] debian 3.0 mpack: fixed version: invalid version "1.5-7woody2;reboot"`) {
		t.Errorf("bad %v", bads)
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "debian", "DSA"))
	f.Add(string(b))
	f.Fuzz(func(t *testing.T, in string) {
		_ = Decode(strings.NewReader(in), func(a advisory.Advisory) error {
			if err := a.Validate(); err != nil {
				t.Fatal(err)
			}
			return nil
		}, func(e *RecordError) {
			if e.Err == nil {
				t.Fatal("bad record without reason")
			}
		})
	})
}
