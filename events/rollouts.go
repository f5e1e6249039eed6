package events

import (
	"fmt"
	"time"
)

// RolloutRequested is an on-demand rollout asked for by a person (API, CLI or chat): apply
// security upgrades now, a full upgrade, or Docker upgrades, for a fleet or a selection.
type RolloutRequested struct {
	RequestID   string       `json:"request_id"`
	RequestedBy string       `json:"requested_by"`
	Kind        string       `json:"kind"` // security | full | docker | unattended
	Selector    HostSelector `json:"selector"`
	// Reboot overrides the fleet's reboot policy when set.
	Reboot              string `json:"reboot,omitempty"`
	ConfigureUnattended bool   `json:"configure_unattended,omitempty"`
	Reason              string `json:"reason,omitempty"`
}

func (RolloutRequested) EventType() string  { return "RolloutRequested" }
func (RolloutRequested) SchemaVersion() int { return 1 }

func (e RolloutRequested) Validate() error {
	var p problems
	p.nonEmpty("request_id", e.RequestID)
	p.nonEmpty("requested_by", e.RequestedBy)
	p.oneOf("kind", e.Kind, KindSecurity, KindFull, KindDocker, KindUnattended)
	p.require(e.Selector.Fleet != "" || len(e.Selector.Tags) > 0 || len(e.Selector.Hosts) > 0, "selector is empty")
	if e.Reboot != "" {
		p.oneOf("reboot", e.Reboot, RebootNever, RebootIfRequired, RebootAlways)
	}
	return p.err()
}

// Wave is one step of a rollout; wave 0 is the canary.
type Wave struct {
	Index int      `json:"index"`
	Hosts []string `json:"hosts"`
}

// RolloutPlanned announces a plan. PlanHash identifies exactly what will run: an approval
// names it, so what was approved is what runs.
type RolloutPlanned struct {
	RolloutID     string    `json:"rollout_id"`
	PlanHash      string    `json:"plan_hash"`
	Kind          string    `json:"kind"`
	Fleet         string    `json:"fleet"`
	AdvisoryIDs   []string  `json:"advisory_ids,omitempty"`
	RequestID     string    `json:"request_id,omitempty"`
	Severity      Severity  `json:"severity,omitempty"`
	Strategy      string    `json:"strategy"`
	Reboot        string    `json:"reboot"`
	Waves         []Wave    `json:"waves"`
	HostCount     int       `json:"host_count"`
	MaxFailures   int       `json:"max_failures"`
	NeedsApproval bool      `json:"needs_approval,omitempty"`
	NotBefore     time.Time `json:"not_before,omitempty"` // approval delay / next window
}

func (RolloutPlanned) EventType() string  { return "RolloutPlanned" }
func (RolloutPlanned) SchemaVersion() int { return 1 }

func (e RolloutPlanned) Validate() error {
	var p problems
	p.nonEmpty("rollout_id", e.RolloutID)
	p.nonEmpty("plan_hash", e.PlanHash)
	p.oneOf("kind", e.Kind, KindSecurity, KindFull, KindDocker, KindUnattended)
	p.nonEmpty("fleet", e.Fleet)
	p.oneOf("strategy", e.Strategy, StrategyInPlace, StrategyReplace, StrategyNotifyOnly)
	p.oneOf("reboot", e.Reboot, RebootNever, RebootIfRequired, RebootAlways)
	n := 0
	for i, w := range e.Waves {
		p.require(w.Index == i, "waves[%d] has index %d", i, w.Index)
		n += len(w.Hosts)
	}
	p.require(n == e.HostCount, "host_count %d but waves hold %d hosts", e.HostCount, n)
	return p.err()
}

// RolloutApprovalRequested asks a person to approve a plan.
type RolloutApprovalRequested struct {
	RolloutID string   `json:"rollout_id"`
	PlanHash  string   `json:"plan_hash"`
	Fleet     string   `json:"fleet"`
	Summary   string   `json:"summary"`
	Approvers []string `json:"approvers,omitempty"`
}

func (RolloutApprovalRequested) EventType() string  { return "RolloutApprovalRequested" }
func (RolloutApprovalRequested) SchemaVersion() int { return 1 }

func (e RolloutApprovalRequested) Validate() error {
	var p problems
	p.nonEmpty("rollout_id", e.RolloutID)
	p.nonEmpty("plan_hash", e.PlanHash)
	p.nonEmpty("fleet", e.Fleet)
	return p.err()
}

// Decision is what a person decided about a rollout, and why.
type Decision struct {
	RolloutID string `json:"rollout_id"`
	By        string `json:"by"`
	Reason    string `json:"reason,omitempty"`
}

func (d Decision) validate() error {
	var p problems
	p.nonEmpty("rollout_id", d.RolloutID)
	p.nonEmpty("by", d.By)
	return p.err()
}

// RolloutApproved approves exactly the plan named by PlanHash.
type RolloutApproved struct {
	Decision
	PlanHash string `json:"plan_hash"`
}

func (RolloutApproved) EventType() string  { return "RolloutApproved" }
func (RolloutApproved) SchemaVersion() int { return 1 }

