package rollout

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/plan"
)

// persist stores one fleet's plan as a rollout with its waves and jobs, announces it
// (RolloutPlanned, then RolloutApprovalRequested or, for notify-only, RolloutCompleted with
// every host skipped) and advances it at once if it may start now. It reports false when the
// rollout exists already or another one with the same open key is open: then another
// delivery or another planner instance planned it, and this one does nothing.
func (e *Engine) persist(ctx context.Context, tx pgx.Tx, q *plannerdb.Queries, fp *plan.Fleet, id, openKey string, now time.Time, causation string) (bool, error) {
	state := query.RolloutScheduled
	switch {
	case fp.NotifyOnly():
		state = query.RolloutCompleted
	case fp.NeedsApproval:
		state = query.RolloutAwaitingApproval
	}
	var notBefore, finished *time.Time
	if !fp.NotBefore.IsZero() {
		notBefore = ptr(fp.NotBefore.UTC())
	}
	if state == query.RolloutCompleted {
		finished = &now
	}
	var windows []string
	for _, w := range fp.Policy.Windows {
		windows = append(windows, w.String())
	}
	if windows == nil {
		windows = []string{}
	}
	advisories := fp.Advisories
	if advisories == nil {
		advisories = []string{}
	}
	n, err := q.InsertRollout(ctx, plannerdb.InsertRolloutParams{
		ID: id, OpenKey: openKey, Kind: fp.Kind, Fleet: fp.Policy.Name, State: state, PlanHash: fp.Hash,
		AdvisoryIds: advisories, RequestID: fp.RequestID, Severity: string(fp.Severity), Strategy: fp.Strategy,
		Reboot: fp.Reboot, NeedsApproval: fp.NeedsApproval, NotBefore: notBefore, IgnoreWindows: fp.IgnoreWindows,
		Windows: windows, BakeNs: int64(fp.Policy.Bake), MaxFailures: int32(fp.MaxFailures),
		MaxUnavailable: int32(fp.MaxUnavailable), HealthCheck: fp.HealthCheck, ConfigureUnattended: fp.ConfigureUnattended,
		WaveCount: int32(len(fp.Waves)), HostCount: int32(len(fp.Hosts)), Canary: fp.Policy.Canary > 0 && !fp.IgnoreWindows, Now: now, FinishedAt: finished,
	})
	if err != nil {
		return false, wrapRollout("insert", id, err)
	}
	if n == 0 {
		e.log(id).Info("rollout already planned", "open_key", openKey)
		return false, nil
	}
	wavesRows := make([]plannerdb.InsertWavesParams, len(fp.Waves))
	for i, w := range fp.Waves {
		wavesRows[i] = plannerdb.InsertWavesParams{RolloutID: id, Idx: int32(i), Hosts: int32(len(w))}
	}
	if _, err := q.InsertWaves(ctx, wavesRows); err != nil {
		return false, wrapRollout("insert waves of", id, err)
	}
	// A notify-only rollout is finished below, which skips its hosts.
	targets, waveHosts := jobRows(id, fp)
	if _, err := q.InsertRolloutTargets(ctx, targets); err != nil {
		return false, wrapRollout("insert job targets of", id, err)
	}
	if _, err := q.InsertWaveHosts(ctx, waveHosts); err != nil {
		return false, wrapRollout("insert hosts of", id, err)
	}
	planned := events.RolloutPlanned{
		RolloutID: id, PlanHash: fp.Hash, Kind: fp.Kind, Fleet: fp.Policy.Name, AdvisoryIDs: fp.Advisories,
		RequestID: fp.RequestID, Severity: fp.Severity, Strategy: fp.Strategy, Reboot: fp.Reboot,
		Waves: fp.EventWaves(), HostCount: len(fp.Hosts), MaxFailures: fp.MaxFailures,
		NeedsApproval: fp.NeedsApproval, NotBefore: fp.NotBefore,
	}
	if err := e.emit(ctx, tx, id, causation, now, planned); err != nil {
		return false, err
	}
	log := e.log(id)
	log.Info("rollout planned", "fleet", fp.Policy.Name, "kind", fp.Kind, "hosts", len(fp.Hosts), "waves", len(fp.Waves),
		"state", state, "plan_hash", fp.Hash, "advisories", strings.Join(fp.Advisories, ","))
	switch state {
	case query.RolloutCompleted:
		r, err := q.LockRollout(ctx, id)
		if err != nil {
			return false, wrapRollout("load", id, err)
		}
		return true, e.finish(ctx, tx, q, r, query.RolloutCompleted, "completed", "notify-only fleet", now, causation)
	case query.RolloutAwaitingApproval:
		ask := events.RolloutApprovalRequested{
			RolloutID: id, PlanHash: fp.Hash, Fleet: fp.Policy.Name, Approvers: fp.Policy.Approvers,
			Summary: summary(fp),
		}
		return true, e.emit(ctx, tx, id, causation, now, ask)
	}
	r, err := q.LockRollout(ctx, id)
	if err != nil {
		return false, wrapRollout("load", id, err)
	}
	return true, e.advance(ctx, tx, q, r, now, causation)
}

