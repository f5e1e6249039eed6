package provider

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFleets(t *testing.T) {
	got, err := ParseFleets([]byte(`
fleets:
  web-aws:
    provision: /opt/hooks/aws provision
    switch: /opt/hooks/aws switch --eip
    retire: /opt/hooks/aws retire
    timeout: 20m
  db-hetzner:
    provision: hz-provision
    switch: hz-switch
    retire: hz-retire
`), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	aws, hz := got["web-aws"], got["db-hetzner"]
	if !slices.Equal(aws.Switch, []string{"/opt/hooks/aws", "switch", "--eip"}) || aws.Timeout != 20*time.Minute || !aws.Configured() {
		t.Errorf("web-aws = %+v", aws)
	}
	if !slices.Equal(hz.Provision, []string{"hz-provision"}) || hz.Timeout != 15*time.Minute {
		t.Errorf("db-hetzner = %+v: want the default timeout", hz)
	}
}

func TestParseFleetsNamesEveryProblem(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"missing hooks and a bad timeout", `
fleets:
  web:
    provision: p
    timeout: soon
  db:
    provision: p
    switch: "  "
    retire: r
`, []string{"fleet db: switch: a command is required", "fleet web: switch: a command is required",
			"fleet web: retire: a command is required", `fleet web: timeout "soon"`}},
		{"unknown key", "fleets:\n  web:\n    provision: p\n    switch: s\n    retire: r\n    retry: 3\n", []string{"field retry not found"}},
		{"no fleets", "# nothing\n", []string{"no fleets"}},
		{"not a map", "fleets: [web]\n", []string{"cannot unmarshal"}},
	} {
		_, err := ParseFleets([]byte(tt.yaml), time.Minute)
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tt.name, err, w)
			}
		}
	}
}

func TestSetFallsBackToTheDefault(t *testing.T) {
	def := Hooks{Provision: []string{"p"}, Switch: []string{"s"}, Retire: []string{"r"}}
	aws := Hooks{Provision: []string{"aws-p"}, Switch: []string{"aws-s"}, Retire: []string{"aws-r"}}
	s := Set{Default: def, Fleets: map[string]Hooks{"web-aws": aws}}
	if h, ok := s.For("web-aws"); !ok || h.Provision[0] != "aws-p" {
		t.Errorf("web-aws: %+v %t", h, ok)
	}
	if h, ok := s.For("db"); !ok || h.Provision[0] != "p" {
		t.Errorf("db: %+v %t, want the default", h, ok)
	}
	if _, ok := (Set{Fleets: map[string]Hooks{"web-aws": aws}}).For("db"); ok {
		t.Error("a fleet without hooks and no default has hooks")
	}
	if (Set{}).Any() || !(Set{Fleets: map[string]Hooks{"web-aws": aws}}).Any() || !(Set{Default: def}).Any() {
		t.Error("Any")
	}
}
