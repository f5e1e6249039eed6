package events

import "time"

// UpgradeRequested is one job on the executor's work queue: one host, exactly these packages,
// under these rules.
type UpgradeRequested struct {
	JobID     string `json:"job_id"`
	RolloutID string `json:"rollout_id"`
	Wave      int    `json:"wave"`
	HostID    string `json:"host_id"`
	Kind      string `json:"kind"` // security | full | docker | unattended
	Strategy  string `json:"strategy"`
	Reboot    string `json:"reboot"`
	// Packages to upgrade to at least their MinVersion (security); empty for other kinds.
	Packages    []PackageTarget `json:"packages,omitempty"`
	HealthCheck string          `json:"health_check,omitempty"`
	// ConfigureUnattended also configures unattended-upgrades for security origins.
	ConfigureUnattended bool        `json:"configure_unattended,omitempty"`
	AutoReboot          bool        `json:"auto_reboot,omitempty"` // unattended-upgrades' Automatic-Reboot
	Components          []Component `json:"components,omitempty"`  // Docker/Weave pins for kind docker
	Deadline            time.Time   `json:"deadline,omitempty"`
}

func (UpgradeRequested) EventType() string  { return "UpgradeRequested" }
func (UpgradeRequested) SchemaVersion() int { return 1 }

func (e UpgradeRequested) Validate() error {
	var p problems
	p.nonEmpty("job_id", e.JobID)
	p.nonEmpty("rollout_id", e.RolloutID)
	p.nonEmpty("host_id", e.HostID)
	p.oneOf("kind", e.Kind, KindSecurity, KindFull, KindDocker, KindUnattended)
	p.oneOf("strategy", e.Strategy, StrategyInPlace, StrategyReplace)
	p.oneOf("reboot", e.Reboot, RebootNever, RebootIfRequired, RebootAlways)
	p.packages("packages", e.Packages)
	return p.err()
}

// UpgradeStarted says an executor took a job and holds the host's lease.
type UpgradeStarted struct {
	JobID     string `json:"job_id"`
	RolloutID string `json:"rollout_id"`
	HostID    string `json:"host_id"`
	Executor  string `json:"executor"`
	Attempt   int    `json:"attempt"`
}

func (UpgradeStarted) EventType() string  { return "UpgradeStarted" }
func (UpgradeStarted) SchemaVersion() int { return 1 }

func (e UpgradeStarted) Validate() error {
	var p problems
	p.nonEmpty("job_id", e.JobID)
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("executor", e.Executor)
	return p.err()
}

// UpgradeCompleted reports a job that succeeded and was verified on the host.
type UpgradeCompleted struct {
	JobID     string `json:"job_id"`
	RolloutID string `json:"rollout_id"`
	HostID    string `json:"host_id"`
	// Kind is the job's (UpgradeRequested.Kind): after a full upgrade a new host is no
	// longer waiting for one.
	Kind           string          `json:"kind,omitempty"`
	Packages       []PackageResult `json:"packages"`
	RebootRequired bool            `json:"reboot_required,omitempty"`
	Rebooted       bool            `json:"rebooted,omitempty"`
	RebootPending  bool            `json:"reboot_pending,omitempty"`
	Downtime       time.Duration   `json:"downtime_ns,omitempty"` // expected or measured (Docker, reboot)
	Duration       time.Duration   `json:"duration_ns"`
}

func (UpgradeCompleted) EventType() string  { return "UpgradeCompleted" }
func (UpgradeCompleted) SchemaVersion() int { return 1 }

func (e UpgradeCompleted) Validate() error {
	var p problems
	p.nonEmpty("job_id", e.JobID)
	p.nonEmpty("host_id", e.HostID)
	return p.err()
}

// Machine-readable reasons of UpgradeFailed.
const (
	FailHostKeyMismatch  = "host_key_mismatch"
	FailUnreachable      = "unreachable"
	FailDpkgLocked       = "dpkg_locked"
	FailHeldPackage      = "held_package"
	FailDiskSpace        = "insufficient_disk"
	FailAptError         = "apt_error"
	FailNotFixed         = "fix_not_installed"
	FailRebootTimeout    = "reboot_timeout"
	FailHealthCheck      = "health_check_failed"
	FailInvalidJob       = "invalid_job"
	FailReplace          = "replace_failed"
	FailCancelled        = "cancelled"
	FailDeadlineExceeded = "deadline_exceeded"
)

// UpgradeFailed reports a job that failed, why (machine-readable) and the output's tail.
type UpgradeFailed struct {
	JobID      string `json:"job_id"`
	RolloutID  string `json:"rollout_id"`
	HostID     string `json:"host_id"`
	Reason     string `json:"reason"`
	Message    string `json:"message"`
	OutputTail string `json:"output_tail,omitempty"`
	// Packages holds what did change before the failure.
	Packages []PackageResult `json:"packages,omitempty"`
}

func (UpgradeFailed) EventType() string  { return "UpgradeFailed" }
func (UpgradeFailed) SchemaVersion() int { return 1 }

func (e UpgradeFailed) Validate() error {
	var p problems
	p.nonEmpty("job_id", e.JobID)
	p.nonEmpty("host_id", e.HostID)
	p.nonEmpty("reason", e.Reason)
	return p.err()
}
