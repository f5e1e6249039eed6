package manifest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events"
)

const example = `
components:
  docker: "27.3.1"
  weave: "2.8.1"
packages:
  docker-ce: "5:27.3.1-1~debian.12~bookworm"
  docker-ce-cli: "5:27.3.1-1~debian.12~bookworm"
`

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"example", example, ""},
		{"weave only", "components: {weave: 2.8.1}", ""},
		{"empty", "components: {}", "pin docker, weave or both"},
		{"unknown component", "components: {nginx: 1.2.3}", "only docker and weave"},
		{"bad version", "components: {weave: latest}", `"latest": want N.N.N`},
		{"docker without packages", "components: {docker: 27.3.1}", "needs the Docker apt packages"},
		{"not a docker package", "components: {docker: 27.3.1}\npackages: {nginx: 1.0-1}", "packages.nginx: not a Docker package"},
		{"bad package version", "components: {docker: 27.3.1}\npackages: {docker-ce: 'a b'}", "packages.docker-ce"},
		{"unknown field", "components: {weave: 2.8.1}\nextra: 1", "field extra not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.yaml))
			if tc.err == "" {
				if err != nil || m == nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Parse error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestPins(t *testing.T) {
	m, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	dockerPins := []events.Component{
		{Name: "docker-ce", Version: "5:27.3.1-1~debian.12~bookworm"},
		{Name: "docker-ce-cli", Version: "5:27.3.1-1~debian.12~bookworm"},
	}
	for _, tc := range []struct {
		name     string
		detected []events.Component
		want     []events.Component
	}{
		{"up to date", []events.Component{{Name: "docker", Version: "27.3.1"}, {Name: "weave", Version: "2.8.1"}}, nil},
		{"nothing detected", nil, nil},
		{"not installed", []events.Component{{Name: "docker"}, {Name: "weave"}}, nil},
		{"other components ignored", []events.Component{{Name: "nginx", Version: "1.0"}}, nil},
		{"old docker", []events.Component{{Name: "docker", Version: "24.0.7"}, {Name: "weave", Version: "2.8.1"}}, dockerPins},
		{"newer docker is pinned back too", []events.Component{{Name: "docker", Version: "28.0.0"}}, dockerPins},
		{"old weave", []events.Component{{Name: "docker", Version: "27.3.1"}, {Name: "weave", Version: "2.6.0"}}, []events.Component{{Name: "weave", Version: "2.8.1"}}},
		{"both", []events.Component{{Name: "weave", Version: "2.6.0"}, {Name: "docker", Version: "24.0.7"}}, append(append([]events.Component{}, dockerPins...), events.Component{Name: "weave", Version: "2.8.1"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Pins(tc.detected); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Pins = %+v, want %+v", got, tc.want)
			}
		})
	}
	var none *Manifest
	if got := none.Pins([]events.Component{{Name: "docker", Version: "1.0.0"}}); got != nil {
		t.Errorf("no manifest: %+v", got)
	}
}
