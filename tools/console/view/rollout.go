package view

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/progress"
)

// Host states on the rollout page. The planner's states, plus running (an executor took
// the job).
const (
	HostPending    = "pending"
	HostDispatched = "dispatched"
	HostRunning    = "running"
	HostSucceeded  = "succeeded"
	HostFailed     = "failed"
	HostSkipped    = "skipped"
)

// LiveRollout is a rollout as the planner answered it, moved on by the events that arrived
// since: progress.Rollout for the rollout and its waves, and each host's state.
type LiveRollout struct {
	Summary query.RolloutSummary
	P       *progress.Rollout
	Hosts   []LiveHost // in wave order
	// Budget is the number of failures the rollout tolerates (-1: unknown).
	Budget int
}

// LiveHost is one host's job in the rollout.
type LiveHost struct {
	HostID        string
	Wave          int
	State         string
	JobID         string
	Reason        string
	RebootPending bool
	Rebooted      bool
}

func terminal(s string) bool { return s == HostSucceeded || s == HostFailed || s == HostSkipped }

// NewLiveRollout seeds the live state from the planner's answer. budget is the failure
// budget when known (from the plan event), else -1.
func NewLiveRollout(d query.RolloutDetail, budget int) *LiveRollout {
	p := &progress.Rollout{ID: d.ID, Fleet: d.Fleet, Kind: d.Kind, PlanHash: d.PlanHash, AdvisoryIDs: d.AdvisoryIDs,
		Severity: d.Severity, HostCount: d.HostCount, State: d.State, Reason: d.Reason, ApprovedBy: d.ApprovedBy,
		HostWave: map[string]int{}, Results: map[string]string{}}
	completed := map[int]bool{}
	for _, w := range d.Waves {
		p.Waves = append(p.Waves, progress.Wave{Index: w.Index, Hosts: w.Hosts, State: w.State})
		completed[w.Index] = w.State == progress.WaveCompleted
	}
	l := &LiveRollout{Summary: d.RolloutSummary, P: p, Budget: budget}
	for _, h := range d.Hosts {
		l.Hosts = append(l.Hosts, LiveHost{HostID: h.HostID, Wave: h.Wave, State: h.State, JobID: h.JobID, Reason: h.Reason,
			RebootPending: h.RebootPending, Rebooted: h.Rebooted})
		if completed[h.Wave] {
			w := &p.Waves[waveIndex(p.Waves, h.Wave)]
			switch h.State {
			case HostSucceeded:
				w.Succeeded++
			case HostFailed:
				w.Failed++
			}
			continue
		}
		p.HostWave[h.HostID] = h.Wave
		if h.State == HostSucceeded || h.State == HostFailed {
			p.Results[h.HostID] = h.State
		}
	}
	slices.SortStableFunc(l.Hosts, func(a, b LiveHost) int { return a.Wave - b.Wave })
	if p.Ended() {
		p.Final = &progress.Counts{Succeeded: d.Succeeded, Failed: d.Failed, Skipped: d.Skipped}
	}
	return l
}

func waveIndex(ws []progress.Wave, idx int) int {
	for i, w := range ws {
		if w.Index == idx {
			return i
		}
	}
	return 0
}

func (l *LiveRollout) host(id string) *LiveHost {
	for i := range l.Hosts {
		if l.Hosts[i].HostID == id {
			return &l.Hosts[i]
		}
	}
	return nil
}

