package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor/internal/store"
)

// DeadLettered gives a job the runner dead-lettered its outcome, so that nobody waits for a
// job that will never run: a job that did not decode or validate (an injection attempt in a
// package name, say) fails with invalid_job; one that kept failing or crashing its executor
// fails with unreachable. Only the identifiers are read from the rejected payload, and
// nothing from it reaches a host.
func (r *Runner) DeadLettered(ctx context.Context, dl events.DeadLetter) error {
	if dl.EventType != "" && dl.EventType != (events.UpgradeRequested{}).EventType() {
		return nil
	}
	var env struct {
		ID            string `json:"id"`
		CorrelationID string `json:"correlation_id"`
		Data          struct {
			JobID     string `json:"job_id"`
			RolloutID string `json:"rollout_id"`
			HostID    string `json:"host_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(dl.Data, &env); err != nil || env.Data.JobID == "" || env.Data.HostID == "" {
		r.Logger.Warn("dead-lettered job without a job or host id; no outcome announced", "reason", dl.Reason)
		return nil
	}
	d := env.Data
	log := r.Logger.With("job_id", d.JobID, "host_id", d.HostID, "correlation_id", d.RolloutID)
	j, err := r.Store.Get(ctx, d.JobID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		req := events.UpgradeRequested{JobID: d.JobID, RolloutID: d.RolloutID, HostID: d.HostID}
		if j, err = r.Store.Receive(ctx, req, events.Meta{ID: env.ID, CorrelationID: env.CorrelationID}); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if j.Finished() {
		return nil
	}
	reason := events.FailUnreachable
	if strings.Contains(dl.Reason, events.ErrInvalid.Error()) {
		reason = events.FailInvalidJob
	}
	corr := d.RolloutID
	if corr == "" {
		corr = env.CorrelationID
	}
	if corr == "" {
		corr = d.JobID
	}
	x := &Exec{r: r, Job: j, Req: j.Request, Log: log, Progress: j.Progress,
		Origin: events.Origin{Producer: r.Cfg.Producer, CorrelationID: corr, CausationID: env.ID}}
	if err := x.Fail(ctx, reason, fmt.Sprintf("job rejected by the executor's consumer: %s", dl.Reason), ""); err != nil {
		return err
	}
	return nil
}
