// Package progress follows one rollout from its events — plan, decisions, waves, per-host
// results, halt, completion — and renders it as text with progress bars. The ChatOps bot
// keeps it as the state of a rollout's progress message; the CLI's `rollout --watch` draws
// it. Apply is idempotent: a redelivered event changes nothing twice.
package progress

import (
	"fmt"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events"
)

// Rollout states, as the events tell them (the planner's query states, plus "planned").
const (
	StatePlanned          = "planned"
	StateAwaitingApproval = "awaiting_approval"
	StateScheduled        = "scheduled"
	StateRunning          = "running"
	StatePaused           = "paused"
	StateHalted           = "halted"
	StateCompleted        = "completed"
	StateCancelled        = "cancelled"
	StateRejected         = "rejected"
)

// Wave states.
const (
	WavePending   = "pending"
	WaveRunning   = "running"
	WaveCompleted = "completed"
)

// Wave is one wave's progress. Succeeded and Failed are final once the wave completed.
type Wave struct {
	Index     int    `json:"index"`
	Hosts     int    `json:"hosts"`
	Succeeded int    `json:"succeeded,omitempty"`
	Failed    int    `json:"failed,omitempty"`
	State     string `json:"state"`
}

// Rollout is what the events have said about one rollout so far.
type Rollout struct {
	ID          string   `json:"id"`
	Fleet       string   `json:"fleet,omitempty"`
	Kind        string   `json:"kind,omitempty"`
	PlanHash    string   `json:"plan_hash,omitempty"`
	AdvisoryIDs []string `json:"advisory_ids,omitempty"`
	Severity    string   `json:"severity,omitempty"`
	HostCount   int      `json:"host_count,omitempty"`
	Waves       []Wave   `json:"waves,omitempty"`
	State       string   `json:"state,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	ApprovedBy  string   `json:"approved_by,omitempty"`
	// Approvers are the fleet's approvers as the approval request named them.
	Approvers []string `json:"approvers,omitempty"`
	// HostWave and Results cover the hosts of waves that have not completed; a completed
	// wave keeps only its counts.
	HostWave map[string]int    `json:"host_wave,omitempty"`
	Results  map[string]string `json:"results,omitempty"` // host -> succeeded | failed
	// Final holds the counts of RolloutCompleted.
	Final *Counts `json:"final,omitempty"`
}

// Counts are host outcomes.
type Counts struct {
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped,omitempty"`
}

// Ended reports whether the rollout is over.
func (r *Rollout) Ended() bool {
	return r.State == StateCompleted || r.State == StateCancelled || r.State == StateRejected
}

// Known reports whether the plan (or the end) has been seen. Events of several streams
// arrive in any order: before the plan, host results count against no total, and
// nothing should be shown.
func (r *Rollout) Known() bool { return r.PlanHash != "" || r.Final != nil }

func (r *Rollout) wave(i int) *Wave {
	for len(r.Waves) <= i {
		r.Waves = append(r.Waves, Wave{Index: len(r.Waves), State: WavePending})
	}
	return &r.Waves[i]
}

// setState moves the rollout on unless it has ended: an ended rollout stays as it ended.
func (r *Rollout) setState(s, reason string) {
	if !r.Ended() {
		r.State, r.Reason = s, reason
	}
}

// Apply folds one event into the rollout and reports whether anything changed. Events of
// other rollouts and other types are ignored.
func (r *Rollout) Apply(e events.Event) bool {
	before := r.fingerprint()
	switch e := e.(type) {
	case events.RolloutPlanned:
		r.Fleet, r.Kind, r.PlanHash, r.HostCount = e.Fleet, e.Kind, e.PlanHash, e.HostCount
		r.AdvisoryIDs, r.Severity = e.AdvisoryIDs, string(e.Severity)
		if r.HostWave == nil {
			r.HostWave = map[string]int{}
		}
		for _, w := range e.Waves {
			rw := r.wave(w.Index)
			rw.Hosts = len(w.Hosts)
			if rw.State == WaveCompleted {
				continue
			}
			for _, h := range w.Hosts {
				r.HostWave[h] = w.Index
			}
		}
		if r.State == "" {
			r.State = StatePlanned
			if e.NeedsApproval {
				r.State = StateAwaitingApproval
			}
		}
	case events.RolloutApprovalRequested:
		r.Fleet, r.PlanHash, r.Approvers = e.Fleet, e.PlanHash, e.Approvers
		if r.State == "" || r.State == StatePlanned {
			r.State = StateAwaitingApproval
		}
	case events.RolloutApproved:
		if r.ApprovalRefusal(e) != "" {
			break // the planner refuses it: the rollout keeps waiting
		}
		if r.State == StateAwaitingApproval || r.State == StatePlanned || r.State == "" {
			r.State, r.ApprovedBy = StateScheduled, e.By
		} else if r.ApprovedBy == "" {
			r.ApprovedBy = e.By // the waves' events came first
		}
	case events.RolloutRejected:
		r.setState(StateRejected, "rejected by "+e.By)
	case events.RolloutPaused:
		r.setState(StatePaused, "paused by "+e.By)
	case events.RolloutResumed:
		r.setState(StateRunning, "")
	case events.RolloutCancelled:
		r.setState(StateCancelled, "cancelled by "+e.By)
	case events.WaveStarted:
		w := r.wave(e.Wave)
		if w.State == WaveCompleted {
			break
		}
		w.State, w.Hosts = WaveRunning, len(e.Hosts)
		if r.HostWave == nil {
			r.HostWave = map[string]int{}
		}
		for _, h := range e.Hosts {
			r.HostWave[h] = e.Wave
		}
		if r.State != StatePaused && r.State != StateHalted {
			r.setState(StateRunning, r.Reason)
		}
	case events.WaveCompleted:
		w := r.wave(e.Wave)
		w.State, w.Succeeded, w.Failed = WaveCompleted, e.Succeeded, e.Failed
		for h, i := range r.HostWave {
			if i == e.Wave {
				delete(r.HostWave, h)
				delete(r.Results, h)
			}
		}
	case events.UpgradeCompleted:
		r.result(e.HostID, events.ResultSucceeded)
	case events.UpgradeFailed:
		r.result(e.HostID, events.ResultFailed)
	case events.RolloutHalted:
		r.setState(StateHalted, e.Reason)
	case events.RolloutCompleted:
		switch e.Outcome {
		case "cancelled":
			r.State = StateCancelled
		case "rejected":
			r.State = StateRejected
		default:
			r.State = StateCompleted
		}
		r.Final = &Counts{Succeeded: e.Succeeded, Failed: e.Failed, Skipped: e.Skipped}
		r.HostWave, r.Results = nil, nil
	}
	return r.fingerprint() != before
}