// Apply folds one event of this rollout into the live state and reports whether anything
// changed. Results are final: a late UpgradeStarted does not undo them.
func (l *LiveRollout) Apply(e events.Event) bool {
	if RolloutOf(e) != l.P.ID {
		return false
	}
	changed := false
	setHost := func(id, state string, f func(*LiveHost)) {
		h := l.host(id)
		if h == nil || (terminal(h.State) && !terminal(state)) {
			return
		}
		before := *h
		h.State = state
		if f != nil {
			f(h)
		}
		changed = changed || *h != before
	}
	// A wave's start dispatches no host: the planner sends jobs as max_unavailable allows
	// (UpgradeRequested, on JOBS, which the console does not read), so a host stays pending
	// until the executor starts it.
	switch e := e.(type) {
	case events.UpgradeStarted:
		setHost(e.HostID, HostRunning, func(h *LiveHost) { h.JobID = e.JobID })
	case events.UpgradeCompleted:
		setHost(e.HostID, HostSucceeded, func(h *LiveHost) {
			h.JobID, h.RebootPending, h.Rebooted, h.Reason = e.JobID, e.RebootPending, e.Rebooted, ""
		})
	case events.UpgradeFailed:
		setHost(e.HostID, HostFailed, func(h *LiveHost) { h.JobID, h.Reason = e.JobID, e.Reason })
	case events.RolloutPlanned:
		if l.Budget < 0 {
			l.Budget, changed = e.MaxFailures, true
		}
	case events.RolloutHalted:
		if e.Budget > 0 && l.Budget != e.Budget {
			l.Budget, changed = e.Budget, true
		}
	case events.RolloutCompleted:
		for _, r := range e.Results {
			setHost(r.HostID, r.Status, func(h *LiveHost) {
				h.RebootPending, h.Rebooted = r.RebootPending, r.Rebooted
				if r.Reason != "" {
					h.Reason = r.Reason
				}
			})
		}
	}
	if l.P.Apply(e) {
		changed = true
	}
	return changed
}

// RolloutOf returns the rollout an event belongs to ("" if none).
func RolloutOf(e events.Event) string { return progress.RolloutID(e) }

