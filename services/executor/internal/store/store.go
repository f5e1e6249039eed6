// Package store keeps the executor's jobs in PostgreSQL: the row of each job (what was asked,
// the step reached and the progress, saved after every step) and, when it ends, its result
// event, committed with the outbox so that state and announcement never disagree.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/executordb"
	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
)

// Store is the jobs table.
type Store struct{ Pool *pgxpool.Pool }

// Job is a job row, decoded.
type Job struct {
	ID, HostID, RolloutID, EventID, CorrelationID string
	Request                                       events.UpgradeRequested
	Status, Step, Reason, Executor                string
	Attempt                                       int
	Progress                                      job.Progress
	Result                                        *events.Message // set once finished
	ReceivedAt                                    time.Time
	StartedAt, FinishedAt                         *time.Time
}

// Finished reports whether the job has its outcome.
func (j Job) Finished() bool { return j.Status == job.StatusCompleted || j.Status == job.StatusFailed }

// ErrNotFound means no job has that id.
var ErrNotFound = errors.New("job not found")

// Receive records a job (once; a redelivery finds the existing row) and returns its row.
func (s *Store) Receive(ctx context.Context, req events.UpgradeRequested, m events.Meta) (Job, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Job{}, fmt.Errorf("receive job %s: %w", req.JobID, err)
	}
	r, err := executordb.New(s.Pool).ReceiveJob(ctx, executordb.ReceiveJobParams{JobID: req.JobID, HostID: req.HostID,
		RolloutID: req.RolloutID, EventID: m.ID, CorrelationID: m.CorrelationID, Request: body})
	if errors.Is(err, pgx.ErrNoRows) {
		// Another executor stored the job while this statement waited: its snapshot
		// predates that row.
		return s.Get(ctx, req.JobID)
	}
	if err != nil {
		return Job{}, fmt.Errorf("receive job %s: %w", req.JobID, err)
	}
	return fromRow(executordb.Job(r))
}

// Get returns a job.
func (s *Store) Get(ctx context.Context, id string) (Job, error) {
	r, err := executordb.New(s.Pool).GetJob(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Job{}, fmt.Errorf("load job %s: %w", id, err)
	}
	return fromRow(r)
}

func fromRow(r executordb.Job) (Job, error) {
	j := Job{ID: r.JobID, HostID: r.HostID, RolloutID: r.RolloutID, EventID: r.EventID, CorrelationID: r.CorrelationID,
		Status: r.Status, Step: r.Step, Reason: r.Reason, Executor: r.Executor, Attempt: int(r.Attempt),
		ReceivedAt: r.ReceivedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
	if err := json.Unmarshal(r.Request, &j.Request); err != nil {
		return Job{}, fmt.Errorf("load job %s: request: %w", r.JobID, err)
	}
	if err := json.Unmarshal(r.Progress, &j.Progress); err != nil {
		return Job{}, fmt.Errorf("load job %s: progress: %w", r.JobID, err)
	}
	if r.ResultID != "" {
		j.Result = &events.Message{Subject: r.ResultSubject, ID: r.ResultID, Data: r.ResultData}
	}
	return j, nil
}

// Start records a new attempt by executor and announces it (an UpgradeStarted per attempt,
// with an id derived from job and attempt). It returns the attempt number and when the job
// first started.
func (s *Store) Start(ctx context.Context, j Job, executor string, origin events.Origin, now time.Time) (int, time.Time, error) {
	var attempt int
	var started time.Time
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		r, err := executordb.New(tx).StartAttempt(ctx, executordb.StartAttemptParams{Executor: executor, JobID: j.ID})
		if err != nil {
			return err
		}
		attempt, started = int(r.Attempt), *r.StartedAt
		msg, err := events.NewDerived(events.UpgradeStarted{JobID: j.ID, RolloutID: j.RolloutID, HostID: j.HostID,
			Executor: executor, Attempt: attempt}, origin, now, j.ID, fmt.Sprint(attempt))
		if err != nil {
			return err
		}
		return outbox.Add(ctx, tx, msg)
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("start job %s: %w", j.ID, err)
	}
	return attempt, started, nil
}

// Save records the job's progress after a step, with events announcing what the step did
// (HostRebooted), in one transaction.
func (s *Store) Save(ctx context.Context, id string, p job.Progress, msgs ...events.Message) error {
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save job %s: %w", id, err)
	}
	save := func(q executordb.DBTX) error {
		n, err := executordb.New(q).SaveProgress(ctx, executordb.SaveProgressParams{Step: p.Step(), Progress: body, JobID: id})
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("job is not running")
		}
		return nil
	}
	if len(msgs) == 0 {
		// One statement needs no transaction of its own: one round trip instead of three.
		err = save(s.Pool)
	} else {
		err = db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
			if err := save(tx); err != nil {
				return err
			}
			return outbox.Add(ctx, tx, msgs...)
		})
	}
	if err != nil {
		return fmt.Errorf("save job %s step %s: %w", id, p.Step(), err)
	}
	return nil
}

// Finish records the job's outcome (result is its UpgradeCompleted or UpgradeFailed) with
// every event announcing it. A job that already has an outcome keeps it: finished reports
// false and nothing is written.
func (s *Store) Finish(ctx context.Context, id string, p job.Progress, reason string, result events.Message, more ...events.Message) (finished bool, err error) {
	body, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("finish job %s: %w", id, err)
	}
	status := job.StatusCompleted
	if reason != "" {
		status = job.StatusFailed
	}
	err = db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		n, err := executordb.New(tx).FinishJob(ctx, executordb.FinishJobParams{Status: status, Step: p.Step(), Progress: body,
			Reason: reason, ResultSubject: result.Subject, ResultID: result.ID, ResultData: result.Data, JobID: id})
		if err != nil || n == 0 {
			return err
		}
		finished = true
		return outbox.Add(ctx, tx, append([]events.Message{result}, more...)...)
	})
	if err != nil {
		return false, fmt.Errorf("finish job %s (%s): %w", id, status, err)
	}
	return finished, nil
}

// Reannounce puts a finished job's result event in the outbox again (same id: the stream
// keeps one copy), for a job delivered again after it ended.
func (s *Store) Reannounce(ctx context.Context, j Job) error {
	if j.Result == nil {
		return nil
	}
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error { return outbox.Add(ctx, tx, *j.Result) })
	if err != nil {
		return fmt.Errorf("re-announce job %s: %w", j.ID, err)
	}
	return nil
}
