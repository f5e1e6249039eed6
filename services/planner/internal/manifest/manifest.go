// Package manifest reads the Docker manifest: the Docker and Weave versions a fleet should
// run. A docker rollout includes only hosts whose detected versions differ from the pins,
// and each job carries the pins its host needs.
//
//	components:
//	  docker: "27.3.1"    # compared with the version the inventory detects (docker --version)
//	  weave: "2.8.1"
//	packages:             # what the executor installs for docker: exact apt versions
//	  docker-ce: "5:27.3.1-1~debian.12~bookworm"
//	  docker-ce-cli: "5:27.3.1-1~debian.12~bookworm"
//
// The executor upgrades Docker by apt package at an exact version and Weave by release, so a
// docker pin needs its packages.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/hostops"
)

// Component names the manifest pins.
const (
	Docker = "docker"
	Weave  = "weave"
)

// Manifest is the pinned versions.
type Manifest struct {
	// Components are the detected versions wanted, by component name (docker, weave).
	Components map[string]string `yaml:"components"`
	// Packages are the Docker apt packages and exact versions a docker upgrade installs.
	Packages map[string]string `yaml:"packages"`
}

var release = regexp.MustCompile(`^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}$`)

// Parse reads and validates a manifest.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("parse docker manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate names each wrong entry.
func (m *Manifest) Validate() error {
	var errs []error
	if len(m.Components) == 0 {
		errs = append(errs, errors.New("components: pin docker, weave or both"))
	}
	for _, name := range slices.Sorted(maps.Keys(m.Components)) {
		v := m.Components[name]
		switch {
		case name != Docker && name != Weave:
			errs = append(errs, fmt.Errorf("components.%s: only docker and weave are pinned", name))
		case !release.MatchString(v):
			errs = append(errs, fmt.Errorf("components.%s: version %q: want N.N.N", name, v))
		}
	}
	if _, ok := m.Components[Docker]; ok && len(m.Packages) == 0 {
		errs = append(errs, errors.New("packages: components.docker needs the Docker apt packages at exact versions"))
	}
	for _, name := range slices.Sorted(maps.Keys(m.Packages)) {
		if !slices.Contains(hostops.DockerPackages, name) {
			errs = append(errs, fmt.Errorf("packages.%s: not a Docker package (want one of %v)", name, hostops.DockerPackages))
			continue
		}
		if err := deb.ValidVersion(m.Packages[name]); err != nil {
			errs = append(errs, fmt.Errorf("packages.%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Pins returns what a host's docker job installs: the Docker packages when its detected
// Docker differs from the pin, Weave when its Weave does. A component the host does not
// report (not installed) is left alone. Nil: the host is up to date.
func (m *Manifest) Pins(detected []events.Component) []events.Component {
	if m == nil {
		return nil
	}
	var out []events.Component
	for _, c := range detected {
		want, ok := m.Components[c.Name]
		if !ok || c.Version == "" || c.Version == want {
			continue
		}
		switch c.Name {
		case Docker:
			for _, name := range slices.Sorted(maps.Keys(m.Packages)) {
				out = append(out, events.Component{Name: name, Version: m.Packages[name]})
			}
		case Weave:
			out = append(out, events.Component{Name: Weave, Version: want})
		}
	}
	slices.SortFunc(out, func(a, b events.Component) int { return strings.Compare(a.Name, b.Name) })
	return slices.CompactFunc(out, func(a, b events.Component) bool { return a.Name == b.Name })
}