// BudgetFromPolicy resolves a policy's max_failures ("2", "10%") for a rollout of hosts
// hosts; -1 when it cannot be read.
func BudgetFromPolicy(maxFailures string, hosts int) int {
	s := strings.TrimSpace(maxFailures)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.ParseFloat(p, 64)
		if err != nil || n < 0 {
			return -1
		}
		return int(n * float64(hosts) / 100)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// RolloutView is what the rollout page shows and what each live update carries (as JSON).
type RolloutView struct {
	ID         string          `json:"id"`
	State      string          `json:"state"`
	StateClass string          `json:"state_class"`
	Reason     string          `json:"reason,omitempty"`
	ApprovedBy string          `json:"approved_by,omitempty"`
	PlanHash   string          `json:"plan_hash"`
	Total      int             `json:"total"`
	Done       int             `json:"done"`
	Succeeded  int             `json:"succeeded"`
	Failed     int             `json:"failed"`
	Skipped    int             `json:"skipped"`
	Running    int             `json:"running"`
	Percent    int             `json:"percent"`
	Summary    string          `json:"summary"`
	Budget     BudgetView      `json:"budget"`
	Waves      []WaveView      `json:"waves"`
	Hosts      []HostRowView   `json:"hosts"`
	Actions    map[string]bool `json:"actions"` // which decisions the state allows
}

// BudgetView is the failure budget: how many failures are tolerated and how many are used.
type BudgetView struct {
	Known bool   `json:"known"`
	Max   int    `json:"max"`
	Used  int    `json:"used"`
	Spent bool   `json:"spent"`
	Text  string `json:"text"`
}

// WaveView is one wave with its bar segments (percent widths of the wave's hosts).
type WaveView struct {
	Index     int    `json:"index"`
	Name      string `json:"name"`
	State     string `json:"state"`
	Hosts     int    `json:"hosts"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Running   int    `json:"running"`
	OKPct     int    `json:"ok_pct"`
	FailPct   int    `json:"fail_pct"`
	RunPct    int    `json:"run_pct"`
	Text      string `json:"text"`
}

// HostRowView is one host row.
type HostRowView struct {
	HostID string `json:"host_id"`
	Wave   int    `json:"wave"`
	State  string `json:"state"`
	Class  string `json:"class"`
	Note   string `json:"note,omitempty"`
	JobID  string `json:"job_id,omitempty"`
}

// StateClass maps a rollout or host state to a CSS class (a colour).
func StateClass(s string) string {
	switch s {
	case HostSucceeded, progress.StateCompleted:
		return "ok"
	case HostFailed, progress.StateHalted, progress.StateRejected:
		return "bad"
	case HostRunning, HostDispatched:
		return "run"
	case progress.StateAwaitingApproval, progress.StatePaused:
		return "warn"
	default:
		return "idle"
	}
}

// View renders the live state.
func (l *LiveRollout) View() RolloutView {
	p := l.P
	v := RolloutView{ID: p.ID, State: p.State, StateClass: StateClass(p.State), Reason: p.Reason, ApprovedBy: p.ApprovedBy,
		PlanHash: p.PlanHash, Total: p.HostCount}
	if v.Total == 0 {
		v.Total = len(l.Hosts)
	}
	perWave := map[int]*WaveView{}
	for _, w := range p.Waves {
		wc := p.WaveCounts(w.Index)
		name := fmt.Sprintf("Wave %d", w.Index)
		if w.Index == 0 {
			name = "Canary"
		}
		perWave[w.Index] = &WaveView{Index: w.Index, Name: name, State: w.State, Hosts: w.Hosts, Succeeded: wc.Succeeded, Failed: wc.Failed}
	}
	hostTotals := map[string]int{}
	for _, h := range l.Hosts {
		hostTotals[h.State]++
		if h.State == HostRunning || h.State == HostDispatched {
			v.Running++
			if w := perWave[h.Wave]; w != nil {
				w.Running++
			}
		}
		v.Hosts = append(v.Hosts, HostRowView{HostID: h.HostID, Wave: h.Wave, State: h.State, Class: StateClass(h.State), Note: hostNote(h), JobID: h.JobID})
	}
	for _, w := range p.Waves {
		wv := perWave[w.Index]
		if wv.State != progress.WaveCompleted {
			// count from the host rows, which follow UpgradeCompleted/Failed as they arrive
			wv.Succeeded, wv.Failed = 0, 0
			for _, h := range l.Hosts {
				if h.Wave == w.Index {
					switch h.State {
					case HostSucceeded:
						wv.Succeeded++
					case HostFailed:
						wv.Failed++
					}
				}
			}
		}
		if wv.Hosts > 0 {
			wv.OKPct = wv.Succeeded * 100 / wv.Hosts
			wv.FailPct = wv.Failed * 100 / wv.Hosts
			wv.RunPct = min(100-wv.OKPct-wv.FailPct, wv.Running*100/wv.Hosts)
		}
		wv.Text = fmt.Sprintf("%d/%d done", wv.Succeeded+wv.Failed, wv.Hosts)
		if wv.Failed > 0 {
			wv.Text += fmt.Sprintf(" · %d failed", wv.Failed)
		}
		if wv.Running > 0 {
			wv.Text += fmt.Sprintf(" · %d running", wv.Running)
		}
		v.Waves = append(v.Waves, *wv)
	}
	if p.Final != nil {
		v.Succeeded, v.Failed, v.Skipped = p.Final.Succeeded, p.Final.Failed, p.Final.Skipped
	} else {
		v.Succeeded, v.Failed, v.Skipped = hostTotals[HostSucceeded], hostTotals[HostFailed], hostTotals[HostSkipped]
	}
	v.Done = v.Succeeded + v.Failed + v.Skipped
	if v.Total > 0 {
		v.Percent = v.Done * 100 / v.Total
	}
	v.Summary = fmt.Sprintf("%d of %d hosts done", v.Done, v.Total)
	if v.Failed > 0 {
		v.Summary += fmt.Sprintf(" · %d failed", v.Failed)
	}
	if v.Running > 0 {
		v.Summary += fmt.Sprintf(" · %d running", v.Running)
	}
	v.Budget = BudgetView{Known: l.Budget >= 0, Max: l.Budget, Used: v.Failed}
	if v.Budget.Known {
		v.Budget.Spent = v.Failed > l.Budget
		v.Budget.Text = fmt.Sprintf("%d of %d tolerated failures used", min(v.Failed, l.Budget), l.Budget)
		if v.Budget.Spent {
			v.Budget.Text = fmt.Sprintf("spent: %d failures, %d tolerated", v.Failed, l.Budget)
		}
	} else {
		v.Budget.Text = fmt.Sprintf("%d failed (budget unknown)", v.Failed)
	}
	v.Actions = Allowed(p.State)
	return v
}

func hostNote(h LiveHost) string {
	var parts []string
	if h.Reason != "" {
		parts = append(parts, h.Reason)
	}
	if h.Rebooted {
		parts = append(parts, "rebooted")
	} else if h.RebootPending {
		parts = append(parts, "reboot pending")
	}
	return strings.Join(parts, " · ")
}

// Allowed says which decisions a rollout in state s can take.
func Allowed(s string) map[string]bool {
	return map[string]bool{
		"approve": s == progress.StateAwaitingApproval,
		"pause":   s == progress.StateRunning || s == progress.StateScheduled,
		"resume":  s == progress.StatePaused || s == progress.StateHalted,
		"cancel":  s != "" && s != progress.StateCompleted && s != progress.StateCancelled && s != progress.StateRejected,
	}
}
