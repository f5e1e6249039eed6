package events_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

var update = flag.Bool("update", false, "rewrite the golden files from the samples")

func goldenPath(s events.Spec) string {
	return filepath.Join("testdata", "golden", fmt.Sprintf("%s.v%d.json", s.Type, s.Version))
}

// TestGolden guards compatibility: every event of the catalog has a golden file written by a
// producer of this schema version, and today's code must decode it, validate it and encode it
// back to the same JSON. A renamed or removed field, or a changed type, fails here.
func TestGolden(t *testing.T) {
	bySpec := map[string]events.Event{}
	for _, e := range samples {
		bySpec[fmt.Sprintf("%s.v%d", e.EventType(), e.SchemaVersion())] = e
	}
	for _, spec := range events.Catalog() {
		t.Run(spec.Type, func(t *testing.T) {
			path := goldenPath(spec)
			if *update {
				sample, ok := bySpec[fmt.Sprintf("%s.v%d", spec.Type, spec.Version)]
				if !ok {
					t.Fatalf("no sample for %s v%d", spec.Type, spec.Version)
				}
				env, err := events.Wrap(events.DerivedID(spec.Type), sample, events.Origin{Producer: "golden", CorrelationID: "r-1", CausationID: "0193f3a2-0000-7000-8000-000000000000"}, t0)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.MarshalIndent(env, "", "  ")
				if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("every event needs a golden file (go test -run TestGolden -update): %v", err)
			}
			env, err := events.DecodeEnvelope(raw)
			if err != nil {
				t.Fatal(err)
			}
			e := spec.New()
			if err := events.DecodeData(env, e); err != nil {
				t.Fatalf("golden %s no longer decodes: %v", path, err)
			}
			again, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, env.Data, again) {
				t.Errorf("golden %s does not survive decode+encode:\n golden: %s\n now:    %s", path, env.Data, again)
			}
			m, err := events.Encode(env)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != spec.Subject || m.ID != env.ID {
				t.Errorf("encoded to %s/%s, want %s/%s", m.Subject, m.ID, spec.Subject, env.ID)
			}
		})
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestCatalogHasEveryProductEvent(t *testing.T) {
	// The names of PRODUCT.md are the contract.
	want := []string{"SecurityAdvisoryPublished", "AdvisoryWithdrawn", "HostRegistered", "HostDecommissioned",
		"HostInventoryReported", "HostDriftDetected", "RebootRequired", "RolloutPlanned", "RolloutRequested",
		"RolloutApprovalRequested", "RolloutApproved", "RolloutPaused", "RolloutResumed", "RolloutCancelled",
		"WaveStarted", "WaveCompleted", "RolloutHalted", "RolloutCompleted", "UpgradeRequested", "UpgradeStarted",
		"UpgradeCompleted", "UpgradeFailed", "HostRebooted"}
	for _, typ := range want {
		if _, ok := events.Lookup(typ, 1); !ok {
			t.Errorf("%s v1 missing from the catalog", typ)
		}
	}
	subjects := map[string]bool{}
	for _, s := range events.Catalog() {
		if subjects[s.Subject] {
			t.Errorf("subject %s used twice", s.Subject)
		}
		subjects[s.Subject] = true
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	good, err := events.Wrap("id-1", events.HostDecommissioned{HostID: "h1"}, events.Origin{Producer: "p", CorrelationID: "c"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	goodJSON, _ := json.Marshal(good)
	cases := map[string][]byte{
		"not json":      []byte("{"),
		"no id":         bytes.Replace(goodJSON, []byte(`"id":"id-1"`), []byte(`"id":""`), 1),
		"no type":       bytes.Replace(goodJSON, []byte(`"type":"HostDecommissioned"`), []byte(`"type":""`), 1),
		"other type":    bytes.Replace(goodJSON, []byte(`"type":"HostDecommissioned"`), []byte(`"type":"HostRegistered"`), 1),
		"invalid data":  bytes.Replace(goodJSON, []byte(`"host_id":"h1"`), []byte(`"host_id":""`), 1),
		"data of array": bytes.Replace(goodJSON, []byte(`{"host_id":"h1"}`), []byte(`[1]`), 1),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			env, err := events.DecodeEnvelope(raw)
			if err == nil {
				err = events.DecodeData(env, &events.HostDecommissioned{})
			}
			if err == nil || !events.IsPermanent(err) {
				t.Fatalf("got %v, want a permanent (invalid event) error", err)
			}
		})
	}
}

func TestValidationRejectsShellInPackages(t *testing.T) {
	for _, name := range []string{"foo;rm -rf /", "$(reboot)", "`id`", "-oAPT::x=1", "pkg\nname", "Pkg"} {
		e := events.UpgradeRequested{JobID: "j", RolloutID: "r", HostID: "h", Kind: events.KindSecurity,
			Strategy: events.StrategyInPlace, Reboot: events.RebootNever, Packages: []events.PackageTarget{{Name: name}}}
		if err := e.Validate(); err == nil {
			t.Errorf("package name %q validated", name)
		}
	}
	for _, v := range []string{"1.0;id", "$(id)", "1.0 2", "-1", "1.0\n"} {
		e := events.UpgradeRequested{JobID: "j", RolloutID: "r", HostID: "h", Kind: events.KindSecurity,
			Strategy: events.StrategyInPlace, Reboot: events.RebootNever, Packages: []events.PackageTarget{{Name: "openssl", MinVersion: v}}}
		if err := e.Validate(); err == nil {
			t.Errorf("version %q validated", v)
		}
	}
}

func TestDerivedIDIsStable(t *testing.T) {
	a, b := events.DerivedID("DSA-1", "2"), events.DerivedID("DSA-1", "2")
	if a != b {
		t.Fatalf("DerivedID not stable: %s %s", a, b)
	}
	if events.DerivedID("DSA-1", "2") == events.DerivedID("DSA-12", "") || events.DerivedID("a", "bc") == events.DerivedID("ab", "c") {
		t.Fatal("DerivedID collides on part boundaries")
	}
}

// An advisory's problems name the affected entry and field they are in, and a valid one
// has none.
func TestAdvisoryValidationNamesTheField(t *testing.T) {
	ok := events.Affected{Ecosystem: events.EcosystemDebian, Release: "12", Package: "openssl", FixedVersion: "3.0.17-1~deb12u2",
		Binaries: []events.BinaryPackage{{Name: "libssl3", Version: "3.0.17-1~deb12u2"}}}
	bad := ok
	bad.Ranges = []events.VersionRange{{Introduced: "0", Fixed: "1.0;id"}}
	bad.Binaries = []events.BinaryPackage{{Name: "libssl3"}, {Name: "openssl"}, {Name: "$(reboot)", Version: "`id`"}}
	gem := events.Affected{Ecosystem: events.EcosystemRubyGems}
	e := events.SecurityAdvisoryPublished{AdvisoryID: "DSA-1", Revision: 1, Source: "osv", Severity: events.SeverityHigh,
		Modified: time.Now(), Affected: []events.Affected{ok, bad, gem, {Ecosystem: "npm", Release: "x", Package: "y"}}}
	err := e.Validate()
	if err == nil {
		t.Fatal("validated")
	}
	for _, want := range []string{`affected[1] version: invalid version "1.0;id"`, "affected[1].binaries[2].name: ", "affected[1].binaries[2].version: ",
		"affected[2].package is required", `affected[3].ecosystem "npm" is not one of`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, unwanted := range []string{"affected[0]", "binaries[0]", "binaries[1]"} {
		if strings.Contains(err.Error(), unwanted) {
			t.Errorf("error %q names %s, which is valid", err, unwanted)
		}
	}
	e.Affected = []events.Affected{ok}
	if err := e.Validate(); err != nil {
		t.Errorf("valid advisory: %v", err)
	}
}
