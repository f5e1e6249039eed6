package job

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostops"
)

// Check validates a job again on receipt, before anything touches a host: the job is the
// executor's security boundary. Every value that reaches a script is checked here and again
// by the hostops builders.
func Check(req events.UpgradeRequested) error {
	if err := req.Validate(); err != nil {
		return err
	}
	var errs []error
	switch req.Kind {
	case events.KindSecurity:
		// Without packages it is "apply security upgrades": every pending update from the
		// host's security origins (op security-upgrade), nothing from the request reaches
		// the script.
		var targets []hostops.Target
		for _, t := range req.Packages {
			targets = append(targets, hostops.Target{Name: t.Name})
		}
		if len(targets) > 0 {
			if _, err := hostops.InstallScript(targets, hostops.Apt{}); err != nil {
				errs = append(errs, err)
			}
		}
	case events.KindDocker:
		pins, weave := DockerPins(req)
		if _, err := hostops.DockerScript(pins, weave, hostops.Apt{}); err != nil {
			errs = append(errs, err)
		}
		for _, c := range req.Components {
			if c.Name != "weave" && !slices.Contains(hostops.DockerPackages, c.Name) {
				errs = append(errs, fmt.Errorf("component %q is not a Docker package or weave", c.Name))
			}
		}
	}
	if req.HealthCheck != "" {
		if _, err := hostops.HealthScript(req.HealthCheck, time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DockerPins turns a docker job's components into the docker op's pins.
func DockerPins(req events.UpgradeRequested) (pins []hostops.Target, weave string) {
	for _, c := range req.Components {
		if c.Name == "weave" {
			weave = c.Version
			continue
		}
		pins = append(pins, hostops.Target{Name: c.Name, Version: c.Version})
	}
	return pins, weave
}

// OffPin returns the first pinned package whose version after op docker is not its pin (a
// package the host does not have is none); ok is false when every pin holds.
func OffPin(pins []hostops.Target, after []hostops.PackageState) (pin hostops.Target, got string, ok bool) {
	for _, pin := range pins {
		for _, p := range after {
			if p.Name == pin.Name && p.Version != "" && p.Version != pin.Version {
				return pin, p.Version, true
			}
		}
	}
	return hostops.Target{}, "", false
}