func (e RolloutApproved) Validate() error {
	if e.PlanHash == "" {
		return fmt.Errorf("plan_hash is required")
	}
	return e.Decision.validate()
}

// RolloutRejected declines a plan; the rollout ends without touching a host.
type RolloutRejected struct {
	Decision
	PlanHash string `json:"plan_hash,omitempty"`
}

func (RolloutRejected) EventType() string  { return "RolloutRejected" }
func (RolloutRejected) SchemaVersion() int { return 1 }
func (e RolloutRejected) Validate() error  { return e.Decision.validate() }

// RolloutPaused stops new work; jobs in flight finish.
type RolloutPaused struct{ Decision }

func (RolloutPaused) EventType() string  { return "RolloutPaused" }
func (RolloutPaused) SchemaVersion() int { return 1 }
func (e RolloutPaused) Validate() error  { return e.Decision.validate() }

// RolloutResumed continues a paused or halted rollout.
type RolloutResumed struct{ Decision }

func (RolloutResumed) EventType() string  { return "RolloutResumed" }
func (RolloutResumed) SchemaVersion() int { return 1 }
func (e RolloutResumed) Validate() error  { return e.Decision.validate() }

// RolloutCancelled ends a rollout; nothing new starts.
type RolloutCancelled struct{ Decision }

func (RolloutCancelled) EventType() string  { return "RolloutCancelled" }
func (RolloutCancelled) SchemaVersion() int { return 1 }
func (e RolloutCancelled) Validate() error  { return e.Decision.validate() }

// WaveStarted says the hosts of a wave are being upgraded.
type WaveStarted struct {
	RolloutID string   `json:"rollout_id"`
	Wave      int      `json:"wave"`
	Hosts     []string `json:"hosts"`
}

func (WaveStarted) EventType() string  { return "WaveStarted" }
func (WaveStarted) SchemaVersion() int { return 1 }

func (e WaveStarted) Validate() error {
	var p problems
	p.nonEmpty("rollout_id", e.RolloutID)
	p.require(e.Wave >= 0, "wave must not be negative")
	p.require(len(e.Hosts) > 0, "hosts is empty")
	return p.err()
}

// WaveCompleted says every host of a wave has a result.
type WaveCompleted struct {
	RolloutID string `json:"rollout_id"`
	Wave      int    `json:"wave"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
}

func (WaveCompleted) EventType() string  { return "WaveCompleted" }
func (WaveCompleted) SchemaVersion() int { return 1 }

func (e WaveCompleted) Validate() error {
	var p problems
	p.nonEmpty("rollout_id", e.RolloutID)
	p.require(e.Wave >= 0, "wave must not be negative")
	return p.err()
}

// RolloutHalted says the failure budget is spent (or another stop condition hit): nothing new
// starts until a person resumes or cancels.
type RolloutHalted struct {
	RolloutID string `json:"rollout_id"`
	Reason    string `json:"reason"`
	Failed    int    `json:"failed"`
	Budget    int    `json:"budget"`
}

func (RolloutHalted) EventType() string  { return "RolloutHalted" }
func (RolloutHalted) SchemaVersion() int { return 1 }

func (e RolloutHalted) Validate() error {
	var p problems
	p.nonEmpty("rollout_id", e.RolloutID)
	p.nonEmpty("reason", e.Reason)
	return p.err()
}

// Host result statuses.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	ResultSkipped   = "skipped"
)

// HostResult is one host's outcome in a rollout.
type HostResult struct {
	HostID        string `json:"host_id"`
	Status        string `json:"status"` // succeeded | failed | skipped
	Reason        string `json:"reason,omitempty"`
	RebootPending bool   `json:"reboot_pending,omitempty"`
	Rebooted      bool   `json:"rebooted,omitempty"`
}

// RolloutCompleted ends a rollout with per-host results.
type RolloutCompleted struct {
	RolloutID string       `json:"rollout_id"`
	Outcome   string       `json:"outcome"` // completed | cancelled | rejected
	Results   []HostResult `json:"results"`
	Succeeded int          `json:"succeeded"`
	Failed    int          `json:"failed"`
	Skipped   int          `json:"skipped"`
}

func (RolloutCompleted) EventType() string  { return "RolloutCompleted" }
func (RolloutCompleted) SchemaVersion() int { return 1 }

func (e RolloutCompleted) Validate() error {
	var p problems
	p.nonEmpty("rollout_id", e.RolloutID)
	p.oneOf("outcome", e.Outcome, "completed", "cancelled", "rejected")
	counts := map[string]int{}
	for i, r := range e.Results {
		p.nonEmpty(fmt.Sprintf("results[%d].host_id", i), r.HostID)
		p.oneOf(fmt.Sprintf("results[%d].status", i), r.Status, ResultSucceeded, ResultFailed, ResultSkipped)
		counts[r.Status]++
	}
	p.require(counts[ResultSucceeded] == e.Succeeded && counts[ResultFailed] == e.Failed && counts[ResultSkipped] == e.Skipped,
		"counts %d/%d/%d do not match results", e.Succeeded, e.Failed, e.Skipped)
	return p.err()
}
