package job

import (
	"time"

	"github.com/patchfleet/patchfleet/events"
)

// ReplaceProgress is how far a replace job got (Progress.Replace). The provision hook is
// recorded as started before it runs and its host as soon as it answers, so a job taken over
// never provisions twice; the other stages are recorded after their effect, and repeating one
// (a hook run again after a crash) is harmless: hooks must be idempotent.
type ReplaceProgress struct {
	Fleet        string   `json:"fleet,omitempty"`        // the old host's, whose provider hooks the job runs
	Provisioning bool     `json:"provisioning,omitempty"` // the provision hook was started
	New          *NewHost `json:"new,omitempty"`          // what it printed
	Registered   bool     `json:"registered,omitempty"`   // HostRegistered for the new host is in the outbox
	Upgraded     bool     `json:"upgraded,omitempty"`     // full upgrade of the new host done
	// The new host's reboot, when the policy asks for one after its full upgrade: it
	// reboots before its health check, so it takes traffic on what it will run.
	NewRebootRequired bool      `json:"new_reboot_required,omitempty"` // the full upgrade left reboot-required
	NewRebootPackages []string  `json:"new_reboot_packages,omitempty"`
	NewRebootFrom     string    `json:"new_reboot_from,omitempty"` // its boot id when the reboot was asked for
	NewRebootAt       time.Time `json:"new_reboot_at,omitzero"`
	NewRebootedTo     string    `json:"new_rebooted_to,omitempty"` // the boot id it came back with
	Healthy           bool      `json:"healthy,omitempty"`         // the new host passed its health check
	Switched          bool      `json:"switched,omitempty"`        // the failover address points at the new host
	Decommissioned    bool      `json:"decommissioned,omitempty"`
	Retired           bool      `json:"retired,omitempty"` // the old host is retired
	// FailedStage is set when the new host failed; it is then retired and the old one kept.
	FailedStage   string `json:"failed_stage,omitempty"`
	FailedMessage string `json:"failed_message,omitempty"`
	NewRetired    bool   `json:"new_retired,omitempty"`
}

// NewHost is the host the provision hook made.
type NewHost struct {
	ID      string `json:"host_id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	User    string `json:"user,omitempty"`
	HostKey string `json:"host_key"`
}

// ReplaceStep is the next stage of a replace job.
type ReplaceStep int

const (
	ProvisionNew ReplaceStep = iota
	ProvisionInterrupted
	RegisterNew
	UpgradeNew
	RebootNew
	WaitRebootNew
	CheckNew
	SwitchToNew
	DecommissionOld
	RetireOld
	RetireNew
	FailReplaced
	ReplaceDone
)

var replaceNames = [...]string{"provision", "provision-interrupted", "register", "upgrade", "reboot", "wait-reboot", "health", "switch",
	"decommission", "retire-old", "retire-new", "fail", "done"}

func (s ReplaceStep) String() string {
	if int(s) < len(replaceNames) {
		return replaceNames[s]
	}
	return "replace-step?"
}

// NextReplace decides a replace job's next stage from what it recorded and the request's
// reboot policy. The new host is rebooted, as the policy says, between its full upgrade and
// its health check: it is not serving yet, so the reboot costs no one anything, and a host
// that takes traffic with a reboot pending runs the old kernel and libraries.
func NextReplace(p ReplaceProgress, reboot string) ReplaceStep {
	switch {
	case p.FailedStage != "" && p.New != nil && !p.NewRetired:
		return RetireNew
	case p.FailedStage != "":
		return FailReplaced
	case p.New == nil && p.Provisioning:
		// The hook may have made a host nobody knows of: never provision again.
		return ProvisionInterrupted
	case p.New == nil:
		return ProvisionNew
	case !p.Registered:
		return RegisterNew
	case !p.Upgraded:
		return UpgradeNew
	case p.NewRebootFrom != "" && p.NewRebootedTo == "":
		return WaitRebootNew
	case !p.Healthy && p.NewRebootedTo == "" && (reboot == events.RebootAlways || reboot == events.RebootIfRequired && p.NewRebootRequired):
		return RebootNew
	case !p.Healthy:
		return CheckNew
	case !p.Switched:
		return SwitchToNew
	case !p.Decommissioned:
		return DecommissionOld
	case !p.Retired:
		return RetireOld
	}
	return ReplaceDone
}
