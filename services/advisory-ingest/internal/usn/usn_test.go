package usn

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

func decode(t *testing.T, in string) ([]advisory.Advisory, []*RecordError, Page) {
	t.Helper()
	var got []advisory.Advisory
	var bads []*RecordError
	page, err := Decode(strings.NewReader(in), func(a advisory.Advisory) error {
		got = append(got, a)
		return nil
	}, func(e *RecordError) { bads = append(bads, e) })
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return got, bads, page
}

func TestSamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "usn", "*.json"))
	if len(files) != 3 {
		t.Fatalf("%d samples", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, bads, page := decode(t, string(b))
		if page.Total != 21 {
			t.Errorf("%s: total %d", f, page.Total)
		}
		// These 2004 notices list only binaries without versions for warty:
		// nothing names a source package, so each is skipped, none is bad.
		if len(got) != 0 {
			t.Errorf("%s: %d advisories from binary-only notices", f, len(got))
		}
		for _, b := range bads {
			if !errors.Is(b, advisory.ErrNoAffected) {
				t.Errorf("%s: %v", f, b)
			}
		}
		if want := strings.Count(string(b), `"type": "USN"`); len(bads) != want {
			t.Errorf("%s: %d skipped, want %d", f, len(bads), want)
		}
	}
}

// A current notice as the API serves it (USN-6409-1's jammy entry, cut
// down), with a binary whose source_link places it.
const modern = `{"notices": [
 {"id": "USN-6409-1", "title": "GNU C Library vulnerabilities", "published": "2023-10-03T18:04:23.013596",
  "cves_ids": ["CVE-2023-4527", "CVE-2023-4911"], "priority": "high",
  "releases": [{"codename": "jammy", "version": "22.04"}],
  "release_packages": {"jammy": [
    {"name": "glibc", "version": "2.35-0ubuntu3.4", "is_source": true},
    {"name": "libc6", "version": "2.35-0ubuntu3.4", "is_source": false, "source_link": "https://launchpad.net/ubuntu/+source/glibc"}],
   "lunar": [{"name": "glibc", "version": "2.37-0ubuntu2.1", "is_source": true}]}},
 {"id": "USN-9-1", "published": "2024-01-01T00:00:00", "release_packages": {"noble": [{"name": "bash", "version": "5.2;reboot", "is_source": true}]}},
 {"id": 7},
 {"title": "no id", "published": "2024-01-01T00:00:00"},
 {"id": "USN-10-1", "published": "2024-01-01T00:00:00", "release_packages": {"noble": [{"name": "bash", "version": "5.2.21-2ubuntu4", "is_source": true}]}}
], "offset": 0, "limit": 5, "total_results": 5}`

func TestModernNotice(t *testing.T) {
	got, bads, _ := decode(t, modern)
	if len(got) != 2 || got[0].ID != "USN-6409-1" || got[1].ID != "USN-10-1" {
		t.Fatalf("got %+v", got)
	}
	a := got[0]
	if a.Severity != events.SeverityHigh || len(a.Aliases) != 2 {
		t.Errorf("severity %s aliases %v", a.Severity, a.Aliases)
	}
	want := []events.Affected{
		{Ecosystem: "ubuntu", Release: "22.04", Package: "glibc", FixedVersion: "2.35-0ubuntu3.4",
			Binaries: []events.BinaryPackage{{Name: "libc6", Version: "2.35-0ubuntu3.4"}}},
		{Ecosystem: "ubuntu", Release: "23.04", Package: "glibc", FixedVersion: "2.37-0ubuntu2.1"},
	}
	if len(a.Affected) != 2 {
		t.Fatalf("affected %+v", a.Affected)
	}
	for i := range want {
		if a.Affected[i].Release != want[i].Release || a.Affected[i].FixedVersion != want[i].FixedVersion || len(a.Affected[i].Binaries) != len(want[i].Binaries) {
			t.Errorf("affected[%d] = %+v, want %+v", i, a.Affected[i], want[i])
		}
	}
	msgs := ""
	for _, b := range bads {
		msgs += b.Error() + "\n"
	}
	for _, w := range []string{
		`ubuntu notices USN-9-1: advisory USN-9-1: affected[0] ubuntu 24.04 bash: fixed version: invalid version "5.2;reboot"`,
		`ubuntu notices notices[2]: json: cannot unmarshal number`,
		`ubuntu notices notices[3]: id is missing`,
	} {
		if !strings.Contains(msgs, w) {
			t.Errorf("bad records\n%s\nlack %q", msgs, w)
		}
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "usn", "*.json"))
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Add([]byte(modern))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Decode(strings.NewReader(string(data)), func(a advisory.Advisory) error {
			if err := a.Validate(); err != nil {
				t.Fatalf("emitted advisory does not validate: %v", err)
			}
			return nil
		}, func(e *RecordError) {
			if e.Err == nil || e.Record == "" {
				t.Fatalf("bad record without reason: %+v", e)
			}
		})
	})
}