func summary(fp *plan.Fleet) string {
	s := fmt.Sprintf("%s rollout on fleet %s: %d host(s) in %d wave(s), reboot %s", fp.Kind, fp.Policy.Name, len(fp.Hosts), len(fp.Waves), fp.Reboot)
	if len(fp.Advisories) > 0 {
		s += " for " + strings.Join(fp.Advisories, ", ")
	}
	return s
}

// jobRows lays out a plan's jobs: each distinct target (packages, advisories, pins) once,
// and the hosts of each wave by target, in wave order.
func jobRows(id string, fp *plan.Fleet) ([]plannerdb.InsertRolloutTargetsParams, []plannerdb.InsertWaveHostsParams) {
	var targets []plannerdb.InsertRolloutTargetsParams
	index := map[string]int32{}
	var key []byte
	// Hosts planned alike share their job: the last host's target is checked first.
	var last *plan.Job
	lastTarget := int32(-1)
	targetOf := func(h *plan.HostPlan) int32 {
		if h.Job == last {
			return lastTarget
		}
		key = h.AppendJobKey(key[:0])
		idx, ok := index[string(key)]
		if !ok {
			idx = int32(len(targets))
			index[string(key)] = idx
			targets = append(targets, plannerdb.InsertRolloutTargetsParams{
				RolloutID: id, Idx: idx, Packages: packagesJSON(h.Packages), AdvisoryIds: nonNil(h.Advisories),
				Components: componentsJSON(h.Components),
			})
		}
		last, lastTarget = h.Job, idx
		return idx
	}
	var rows []plannerdb.InsertWaveHostsParams
	for w, hosts := range fp.WaveHostPlans() {
		first := len(rows) // this wave's rows, one per target it has, in target order
		slot := make(map[int32]int, 1)
		for _, h := range hosts {
			t := targetOf(h)
			i, ok := slot[t]
			if !ok {
				i = len(rows)
				slot[t] = i
				row := plannerdb.InsertWaveHostsParams{RolloutID: id, Wave: int32(w), Target: t}
				if len(slot) == 1 {
					row.HostIds = make([]string, 0, len(hosts)) // a wave's hosts mostly share one job
				}
				rows = append(rows, row)
			}
			rows[i].HostIds = append(rows[i].HostIds, h.HostID)
		}
		slices.SortFunc(rows[first:], func(a, b plannerdb.InsertWaveHostsParams) int { return cmp.Compare(a.Target, b.Target) })
	}
	return targets, rows
}

func componentsJSON(c []events.Component) []byte {
	if len(c) == 0 {
		return []byte("[]")
	}
	b, _ := json.Marshal(c) // plain strings: cannot fail
	return b
}

func packagesJSON(p []events.PackageTarget) []byte {
	if len(p) == 0 {
		return []byte("[]")
	}
	b, _ := json.Marshal(p) // plain strings: cannot fail
	return b
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
