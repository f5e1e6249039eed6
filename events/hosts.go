package events

import (
	"fmt"
	"time"

	"github.com/patchfleet/patchfleet/events/deb"
)

// SSHTarget says how to reach a host.
type SSHTarget struct {
	Address string `json:"address"`
	Port    int    `json:"port,omitempty"` // 22 when zero
	User    string `json:"user,omitempty"` // root when empty
	// Bastion is an optional jump host, "user@host:port".
	Bastion string `json:"bastion,omitempty"`
	Sudo    bool   `json:"sudo,omitempty"` // run privileged commands with sudo -n
	// HostKey is the pinned public host key in authorized_keys format; empty only when the
	// operator allowed trust on first use for this host.
	HostKey string `json:"host_key,omitempty"`
	TOFU    bool   `json:"tofu,omitempty"`
}

func (t SSHTarget) validate(p *problems) {
	p.nonEmpty("ssh.address", t.Address)
	p.require(t.Port >= 0 && t.Port < 65536, "ssh.port %d is out of range", t.Port)
	p.require(t.HostKey != "" || t.TOFU, "ssh.host_key is required unless trust on first use is allowed")
}

// HostRegistered adds a host to the register (or updates it). New marks a freshly built
// server, which gets a full upgrade before it takes traffic.
type HostRegistered struct {
	HostID string            `json:"host_id"`
	Name   string            `json:"name"`
	Fleet  string            `json:"fleet"`
	Tags   map[string]string `json:"tags,omitempty"`
	SSH    SSHTarget         `json:"ssh"`
	New    bool              `json:"new,omitempty"`
	// Replaces is the host this one replaces (strategy replace). Its replace job gives it its
	// full upgrade (and reboot) before it takes traffic, so no rollout is planned for it.
	Replaces string `json:"replaces,omitempty"`
	// AppPath is where an application lives, for the Rails/bundled-gem probes.
	AppPath string `json:"app_path,omitempty"`
}

func (HostRegistered) EventType() string  { return "HostRegistered" }
func (HostRegistered) SchemaVersion() int { return 1 }

func (e HostRegistered) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("name", e.Name)
	p.nonEmpty("fleet", e.Fleet)
	e.SSH.validate(&p)
	return p.err()
}

// HostDecommissioned removes a host from planning.
type HostDecommissioned struct {
	HostID string `json:"host_id"`
	Reason string `json:"reason,omitempty"`
}

func (HostDecommissioned) EventType() string  { return "HostDecommissioned" }
func (HostDecommissioned) SchemaVersion() int { return 1 }

func (e HostDecommissioned) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	return p.err()
}

// HostInventoryReported is published after every scan or offline report: what the host runs
// and what changed since the previous observation.
type HostInventoryReported struct {
	HostID         string          `json:"host_id"`
	ScanID         string          `json:"scan_id"`
	ScannedAt      time.Time       `json:"scanned_at"`
	Offline        bool            `json:"offline,omitempty"` // a pushed report, not a scan
	OS             OSRelease       `json:"os"`
	Kernel         string          `json:"kernel,omitempty"`
	BootID         string          `json:"boot_id,omitempty"`
	PackageSet     string          `json:"package_set"` // content hash of the installed package set
	PackageCount   int             `json:"package_count"`
	Changes        []PackageChange `json:"changes,omitempty"`
	Held           []string        `json:"held,omitempty"`
	RebootRequired bool            `json:"reboot_required,omitempty"`
	RebootPackages []string        `json:"reboot_packages,omitempty"`
	Components     []Component     `json:"components,omitempty"`
	// Previous is the previous observation's host state, so a consumer sees an OS release,
	// kernel, boot or reboot-required change; nil on a host's first observation.
	Previous *PreviousObservation `json:"previous,omitempty"`
}

