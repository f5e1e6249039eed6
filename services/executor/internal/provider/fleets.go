package provider

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Set is the hooks of each fleet that has its own (a fleet per cloud account or provider),
// and the default for the others.
type Set struct {
	Default Hooks // not Configured: fleets without hooks of their own have none
	Fleets  map[string]Hooks
}

// For returns the hooks for fleet.
func (s Set) For(fleet string) (Hooks, bool) {
	if h, ok := s.Fleets[fleet]; ok {
		return h, true
	}
	return s.Default, s.Default.Configured()
}

// Any reports whether some fleet has hooks.
func (s Set) Any() bool { return s.Default.Configured() || len(s.Fleets) > 0 }

// ParseFleets reads the per-fleet hooks file:
//
//	fleets:
//	  web-aws:
//	    provision: /opt/patchfleet/aws-hooks provision
//	    switch: /opt/patchfleet/aws-hooks switch
//	    retire: /opt/patchfleet/aws-hooks retire
//	    timeout: 20m        # optional; default timeout
//
// Each command is split on white space into argv, as the PATCHFLEET_EXECUTOR_PROVIDER_*
// variables are: no shell, no quoting. Every fleet needs all three hooks; unknown keys are
// refused. Every problem is reported, each naming its fleet and key.
func ParseFleets(data []byte, timeout time.Duration) (map[string]Hooks, error) {
	var doc struct {
		Fleets map[string]struct {
			Provision string `yaml:"provision"`
			Switch    string `yaml:"switch"`
			Retire    string `yaml:"retire"`
			Timeout   string `yaml:"timeout"`
		} `yaml:"fleets"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("provider hooks: %w", err)
	}
	if len(doc.Fleets) == 0 {
		return nil, errors.New("provider hooks: no fleets")
	}
	out := make(map[string]Hooks, len(doc.Fleets))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(doc.Fleets)) {
		f := doc.Fleets[name]
		h := Hooks{Provision: strings.Fields(f.Provision), Switch: strings.Fields(f.Switch), Retire: strings.Fields(f.Retire), Timeout: timeout}
		for i, argv := range [][]string{h.Provision, h.Switch, h.Retire} {
			if len(argv) == 0 {
				errs = append(errs, fmt.Errorf("provider hooks: fleet %s: %s: a command is required", name, [...]string{"provision", "switch", "retire"}[i]))
			}
		}
		if f.Timeout != "" {
			d, err := time.ParseDuration(f.Timeout)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("provider hooks: fleet %s: timeout %q: want a positive duration such as 20m", name, f.Timeout))
			}
			h.Timeout = d
		}
		out[name] = h
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
