package hostops

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/patchfleet/patchfleet/events/deb"
)

// FuzzParsers feeds the same output to every parser: none may panic, and
// whatever they keep has passed validation.
func FuzzParsers(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("==> patchfleet:op state 1\n==> patchfleet:section packages\n-x\tabsent\n==> patchfleet:status 999\n"))
	f.Add([]byte("==> patchfleet:op install 1\r\n==> patchfleet:section install\r\nUnpacking a:b (1) over (\n==> patchfleet:end"))
	f.Fuzz(func(t *testing.T, out []byte) {
		checkPkgs := func(ps []PackageState) {
			for _, p := range ps {
				if err := deb.ValidPackageName(p.Name); err != nil {
					t.Fatalf("kept %+v: %v", p, err)
				}
				if p.Present {
					if err := deb.ValidVersion(p.Version); err != nil {
						t.Fatalf("kept %+v: %v", p, err)
					}
				}
			}
		}
		checkApt := func(a AptOutcome) {
			for _, c := range a.Changes {
				if deb.ValidPackageName(c.Name) != nil || deb.ValidVersion(c.To) != nil || c.From != "" && deb.ValidVersion(c.From) != nil {
					t.Fatalf("kept change %+v", c)
				}
			}
			for _, n := range a.Failed {
				if deb.ValidPackageName(n) != nil {
					t.Fatalf("kept failed %q", n)
				}
			}
		}
		if s, err := ParseState(out); err == nil {
			checkPkgs(s.Packages)
			for _, n := range s.RebootPackages {
				if deb.ValidPackageName(n) != nil {
					t.Fatalf("kept reboot package %q", n)
				}
			}
			if s.BootID != "" && validBootID(s.BootID) != nil {
				t.Fatalf("kept boot id %q", s.BootID)
			}
		}
		for _, parse := range []func([]byte) (InstallResult, error){ParseInstall, ParseFullUpgrade} {
			if r, err := parse(out); err == nil {
				checkPkgs(r.Before)
				checkPkgs(r.After)
				checkApt(r.Update)
				checkApt(r.Apt)
			}
		}
		if r, err := ParseRepair(out); err == nil {
			checkApt(r.Configure)
		}
		if r, err := ParseSecurityUpgrade(out); err == nil {
			checkPkgs(r.Before)
			checkPkgs(r.After)
			checkApt(r.Apt)
			for _, u := range r.Selected {
				if deb.ValidPackageName(u.Name) != nil || deb.ValidVersion(u.From) != nil || deb.ValidVersion(u.To) != nil {
					t.Fatalf("kept selected %+v", u)
				}
			}
		}
		if r, err := ParseUnattended(out); err == nil {
			if r.Package.Name != "" {
				checkPkgs([]PackageState{r.Package})
			}
		}
		if r, err := ParseReboot(out); err == nil && r.BootID != "" && validBootID(r.BootID) != nil {
			t.Fatalf("kept boot id %q", r.BootID)
		}
		if r, err := ParseHealth(out); err == nil && r.Healthy() && r.Status != 0 {
			t.Fatalf("healthy with status %d", r.Status)
		}
		if r, err := ParseDocker(out); err == nil {
			checkPkgs(r.Before)
			checkPkgs(r.After)
			for _, v := range []string{r.WeaveBefore, r.WeaveAfter} {
				if v != "" && !weaveVersion.MatchString(v) {
					t.Fatalf("kept weave version %q", v)
				}
			}
		}
	})
}

// FuzzParseOp: whatever ParseOp accepts has a valid name and JSON args.
func FuzzParseOp(f *testing.F) {
	f.Add(must(InstallScript([]Target{{Name: "pf-demo", Version: "1.1"}}, Apt{Update: true})))
	f.Add(RepairScript())
	f.Add("# patchfleet:op x v1\r\n# patchfleet:args null\r\n")
	f.Fuzz(func(t *testing.T, script string) {
		name, args, ok := ParseOp(script)
		if !ok {
			return
		}
		if !validOpName(name) {
			t.Fatalf("accepted op name %q", name)
		}
		if args != nil && !json.Valid(args) {
			t.Fatalf("accepted args %q", args)
		}
	})
}
