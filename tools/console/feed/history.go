// Package feed follows the event streams for the console: ordered, ephemeral JetStream
// consumers on ROLLOUTS, UPGRADES and HOSTS feed live updates to the pages that watch them,
// and a bounded in-memory history of each host's upgrades and drift (what no query endpoint
// answers). A restart rebuilds it from the streams.
package feed

import (
	"slices"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/tools/chatops/progress"
)

// Upgrade statuses in a host's history.
const (
	UpgradeRunning   = "running"
	UpgradeSucceeded = "succeeded"
	UpgradeFailed    = "failed"
)

// Upgrade is one job on a host, as its events told it.
type Upgrade struct {
	JobID         string
	RolloutID     string
	Status        string
	Started       time.Time
	Finished      time.Time
	Packages      []events.PackageResult
	Reason        string
	Message       string
	RebootPending bool
	Rebooted      bool
	Duration      time.Duration
}

// Drift is one unexplained change seen on a host.
type Drift struct {
	ScanID  string
	At      time.Time
	Changes []events.PackageChange
}

// History is the per-host history the console keeps, newest first, at most Limit entries
// per host and kind. It is not safe for concurrent use; Feed guards it.
type History struct {
	Limit    int
	upgrades map[string][]Upgrade
	drift    map[string][]Drift
	budgets  map[string]int // rollout -> failure budget, from RolloutPlanned
}

// NewHistory returns an empty history.
func NewHistory(limit int) *History {
	return &History{Limit: limit, upgrades: map[string][]Upgrade{}, drift: map[string][]Drift{}, budgets: map[string]int{}}
}

// Apply folds one event in; env gives its time.
func (h *History) Apply(env events.Envelope, e events.Event) {
	switch e := e.(type) {
	case events.UpgradeStarted:
		h.upgrade(e.HostID, e.JobID, func(u *Upgrade) {
			u.RolloutID, u.Started = e.RolloutID, env.Time
			if u.Status == "" {
				u.Status = UpgradeRunning
			}
		})
	case events.UpgradeCompleted:
		h.upgrade(e.HostID, e.JobID, func(u *Upgrade) {
			u.RolloutID, u.Status, u.Finished, u.Packages = e.RolloutID, UpgradeSucceeded, env.Time, e.Packages
			u.RebootPending, u.Rebooted, u.Duration = e.RebootPending, e.Rebooted, e.Duration
		})
	case events.UpgradeFailed:
		h.upgrade(e.HostID, e.JobID, func(u *Upgrade) {
			u.RolloutID, u.Status, u.Finished, u.Packages = e.RolloutID, UpgradeFailed, env.Time, e.Packages
			u.Reason, u.Message = e.Reason, e.Message
		})
	case events.HostDriftDetected:
		list := h.drift[e.HostID]
		if slices.ContainsFunc(list, func(d Drift) bool { return d.ScanID == e.ScanID }) {
			return
		}
		list = append([]Drift{{ScanID: e.ScanID, At: env.Time, Changes: e.Changes}}, list...)
		h.drift[e.HostID] = list[:min(len(list), h.Limit)]
	case events.RolloutPlanned:
		h.budgets[e.RolloutID] = e.MaxFailures
	case events.RolloutCompleted:
		delete(h.budgets, e.RolloutID)
	}
}

func (h *History) upgrade(host, job string, f func(*Upgrade)) {
	list := h.upgrades[host]
	i := slices.IndexFunc(list, func(u Upgrade) bool { return u.JobID == job })
	if i < 0 {
		list = append([]Upgrade{{JobID: job}}, list...)
		i = 0
	}
	f(&list[i])
	h.upgrades[host] = list[:min(len(list), h.Limit)]
}

// Upgrades returns a host's jobs, newest first.
func (h *History) Upgrades(host string) []Upgrade { return slices.Clone(h.upgrades[host]) }

// Drift returns a host's drift, newest first.
func (h *History) Drift(host string) []Drift { return slices.Clone(h.drift[host]) }

// Budget returns a rollout's failure budget from its plan.
func (h *History) Budget(rollout string) (int, bool) {
	b, ok := h.budgets[rollout]
	return b, ok
}

// Decode returns the typed event an envelope carries, for the types the console follows.
func Decode(env events.Envelope) (events.Event, bool, error) {
	if e, ok, err := progress.Decode(env); ok {
		return e, ok, err
	}
	switch env.Type {
	case "UpgradeStarted":
		var e events.UpgradeStarted
		err := events.DecodeData(env, &e)
		return e, true, err
	case "HostDriftDetected":
		var e events.HostDriftDetected
		err := events.DecodeData(env, &e)
		return e, true, err
	}
	return nil, false, nil
}
