// Package job holds the executor's decisions about one upgrade job, as pure functions: whether
// a request may run at all (Check), and what to do next given how far the job got (Progress,
// saved after every step) and what the host looks like now (Observation, read before every
// step). Because the next step is always derived from the host's real state, a job taken over
// after a crash resumes where it stopped and never repeats what already happened.
package job

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/hostops"
)

// Status of a job row.
const (
	StatusReceived  = "received"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// Progress is what a job has done so far. It is saved after every step.
type Progress struct {
	BootID string `json:"boot_id,omitempty"` // the host's boot id when the job first looked
	// Before holds the requested packages' versions when the job first looked ("" when
	// absent); After the versions once the upgrade op ran.
	Before  map[string]string      `json:"before,omitempty"`
	After   map[string]string      `json:"after,omitempty"`
	Changes []events.PackageResult `json:"changes,omitempty"` // what full-upgrade and docker changed

	Repaired      bool          `json:"repaired,omitempty"`  // dpkg --configure -a ran
	Updated       bool          `json:"updated,omitempty"`   // apt-get update ran (the first upgrade op's first step)
	Installed     bool          `json:"installed,omitempty"` // the upgrade op succeeded (or nothing was left to do)
	Unattended    bool          `json:"unattended,omitempty"`
	HealthUpgrade bool          `json:"health_upgrade,omitempty"` // health check passed after the upgrade
	Downtime      time.Duration `json:"downtime_ns,omitempty"`    // docker upgrade, reboot

	RebootRequired bool      `json:"reboot_required,omitempty"`
	RebootPackages []string  `json:"reboot_packages,omitempty"`
	RebootFrom     string    `json:"reboot_from,omitempty"` // boot id when the reboot was issued
	RebootAt       time.Time `json:"reboot_at,omitempty"`
	RebootedTo     string    `json:"rebooted_to,omitempty"` // the new boot id
	HealthReboot   bool      `json:"health_reboot,omitempty"`

	Replace ReplaceProgress `json:"replace,omitzero"` // strategy replace

	// Unreachable counts the attempts that gave up because the host could not be reached.
	// Attempts cut short by the executor stopping do not count: a job is failed as
	// unreachable for what its host did, not for what happened to the executor.
	Unreachable int `json:"unreachable,omitempty"`
}

// Rebooting reports whether a reboot was issued and not yet seen to finish.
func (p Progress) Rebooting() bool { return p.RebootFrom != "" && p.RebootedTo == "" }

// Step names the furthest step reached, for the jobs table and people.
func (p Progress) Step() string {
	switch {
	case p.RebootedTo != "":
		return "rebooted"
	case p.RebootFrom != "":
		return "rebooting"
	case p.HealthUpgrade:
		return "healthy"
	case p.Installed:
		return "installed"
	case p.Updated:
		return "updated"
	case p.BootID != "":
		return "preflight"
	}
	return "received"
}

// Observation is what op state found on the host just now.
type Observation struct {
	BootID          string
	Packages        map[string]hostops.PackageState
	Held            []string
	DpkgInterrupted bool
	Unfinished      []hostops.PackageState // what dpkg left unfinished, named when a repair did not help
	FreeKB          int64                  // the least free space of / and /var; -1 when unknown
	RebootRequired  bool
	RebootPackages  []string
	// RebootScheduled: op reboot ran during this boot and the host has not
	// rebooted since (the host's marker on /run is there). Observe sets it
	// when the host does not say, so that a guess never reboots a host twice.
	RebootScheduled bool
}

// Observe turns op state's result into an Observation.
func Observe(s hostops.State) Observation {
	o := Observation{BootID: s.BootID, Packages: map[string]hostops.PackageState{}, Held: s.Held,
		DpkgInterrupted: s.DpkgInterrupted, Unfinished: s.Unfinished, FreeKB: -1, RebootRequired: s.RebootRequired, RebootPackages: s.RebootPackages,
		RebootScheduled: s.RebootScheduled || !s.RebootScheduledKnown}
	for _, p := range s.Packages {
		o.Packages[p.Name] = p
	}
	for _, d := range s.Disks {
		if o.FreeKB < 0 || d.AvailKB < o.FreeKB {
			o.FreeKB = d.AvailKB
		}
	}
	return o
}

// AfterInstall is o brought up to date by what op install read in the same shell right
// after apt-get: the targets' dpkg state and reboot-required. That is all the decisions
// after an install read, apart from the boot, which an install does not change; so it stands
// for a fresh look. ok is false when the report is incomplete or lacks a target: then only a
// fresh look will do.
func (o Observation) AfterInstall(res hostops.InstallResult, names []string) (_ Observation, ok bool) {
	if !res.Complete || len(res.Problems) > 0 {
		return o, false
	}
	o.Packages = make(map[string]hostops.PackageState, len(res.After))
	for _, p := range res.After {
		o.Packages[p.Name] = p
	}
	for _, n := range names {
		if _, ok := o.Packages[n]; !ok {
			return o, false
		}
	}
	o.RebootRequired, o.RebootPackages = res.RebootRequired, res.RebootPackages
	return o, true
}

// Rules are the executor's settings that decisions depend on.
type Rules struct {
	MinFreeKB     int64         // refuse to upgrade below this much free space on / or /var
	RebootTimeout time.Duration // how long a rebooting host may stay away
}

// Action is what to do next.
type Action int

const (
	Fail Action = iota
	Repair
	Install
	FullUpgrade
	SecurityUpgrade // every pending update from the security origins (security job without packages)
	Docker
	Unattended
	AlreadyFixed // every requested package is already at or above its minimum: nothing to install
	Health
	Reboot
	WaitReboot
	Complete
)

var actionNames = [...]string{"fail", "repair", "install", "full-upgrade", "security-upgrade", "docker",
	"unattended", "already-fixed", "health", "reboot", "wait-reboot", "complete"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Decision is the next action; for Fail, the reason (an events.Fail* constant) and why.
type Decision struct {
	Action Action
	// Update: the op runs apt-get update first, in the same command (hostops.Apt): the job
	// has not updated the host's package lists yet.
	Update  bool
	Reason  string
	Message string
}

func fail(reason, format string, args ...any) Decision {
	return Decision{Action: Fail, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Next decides the job's next step from its progress and the host's state now.
func Next(req events.UpgradeRequested, p Progress, o Observation, r Rules, now time.Time) Decision {
	if p.Rebooting() {
		if o.BootID != "" && o.BootID != p.RebootFrom {
			// The caller records the new boot id and asks again.
			return Decision{Action: WaitReboot, Message: "host is back with a new boot id"}
		}
		if RebootLost(p.RebootFrom, o) {
			// Still the old boot and no reboot asked for during it: the job was
			// saved as rebooting but the reboot op never reached the host (the
			// executor stopped in between). The host was never away, so this is
			// not a reboot timeout, however long ago that was.
			return Decision{Action: Reboot, Message: "the reboot was recorded but never reached the host"}
		}
		if now.Sub(p.RebootAt) > r.RebootTimeout {
			return fail(events.FailRebootTimeout, "host did not come back with a new boot id within %s", r.RebootTimeout)
		}
		return Decision{Action: WaitReboot}
	}
	if !p.Installed {
		if !req.Deadline.IsZero() && now.After(req.Deadline) {
			return fail(events.FailDeadlineExceeded, "job deadline %s passed before the upgrade started", req.Deadline.UTC().Format(time.RFC3339))
		}
		if o.DpkgInterrupted {
			if p.Repaired {
				msg := "dpkg is still interrupted after dpkg --configure -a"
				if len(o.Unfinished) > 0 {
					stuck := make([]string, len(o.Unfinished))
					for i, u := range o.Unfinished {
						stuck[i] = u.Describe()
					}
					msg += ": " + strings.Join(stuck, "; ")
				}
				return fail(events.FailAptError, "%s", msg)
			}
			return Decision{Action: Repair}
		}
		if held := heldRequested(req, o); len(held) > 0 {
			return fail(events.FailHeldPackage, "requested packages are held: %s", strings.Join(held, ", "))
		}
		if r.MinFreeKB > 0 && o.FreeKB >= 0 && o.FreeKB < r.MinFreeKB {
			return fail(events.FailDiskSpace, "%d KiB free on / or /var, %d KiB required", o.FreeKB, r.MinFreeKB)
		}
		if Satisfied(req, o) {
			return Decision{Action: AlreadyFixed}
		}
		update := !p.Updated
		switch req.Kind {
		case events.KindFull:
			return Decision{Action: FullUpgrade, Update: update}
		case events.KindDocker:
			return Decision{Action: Docker, Update: update}
		case events.KindUnattended:
			return Decision{Action: Unattended}
		}
		if len(req.Packages) == 0 {
			return Decision{Action: SecurityUpgrade, Update: update}
		}
		return Decision{Action: Install, Update: update}
	}
	if req.Kind == events.KindSecurity {
		if bad := Unfixed(req.Packages, o); len(bad) > 0 {
			return fail(events.FailNotFixed, "still below the fixed version after the upgrade: %s", strings.Join(bad, ", "))
		}
		if req.ConfigureUnattended && !p.Unattended {
			return Decision{Action: Unattended}
		}
	}
	if req.HealthCheck != "" && !p.HealthUpgrade {
		return Decision{Action: Health}
	}
	if p.RebootedTo != "" {
		if req.HealthCheck != "" && !p.HealthReboot {
			return Decision{Action: Health}
		}
		return Decision{Action: Complete}
	}
	required := o.RebootRequired || p.RebootRequired
	if req.Reboot == events.RebootAlways || req.Reboot == events.RebootIfRequired && required {
		return Decision{Action: Reboot}
	}
	return Decision{Action: Complete}
}

// Unfixed lists the requested packages installed on the host below their minimum version
// ("name version < min"). A package the host does not have is not vulnerable.
func Unfixed(ts []events.PackageTarget, o Observation) []string {
	var out []string
	for _, t := range ts {
		p, ok := o.Packages[t.Name]
		if !ok || !p.Present || t.MinVersion == "" {
			continue
		}
		if c, err := deb.Compare(p.Version, t.MinVersion); err != nil || c < 0 {
			out = append(out, fmt.Sprintf("%s %s < %s", t.Name, p.Version, t.MinVersion))
		}
	}
	return out
}

// RebootLost reports whether a reboot recorded from boot id from never reached the host: it
// answers with that boot id, and no reboot was asked for during that boot.
func RebootLost(from string, o Observation) bool {
	return o.BootID != "" && o.BootID == from && !o.RebootScheduled
}

// Satisfied reports whether a security job has nothing left to do on the host: every
// requested package has a pinned minimum, and none is installed below it.
func Satisfied(req events.UpgradeRequested, o Observation) bool {
	return req.Kind == events.KindSecurity && len(req.Packages) > 0 && allPinned(req.Packages) && len(Unfixed(req.Packages, o)) == 0
}

func allPinned(ts []events.PackageTarget) bool {
	for _, t := range ts {
		if t.MinVersion == "" {
			return false
		}
	}
	return true
}

func heldRequested(req events.UpgradeRequested, o Observation) []string {
	var out []string
	names := RequestedNames(req)
	for _, h := range o.Held {
		name, _, _ := strings.Cut(h, ":")
		if slices.Contains(names, name) {
			out = append(out, name)
		}
	}
	for _, n := range names {
		if p, ok := o.Packages[n]; ok && p.Held() && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// RequestedNames returns the packages a job touches and observes.
func RequestedNames(req events.UpgradeRequested) []string {
	var names []string
	switch req.Kind {
	case events.KindSecurity:
		for _, t := range req.Packages {
			names = append(names, t.Name)
		}
	case events.KindDocker:
		for _, c := range req.Components {
			if slices.Contains(hostops.DockerPackages, c.Name) {
				names = append(names, c.Name)
			}
		}
	}
	return names
}

// RebootNeeded reports whether the policy asks for a reboot now: the state after the job
// says whether one is required.
func RebootPending(req events.UpgradeRequested, p Progress, o Observation) bool {
	return p.RebootedTo == "" && (o.RebootRequired || p.RebootRequired) && req.Reboot == events.RebootNever
}