// ApprovalRefusal says why the planner refuses an approval, as far as the rollout's events
// tell: it names another plan than the one awaiting approval, or comes from someone the
// approval request does not list among the fleet's approvers. It is "" when nothing known
// refuses it (a request that listed no approvers lets anyone approve, as the planner does).
func (r *Rollout) ApprovalRefusal(a events.RolloutApproved) string {
	switch {
	case r.PlanHash == "" || a.PlanHash == r.PlanHash:
	case a.PlanHash == "":
		return fmt.Sprintf("it names no plan, the plan is %s", r.PlanHash)
	default:
		return fmt.Sprintf("it names plan %s, the plan is %s", a.PlanHash, r.PlanHash)
	}
	if len(r.Approvers) > 0 && !slices.Contains(r.Approvers, a.By) {
		return fmt.Sprintf("%s is not an approver of fleet %s", a.By, r.Fleet)
	}
	return ""
}

func (r *Rollout) result(host, status string) {
	if r.Final != nil {
		return
	}
	if i, ok := r.HostWave[host]; !ok && len(r.HostWave) > 0 {
		return // a host of a completed wave: its count is final already
	} else if ok && r.wave(i).State == WaveCompleted {
		return
	}
	if r.Results == nil {
		r.Results = map[string]string{}
	}
	r.Results[host] = status
}

// fingerprint is a cheap change detector for Apply.
func (r *Rollout) fingerprint() string {
	c := r.Totals()
	return fmt.Sprintf("%s|%s|%s|%s|%d|%v|%d/%d/%d|%d", r.State, r.Reason, r.PlanHash, r.ApprovedBy, r.HostCount, r.Waves, c.Succeeded, c.Failed, c.Skipped, len(r.HostWave))
}

// WaveCounts returns a wave's outcomes so far.
func (r *Rollout) WaveCounts(i int) Counts {
	if i < len(r.Waves) && r.Waves[i].State == WaveCompleted {
		return Counts{Succeeded: r.Waves[i].Succeeded, Failed: r.Waves[i].Failed}
	}
	var c Counts
	for h, s := range r.Results {
		if w, ok := r.HostWave[h]; ok && w == i {
			c.add(s)
		}
	}
	return c
}

func (c *Counts) add(status string) {
	switch status {
	case events.ResultSucceeded:
		c.Succeeded++
	case events.ResultFailed:
		c.Failed++
	case events.ResultSkipped:
		c.Skipped++
	}
}

// Totals returns the rollout's outcomes so far (the final ones once it completed).
func (r *Rollout) Totals() Counts {
	if r.Final != nil {
		return *r.Final
	}
	var c Counts
	for _, w := range r.Waves {
		if w.State == WaveCompleted {
			c.Succeeded += w.Succeeded
			c.Failed += w.Failed
		}
	}
	for _, s := range r.Results {
		c.add(s)
	}
	return c
}

// Bar draws done of total as a text bar width cells wide.
func Bar(done, total, width int) string {
	if width <= 0 {
		width = 20
	}
	filled := 0
	if total > 0 {
		filled = min(width, done*width/total)
	}
	return "[" + strings.Repeat("█", filled) + strings.Repeat("░", width-filled) + "]"
}

func percent(done, total int) int {
	if total <= 0 {
		return 0
	}
	return done * 100 / total
}

