package hostfacts

import (
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events/deb"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(readFile(f, "testdata/scan-debian12-nobody.txt")))
	f.Add([]byte(minimal("packages", "adduser\t3.134\tall\tadduser\t3.134\tii \nx\ty\n", "held", "a:b\n",
		"component rails /srv/app", "    rails (7.0.8.1)", "component weave", "weave script 2.8.1")))
	f.Add([]byte("==> patchfleet:scan 1\n==> patchfleet:section os-release\nID=\"a\\\"\n==> patchfleet:stderr\n==> patchfleet:status 999\n"))
	f.Add([]byte("==> patchfleet:scan 1\r\n==> patchfleet:end"))
	f.Fuzz(func(t *testing.T, out []byte) {
		facts, err := Parse(out)
		if err != nil {
			return
		}
		// Whatever is stored has passed validation.
		for _, p := range facts.Packages {
			for _, err := range []error{
				deb.ValidPackageName(p.Name), deb.ValidVersion(p.Version), deb.ValidArchitecture(p.Arch),
				deb.ValidPackageName(p.SourceName), deb.ValidVersion(p.SourceVersion), validStatus(p.Status),
			} {
				if err != nil {
					t.Fatalf("stored %+v: %v", p, err)
				}
			}
		}
		for _, h := range facts.Held {
			if _, _, err := deb.SplitArchQualifier(h); err != nil {
				t.Fatalf("stored held %q: %v", h, err)
			}
		}
		for _, c := range facts.Components {
			if c.Present == (c.Version == "") {
				t.Fatalf("component %+v: Present disagrees with Version", c)
			}
			if strings.ContainsAny(c.App, "\n\r") {
				t.Fatalf("component app %q holds a line break", c.App)
			}
		}
		for _, p := range facts.Problems {
			if p.Reason == "" {
				t.Fatalf("problem without a reason: %+v", p)
			}
		}
	})
}
