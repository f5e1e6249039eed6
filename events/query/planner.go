package query

import (
	"context"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

// The planner's request/reply subjects (the micro service "planner"). The same requests are
// served as HTTP JSON on the planner's server: GET /v1/rollouts, GET /v1/rollouts/{id},
// POST /v1/preview, GET /v1/compliance, GET /v1/policies.
const (
	ServicePlanner           = "planner"
	SubjectPlannerRollouts   = "pf.query.planner.rollouts"
	SubjectPlannerRollout    = "pf.query.planner.rollout"
	SubjectPlannerPreview    = "pf.query.planner.preview"
	SubjectPlannerCompliance = "pf.query.planner.compliance"
	SubjectPlannerPolicies   = "pf.query.planner.policies"
)

// Rollout states.
const (
	RolloutAwaitingApproval = "awaiting_approval" // waits for RolloutApproved naming the plan hash
	RolloutScheduled        = "scheduled"         // approved or automatic; waits for its time and window
	RolloutRunning          = "running"
	RolloutPaused           = "paused"
	RolloutHalted           = "halted" // failure budget spent; a person resumes or cancels
	RolloutCompleted        = "completed"
	RolloutCancelled        = "cancelled"
	RolloutRejected         = "rejected"
)

// RolloutsRequest lists rollouts, newest first; every set field must match.
type RolloutsRequest struct {
	Fleet      string `json:"fleet,omitempty"`
	State      string `json:"state,omitempty"`
	AdvisoryID string `json:"advisory_id,omitempty"`
	Open       bool   `json:"open,omitempty"` // only rollouts that have not ended
	Cursor     string `json:"cursor,omitempty"`
	Limit      int    `json:"limit,omitempty"` // default 100, at most 1000
}

// RolloutSummary is one rollout and its progress.
type RolloutSummary struct {
	ID            string    `json:"id"`
	Kind          string    `json:"kind"`
	Fleet         string    `json:"fleet"`
	State         string    `json:"state"`
	PlanHash      string    `json:"plan_hash"`
	AdvisoryIDs   []string  `json:"advisory_ids,omitempty"`
	RequestID     string    `json:"request_id,omitempty"`
	Severity      string    `json:"severity,omitempty"`
	Strategy      string    `json:"strategy"`
	Reboot        string    `json:"reboot"`
	NeedsApproval bool      `json:"needs_approval,omitempty"`
	ApprovedBy    string    `json:"approved_by,omitempty"`
	NotBefore     time.Time `json:"not_before,omitzero"`
	CurrentWave   int       `json:"current_wave"`
	WaveCount     int       `json:"wave_count"`
	HostCount     int       `json:"host_count"`
	Pending       int       `json:"pending"`
	InFlight      int       `json:"in_flight"`
	Succeeded     int       `json:"succeeded"`
	Failed        int       `json:"failed"`
	Skipped       int       `json:"skipped"`
	Reason        string    `json:"reason,omitempty"` // why it halted or ended
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
}

// RolloutsResponse is a page of rollouts.
type RolloutsResponse struct {
	Rollouts   []RolloutSummary `json:"rollouts"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// RolloutRequest asks for one rollout with its waves and hosts.
type RolloutRequest struct {
	ID string `json:"id"`
}

// RolloutWave is one wave's progress.
type RolloutWave struct {
	Index       int       `json:"index"`
	State       string    `json:"state"` // pending | running | completed
	Hosts       int       `json:"hosts"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// RolloutHost is one host's job in a rollout.
type RolloutHost struct {
	HostID        string                 `json:"host_id"`
	Wave          int                    `json:"wave"`
	State         string                 `json:"state"` // pending | dispatched | succeeded | failed | skipped
	JobID         string                 `json:"job_id,omitempty"`
	Packages      []events.PackageTarget `json:"packages,omitempty"`
	Reason        string                 `json:"reason,omitempty"`
	RebootPending bool                   `json:"reboot_pending,omitempty"`
	Rebooted      bool                   `json:"rebooted,omitempty"`
	DispatchedAt  time.Time              `json:"dispatched_at,omitzero"`
	FinishedAt    time.Time              `json:"finished_at,omitzero"`
}

// RolloutDetail is one rollout with its waves and hosts.
type RolloutDetail struct {
	RolloutSummary
	Waves []RolloutWave `json:"waves"`
	Hosts []RolloutHost `json:"hosts"`
}

// PreviewRequest asks what the planner would do, without doing it: for an advisory (as
// published) or for an on-demand request (as a person would ask it).
type PreviewRequest struct {
	Advisory *events.SecurityAdvisoryPublished `json:"advisory,omitempty"`
	Request  *events.RolloutRequested          `json:"request,omitempty"`
}

// PlannedHost is a host of a previewed plan and what it would get.
type PlannedHost struct {
	HostID     string                 `json:"host_id"`
	Wave       int                    `json:"wave"`
	Packages   []events.PackageTarget `json:"packages,omitempty"`
	Advisories []string               `json:"advisories,omitempty"`
}

// PlanPreview is the plan one fleet would get.
type PlanPreview struct {
	Fleet         string        `json:"fleet"`
	Kind          string        `json:"kind"`
	PlanHash      string        `json:"plan_hash"`
	Strategy      string        `json:"strategy"`
	Reboot        string        `json:"reboot"`
	NeedsApproval bool          `json:"needs_approval,omitempty"`
	NotBefore     time.Time     `json:"not_before,omitzero"`
	Waves         []events.Wave `json:"waves"`
	Hosts         []PlannedHost `json:"hosts"`
	MaxFailures   int           `json:"max_failures"`
	Skipped       string        `json:"skipped,omitempty"` // why nothing would roll out (below min_severity…)
}

// PreviewResponse is a dry run: one plan per fleet, and the exposed hosts no policy covers.
type PreviewResponse struct {
	Plans     []PlanPreview `json:"plans"`
	Unmatched []string      `json:"unmatched,omitempty"`
}

// ComplianceRequest asks how long hosts were exposed: per advisory and per host.
type ComplianceRequest struct {
	AdvisoryID string `json:"advisory_id,omitempty"`
	HostID     string `json:"host_id,omitempty"`
	Fleet      string `json:"fleet,omitempty"`
	Open       bool   `json:"open,omitempty"` // only hosts still exposed or waiting for a reboot
	Cursor     string `json:"cursor,omitempty"`
	Limit      int    `json:"limit,omitempty"` // default 100, at most 1000
}

// ComplianceRecord is one host's exposure to one advisory.
type ComplianceRecord struct {
	AdvisoryID   string          `json:"advisory_id"`
	HostID       string          `json:"host_id"`
	Fleet        string          `json:"fleet"`
	Severity     events.Severity `json:"severity,omitempty"`
	ExposedSince time.Time       `json:"exposed_since"`
	PatchedAt    time.Time       `json:"patched_at,omitzero"`
	// RetiredAt: the host was decommissioned while exposed (or waiting for a reboot), which
	// ended the exposure without a patch.
	RetiredAt     time.Time `json:"retired_at,omitzero"`
	RebootPending bool      `json:"reboot_pending,omitempty"`
	RolloutID     string    `json:"rollout_id,omitempty"`
	// Vulnerable is how long the host was exposed: until patched, retired, or the answer.
	Vulnerable time.Duration `json:"vulnerable_ns"`
}

// Ended is when the exposure ended: the patch, else the host's retirement; zero while it lasts.
func (r ComplianceRecord) Ended() time.Time {
	if !r.PatchedAt.IsZero() {
		return r.PatchedAt
	}
	return r.RetiredAt
}

// Open reports whether the host is still exposed or waits for a reboot: what
// ComplianceRequest.Open selects.
func (r ComplianceRecord) Open() bool {
	return r.RetiredAt.IsZero() && (r.PatchedAt.IsZero() || r.RebootPending)
}

// ComplianceResponse is a page of compliance records.
type ComplianceResponse struct {
	Records    []ComplianceRecord `json:"records"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

// PoliciesRequest asks for the fleet policies in force (all, or one fleet).
type PoliciesRequest struct {
	Fleet string `json:"fleet,omitempty"`
}

// FleetPolicy is one fleet's policy as the planner applies it (defaults filled in).
type FleetPolicy struct {
	Name               string            `json:"name"`
	Fleet              string            `json:"fleet,omitempty"`
	Match              map[string]string `json:"match,omitempty"`
	SecurityUpdates    string            `json:"security_updates"`
	MinSeverity        string            `json:"min_severity"`
	ApprovalDelay      string            `json:"approval_delay"`
	ExpressLane        bool              `json:"express_lane"`
	OtherUpdates       string            `json:"other_updates"`
	Strategy           string            `json:"strategy"`
	Reboot             string            `json:"reboot"`
	Windows            []string          `json:"windows,omitempty"`
	Canary             int               `json:"canary"`
	Waves              []string          `json:"waves"`
	MaxUnavailable     int               `json:"max_unavailable"`
	MaxFailures        string            `json:"max_failures"`
	HealthCheck        string            `json:"health_check,omitempty"`
	Bake               string            `json:"bake"`
	UnattendedUpgrades string            `json:"unattended_upgrades"`
	Approvers          []string          `json:"approvers,omitempty"`
}

// PoliciesResponse lists fleet policies in the order they are matched.
type PoliciesResponse struct {
	Source string        `json:"source"` // the policy file, or "built-in default"
	Fleets []FleetPolicy `json:"fleets"`
}

// Rollouts returns one page of rollouts.
func (c Client) Rollouts(ctx context.Context, req RolloutsRequest) (RolloutsResponse, error) {
	var out RolloutsResponse
	return out, c.call(ctx, SubjectPlannerRollouts, req, &out)
}

// Rollout returns one rollout with its waves and hosts.
func (c Client) Rollout(ctx context.Context, req RolloutRequest) (RolloutDetail, error) {
	var out RolloutDetail
	return out, c.call(ctx, SubjectPlannerRollout, req, &out)
}

// Preview returns what the planner would plan, without planning it.
func (c Client) Preview(ctx context.Context, req PreviewRequest) (PreviewResponse, error) {
	var out PreviewResponse
	return out, c.call(ctx, SubjectPlannerPreview, req, &out)
}

// Compliance returns one page of exposure records.
func (c Client) Compliance(ctx context.Context, req ComplianceRequest) (ComplianceResponse, error) {
	var out ComplianceResponse
	return out, c.call(ctx, SubjectPlannerCompliance, req, &out)
}

// Policies returns the fleet policies in force.
func (c Client) Policies(ctx context.Context, req PoliciesRequest) (PoliciesResponse, error) {
	var out PoliciesResponse
	return out, c.call(ctx, SubjectPlannerPolicies, req, &out)
}