// Text renders the rollout: a header, an overall bar, and one bar per wave.
func Text(r *Rollout) string {
	var b strings.Builder
	head := []string{"rollout " + r.ID}
	for _, s := range []string{r.Fleet, r.Kind} {
		if s != "" {
			head = append(head, s)
		}
	}
	fmt.Fprintf(&b, "%s — %s", strings.Join(head, " · "), orDash(r.State))
	if r.Reason != "" {
		fmt.Fprintf(&b, " (%s)", r.Reason)
	}
	b.WriteByte('\n')
	total := r.HostCount
	if total == 0 {
		for _, w := range r.Waves {
			total += w.Hosts
		}
	}
	c := r.Totals()
	done := c.Succeeded + c.Failed + c.Skipped
	fmt.Fprintf(&b, "%s %3d%% %d/%d hosts", Bar(done, total, 20), percent(done, total), done, total)
	if c.Failed > 0 {
		fmt.Fprintf(&b, " · %d failed", c.Failed)
	}
	if c.Skipped > 0 {
		fmt.Fprintf(&b, " · %d skipped", c.Skipped)
	}
	b.WriteByte('\n')
	for _, w := range r.Waves {
		name := fmt.Sprintf("wave %d", w.Index)
		if w.Index == 0 {
			name += " (canary)"
		}
		wc := r.WaveCounts(w.Index)
		wd := wc.Succeeded + wc.Failed
		fmt.Fprintf(&b, "%-16s %s %d/%d", name, Bar(wd, w.Hosts, 10), wd, w.Hosts)
		if wc.Failed > 0 {
			fmt.Fprintf(&b, " · %d failed", wc.Failed)
		}
		switch w.State {
		case WaveCompleted:
			b.WriteString(" ✓")
		case WavePending:
			b.WriteString(" pending")
		}
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RolloutID returns the rollout an event belongs to, or "" for events about no rollout.
func RolloutID(e events.Event) string {
	switch e := e.(type) {
	case events.RolloutPlanned:
		return e.RolloutID
	case events.RolloutApprovalRequested:
		return e.RolloutID
	case events.RolloutApproved:
		return e.RolloutID
	case events.RolloutRejected:
		return e.RolloutID
	case events.RolloutPaused:
		return e.RolloutID
	case events.RolloutResumed:
		return e.RolloutID
	case events.RolloutCancelled:
		return e.RolloutID
	case events.WaveStarted:
		return e.RolloutID
	case events.WaveCompleted:
		return e.RolloutID
	case events.RolloutHalted:
		return e.RolloutID
	case events.RolloutCompleted:
		return e.RolloutID
	case events.UpgradeStarted:
		return e.RolloutID
	case events.UpgradeCompleted:
		return e.RolloutID
	case events.UpgradeFailed:
		return e.RolloutID
	case events.RebootRequired:
		return e.RolloutID
	case events.HostRebooted:
		return e.RolloutID
	}
	return ""
}

// Decode returns the typed event an envelope carries, for the types a rollout follows.
func Decode(env events.Envelope) (events.Event, bool, error) {
	var e events.Event
	switch env.Type {
	case "RolloutPlanned":
		e = &events.RolloutPlanned{}
	case "RolloutApprovalRequested":
		e = &events.RolloutApprovalRequested{}
	case "RolloutApproved":
		e = &events.RolloutApproved{}
	case "RolloutRejected":
		e = &events.RolloutRejected{}
	case "RolloutPaused":
		e = &events.RolloutPaused{}
	case "RolloutResumed":
		e = &events.RolloutResumed{}
	case "RolloutCancelled":
		e = &events.RolloutCancelled{}
	case "WaveStarted":
		e = &events.WaveStarted{}
	case "WaveCompleted":
		e = &events.WaveCompleted{}
	case "RolloutHalted":
		e = &events.RolloutHalted{}
	case "RolloutCompleted":
		e = &events.RolloutCompleted{}
	case "UpgradeCompleted":
		e = &events.UpgradeCompleted{}
	case "UpgradeFailed":
		e = &events.UpgradeFailed{}
	default:
		return nil, false, nil
	}
	if err := events.DecodeData(env, e); err != nil {
		return nil, true, err
	}
	return deref(e), true, nil
}

// deref turns the decoded pointer into the value Apply switches on.
func deref(e events.Event) events.Event {
	switch e := e.(type) {
	case *events.RolloutPlanned:
		return *e
	case *events.RolloutApprovalRequested:
		return *e
	case *events.RolloutApproved:
		return *e
	case *events.RolloutRejected:
		return *e
	case *events.RolloutPaused:
		return *e
	case *events.RolloutResumed:
		return *e
	case *events.RolloutCancelled:
		return *e
	case *events.WaveStarted:
		return *e
	case *events.WaveCompleted:
		return *e
	case *events.RolloutHalted:
		return *e
	case *events.RolloutCompleted:
		return *e
	case *events.UpgradeCompleted:
		return *e
	case *events.UpgradeFailed:
		return *e
	}
	return e
}