// PreviousObservation is the host state an observation replaced (its packages' changes are
// in HostInventoryReported.Changes).
type PreviousObservation struct {
	ScanID         string    `json:"scan_id"`
	ScannedAt      time.Time `json:"scanned_at"`
	OS             OSRelease `json:"os"`
	Kernel         string    `json:"kernel,omitempty"`
	BootID         string    `json:"boot_id,omitempty"`
	PackageSet     string    `json:"package_set,omitempty"`
	RebootRequired bool      `json:"reboot_required,omitempty"`
}

func (HostInventoryReported) EventType() string  { return "HostInventoryReported" }
func (HostInventoryReported) SchemaVersion() int { return 1 }

func (e HostInventoryReported) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("scan_id", e.ScanID)
	p.require(notZero(e.ScannedAt), "scanned_at is required")
	p.nonEmpty("os.id", e.OS.ID)
	p.nonEmpty("package_set", e.PackageSet)
	changes(&p, e.Changes)
	return p.err()
}

func changes(p *problems, cs []PackageChange) {
	for i, c := range cs {
		p.check(fmt.Sprintf("changes[%d].name", i), deb.ValidPackageName(c.Name))
		p.require(c.From != "" || c.To != "", "changes[%d] has neither from nor to", i)
	}
}

// HostDriftDetected says a host changed in a way no Patchfleet upgrade explains (a manual
// upgrade, another tool). Planning takes the new state into account.
type HostDriftDetected struct {
	HostID  string          `json:"host_id"`
	ScanID  string          `json:"scan_id"`
	Changes []PackageChange `json:"changes"`
}

func (HostDriftDetected) EventType() string  { return "HostDriftDetected" }
func (HostDriftDetected) SchemaVersion() int { return 1 }

func (e HostDriftDetected) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("scan_id", e.ScanID)
	p.require(len(e.Changes) > 0, "changes is empty")
	changes(&p, e.Changes)
	return p.err()
}

// HostKeyMismatch says a host presented a key other than its pinned one. The connection was
// refused and the host is marked until an operator re-pins it.
type HostKeyMismatch struct {
	HostID      string `json:"host_id"`
	Expected    string `json:"expected"`  // SHA256 fingerprint of the pinned key
	Presented   string `json:"presented"` // SHA256 fingerprint of the key offered
	DetectedBy  string `json:"detected_by"`
	JobID       string `json:"job_id,omitempty"`
	Description string `json:"description,omitempty"`
}

func (HostKeyMismatch) EventType() string  { return "HostKeyMismatch" }
func (HostKeyMismatch) SchemaVersion() int { return 1 }

func (e HostKeyMismatch) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("presented", e.Presented)
	p.nonEmpty("detected_by", e.DetectedBy)
	return p.err()
}

// RebootRequired says a host needs a reboot that was not (yet) done.
type RebootRequired struct {
	HostID    string    `json:"host_id"`
	Packages  []string  `json:"packages,omitempty"` // from /var/run/reboot-required.pkgs
	Since     time.Time `json:"since"`
	RolloutID string    `json:"rollout_id,omitempty"`
	JobID     string    `json:"job_id,omitempty"`
}

func (RebootRequired) EventType() string  { return "RebootRequired" }
func (RebootRequired) SchemaVersion() int { return 1 }

func (e RebootRequired) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	p.require(notZero(e.Since), "since is required")
	return p.err()
}

// HostRebooted says a host was rebooted and came back with a new boot id.
type HostRebooted struct {
	HostID        string        `json:"host_id"`
	JobID         string        `json:"job_id,omitempty"`
	RolloutID     string        `json:"rollout_id,omitempty"`
	OldBootID     string        `json:"old_boot_id"`
	NewBootID     string        `json:"new_boot_id"`
	Downtime      time.Duration `json:"downtime_ns"`
	HealthChecked bool          `json:"health_checked,omitempty"`
}

func (HostRebooted) EventType() string  { return "HostRebooted" }
func (HostRebooted) SchemaVersion() int { return 1 }

func (e HostRebooted) Validate() error {
	var p problems
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("new_boot_id", e.NewBootID)
	p.require(e.OldBootID != e.NewBootID, "new_boot_id equals old_boot_id")
	return p.err()
}
