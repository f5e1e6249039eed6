package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/planner/internal/quantity"
)

func load(t *testing.T, name string) *Policy {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return p
}

func TestProductExample(t *testing.T) {
	p := load(t, "product-example.yaml")
	if len(p.Fleets) != 1 {
		t.Fatalf("fleets = %d, want 1", len(p.Fleets))
	}
	f := p.Fleets[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", f.Name, "prod-web"},
		{"match", len(f.Match), 2},
		{"security_updates", f.SecurityUpdates, Auto},
		{"min_severity", f.MinSeverity, events.SeverityMedium},
		{"approval_delay", f.ApprovalDelay, time.Duration(0)},
		{"other_updates", f.OtherUpdates, Hold},
		{"strategy", f.Strategy, events.StrategyInPlace},
		{"reboot", f.Reboot, events.RebootIfRequired},
		{"windows", len(f.Windows), 2},
		{"canary", f.Canary, 1},
		{"waves", len(f.Waves), 3},
		{"waves[1]", f.Waves[1], quantity.Q{N: 50, Percent: true}},
		{"max_unavailable", f.MaxUnavailable, 2},
		{"max_failures", f.MaxFailures, quantity.Q{N: 1}},
		{"health_check", f.HealthCheck, "curl -fsS http://127.0.0.1/healthz"},
		{"unattended_upgrades", f.UnattendedUpgrades, UnattendedSecurity},
		{"express_lane default", f.ExpressLane, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if !f.Matches("anything", map[string]string{"env": "prod", "role": "web", "dc": "x"}) {
		t.Error("host with env=prod role=web does not match")
	}
	if f.Matches("anything", map[string]string{"env": "prod"}) {
		t.Error("host without role=web matches")
	}
}

func TestSelectionOrderAndDefaults(t *testing.T) {
	p := load(t, "fleets.yaml")
	tests := []struct {
		fleet string
		tags  map[string]string
		want  string
	}{
		{"db", map[string]string{"env": "prod"}, "prod-db"},
		{"db", map[string]string{"env": "staging"}, ""},
		{"staging", nil, "staging"},
		{"legacy", nil, "legacy"},
		{"web", nil, ""},
	}
	for _, tt := range tests {
		got := ""
		if f := p.For(tt.fleet, tt.tags); f != nil {
			got = f.Name
		}
		if got != tt.want {
			t.Errorf("For(%s, %v) = %q, want %q", tt.fleet, tt.tags, got, tt.want)
		}
	}
	db := p.Fleet("prod-db")
	if db.ApprovalDelay != 48*time.Hour || db.Bake != 30*time.Minute || db.MaxFailures != (quantity.Q{N: 10, Percent: true}) {
		t.Errorf("prod-db delay %v bake %v failures %v", db.ApprovalDelay, db.Bake, db.MaxFailures)
	}
	if !db.MayApprove("alice") || db.MayApprove("mallory") {
		t.Error("approvers not enforced")
	}
	st := p.Fleet("staging")
	if st.Canary != 0 || st.MaxUnavailable != 1 || st.OtherUpdates != Auto || !st.MayApprove("anyone") {
		t.Errorf("staging defaults: %+v", st)
	}
	if !p.Fleet("legacy").NotifyOnly() || st.NotifyOnly() {
		t.Error("notify-only misread")
	}
	if d := Default(); d.For("whatever", nil) == nil {
		t.Error("default policy does not cover every host")
	}
}

func TestErrorsNameFleetFieldAndLine(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"not yaml", "fleets: [", []string{"not YAML"}},
		{"no fleets", "other: 1\n", []string{"unknown top-level key", "fleets"}},
		{"empty fleets", "fleets: []\n", []string{"non-empty list"}},
		{"no name", "fleets:\n  - canary: 1\n", []string{"fleets[0]", "name", "is required"}},
		{"bad enum", "fleets:\n  - name: web\n    security_updates: sometimes\n",
			[]string{`fleet "web"`, "security_updates", "line 3", `"sometimes" is not one of auto, approve, notify-only`}},
		{"bad window", "fleets:\n  - name: web\n    windows: [\"Sat 02:00-05:00 Mars/Base\"]\n",
			[]string{`fleet "web"`, "windows", "line 3", "Mars/Base"}},
		{"bad wave", "fleets:\n  - name: web\n    waves: [\"10%\", \"150%\"]\n",
			[]string{"waves[1]", "line 3", "at most 100%"}},
		{"shrinking waves", "fleets:\n  - name: web\n    waves: [\"50%\", \"10%\"]\n", []string{"waves[1]", "cumulative"}},
		{"unknown field", "fleets:\n  - name: web\n    reboots: never\n", []string{"reboots", "line 3", "unknown field"}},
		{"bad delay", "fleets:\n  - name: web\n    approval_delay: soon\n", []string{"approval_delay", "duration"}},
		{"bad severity", "fleets:\n  - name: web\n    min_severity: severe\n", []string{"min_severity", `"severe"`}},
		{"max_unavailable 0", "fleets:\n  - name: web\n    max_unavailable: 0\n", []string{"max_unavailable", "at least 1"}},
		{"duplicate", "fleets:\n  - name: web\n  - name: web\n", []string{`fleet "web"`, "duplicate", "line 2"}},
		{"contradiction", "fleets:\n  - name: web\n    strategy: notify-only\n    security_updates: auto\n", []string{"contradicts"}},
		{"two errors", "fleets:\n  - name: a\n    canary: -1\n  - name: b\n    reboot: maybe\n", []string{`fleet "a"`, "canary", `fleet "b"`, "reboot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *FieldError", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"product-example.yaml", "fleets.yaml"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("fleets:\n  - name: x\n    waves: [1, \"2%\"]\n    windows: [\"daily 23:00-01:00 UTC\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			return
		}
		// Whatever parses is usable: names unique and non-empty, limits in range.
		seen := map[string]bool{}
		for _, fl := range p.Fleets {
			if fl.Name == "" || seen[fl.Name] {
				t.Fatalf("fleet name %q empty or duplicate", fl.Name)
			}
			seen[fl.Name] = true
			if fl.MaxUnavailable < 1 || fl.Canary < 0 || len(fl.Waves) == 0 {
				t.Fatalf("fleet %s: limits out of range: %+v", fl.Name, fl)
			}
			_ = fl.Contract()
		}
	})
}
