// Package api serves the executor's job lookups on its HTTP server: GET /jobs/{id} (the job's
// row: status, step, progress, outcome) and GET /jobs/{id}/log (its stored command log). The
// log of a running job can be followed live on core NATS, subject pf.logs.<host>.
package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
	"github.com/patchfleet/patchfleet/services/executor/internal/joblog"
	"github.com/patchfleet/patchfleet/services/executor/internal/store"
)

// API serves job lookups.
type API struct {
	Store *store.Store
	DB    *pgxpool.Pool
}

// Job is the JSON answer of GET /jobs/{id}.
type Job struct {
	ID          string                  `json:"id"`
	HostID      string                  `json:"host_id"`
	RolloutID   string                  `json:"rollout_id"`
	Status      string                  `json:"status"`
	Step        string                  `json:"step"`
	Attempt     int                     `json:"attempt"`
	Executor    string                  `json:"executor,omitempty"`
	Reason      string                  `json:"reason,omitempty"`
	Request     events.UpgradeRequested `json:"request"`
	Progress    job.Progress            `json:"progress"`
	Result      *events.Envelope        `json:"result,omitempty"`
	ReceivedAt  time.Time               `json:"received_at"`
	StartedAt   *time.Time              `json:"started_at,omitempty"`
	FinishedAt  *time.Time              `json:"finished_at,omitempty"`
	LiveSubject string                  `json:"live_subject"`
}

// Mount adds the routes to the service's HTTP server.
func (a *API) Mount(s *ops.Server) {
	s.Handle("GET /jobs/{id}", http.HandlerFunc(a.job))
	s.Handle("GET /jobs/{id}/log", http.HandlerFunc(a.log))
}

func (a *API) job(w http.ResponseWriter, r *http.Request) {
	j, err := a.Store.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		ops.WriteJSON(w, http.StatusNotFound, map[string]any{"code": 404, "message": "no such job"})
		return
	}
	if err != nil {
		ops.WriteJSON(w, http.StatusInternalServerError, map[string]any{"code": 500, "message": "job lookup failed"})
		return
	}
	out := Job{ID: j.ID, HostID: j.HostID, RolloutID: j.RolloutID, Status: j.Status, Step: j.Step, Attempt: j.Attempt,
		Executor: j.Executor, Reason: j.Reason, Request: j.Request, Progress: j.Progress, ReceivedAt: j.ReceivedAt,
		StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, LiveSubject: joblog.Subject(j.HostID)}
	if j.Result != nil {
		var env events.Envelope
		if json.Unmarshal(j.Result.Data, &env) == nil {
			out.Result = &env
		}
	}
	ops.WriteJSON(w, http.StatusOK, out)
}

func (a *API) log(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.Store.Get(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		http.Error(w, "no such job", http.StatusNotFound)
		return
	}
	b, err := joblog.Read(r.Context(), a.DB, id)
	if err != nil {
		http.Error(w, "log lookup failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b)
}
