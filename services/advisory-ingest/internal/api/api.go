// Package api answers advisory queries — by id, by CVE, modified since a time — over NATS
// request/reply (the micro service "advisories") and over HTTP on the service's server. Both
// take and return the types of events/query.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/store"
)

const (
	defaultLimit   = 100
	maxLimit       = 1000
	requestTimeout = 30 * time.Second
	// maxInFlight bounds the NATS requests answered at once.
	maxInFlight = 32
)

// API answers queries from the store.
type API struct {
	Store  *store.Store
	Logger *slog.Logger
}

// Error is an answer other than 200, with HTTP status semantics.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Message) }

func badRequest(format string, args ...any) error {
	return &Error{Code: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// Advisory answers a query by id.
func (a *API) Advisory(ctx context.Context, req query.AdvisoryRequest) (query.Advisory, error) {
	if req.ID == "" {
		return query.Advisory{}, badRequest("id is required")
	}
	return a.Store.Advisory(ctx, req.ID)
}

// ByCVE answers a query by CVE.
func (a *API) ByCVE(ctx context.Context, req query.AdvisoriesByCVERequest) (query.AdvisoriesResponse, error) {
	if !strings.HasPrefix(req.CVE, "CVE-") {
		return query.AdvisoriesResponse{}, badRequest("cve %.64q is not a CVE id", req.CVE)
	}
	limit, err := clampLimit(req.Limit)
	if err != nil {
		return query.AdvisoriesResponse{}, err
	}
	list, err := a.Store.ByCVE(ctx, req.CVE, limit)
	return query.AdvisoriesResponse{Advisories: list}, err
}

// Since answers a page of advisories modified since a time.
func (a *API) Since(ctx context.Context, req query.AdvisoriesSinceRequest) (query.AdvisoriesResponse, error) {
	limit, err := clampLimit(req.Limit)
	if err != nil {
		return query.AdvisoriesResponse{}, err
	}
	list, next, err := a.Store.Since(ctx, req.Since, req.Cursor, limit)
	if errors.Is(err, store.ErrBadCursor) {
		return query.AdvisoriesResponse{}, badRequest("cursor is not one this service gave")
	}
	return query.AdvisoriesResponse{Advisories: list, NextCursor: next}, err
}

func clampLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, badRequest("limit %d is negative", n)
	case n == 0:
		return defaultLimit, nil
	}
	return min(n, maxLimit), nil
}

// answer maps an error to what the caller sees; internal details stay in the log.
func (a *API) answer(what string, err error) query.Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return query.Error{Code: e.Code, Message: e.Message}
	case errors.Is(err, store.ErrNotFound):
		return query.Error{Code: http.StatusNotFound, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return query.Error{Code: http.StatusServiceUnavailable, Message: what + ": timed out"}
	}
	a.Logger.Error("query failed", "query", what, "err", err)
	return query.Error{Code: http.StatusInternalServerError, Message: what + ": internal error"}
}

// Routes are the HTTP routes, as mounted.
var Routes = []string{"GET /advisories/{id}", "GET /advisories"}

// Mount adds the HTTP API to a service's server (mux.Handle-compatible).
func (a *API) Mount(handle func(pattern string, h http.Handler)) {
	handle("GET /advisories/{id}", http.HandlerFunc(a.getAdvisory))
	handle("GET /advisories", http.HandlerFunc(a.listAdvisories))
}

func (a *API) getAdvisory(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	adv, err := a.Advisory(ctx, query.AdvisoryRequest{ID: r.PathValue("id")})
	a.write(w, "advisory", adv, err)
}

// listAdvisories serves ?cve=CVE-… or ?since=RFC3339[&cursor=…][&limit=…].
func (a *API) listAdvisories(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			a.write(w, "advisories", nil, badRequest("limit %.32q is not a number", s))
			return
		}
		limit = n
	}
	switch {
	case q.Has("cve"):
		resp, err := a.ByCVE(ctx, query.AdvisoriesByCVERequest{CVE: q.Get("cve"), Limit: limit})
		a.write(w, "advisories by cve", resp, err)
	case q.Has("since"):
		since, err := time.Parse(time.RFC3339Nano, q.Get("since"))
		if err != nil {
			a.write(w, "advisories since", nil, badRequest("since %.64q is not an RFC 3339 time", q.Get("since")))
			return
		}
		resp, err := a.Since(ctx, query.AdvisoriesSinceRequest{Since: since, Cursor: q.Get("cursor"), Limit: limit})
		a.write(w, "advisories since", resp, err)
	default:
		a.write(w, "advisories", nil, badRequest("give cve=CVE-… or since=<RFC 3339 time>"))
	}
}

func (a *API) write(w http.ResponseWriter, what string, v any, err error) {
	code := http.StatusOK
	if err != nil {
		e := a.answer(what, err)
		code, v = e.Code, e
	}
	body, merr := json.Marshal(v)
	if merr != nil {
		code, body = http.StatusInternalServerError, []byte(`{"code":500,"message":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// Serve registers the micro service "advisories" on nc and answers until ctx ends.
func (a *API) Serve(ctx context.Context, nc *nats.Conn) error {
	svc, err := micro.AddService(nc, micro.Config{Name: query.ServiceAdvisories, Version: "1.0.0",
		Description: "Patchfleet advisories: by id, by CVE, modified since"})
	if err != nil {
		return fmt.Errorf("add micro service %s: %w", query.ServiceAdvisories, err)
	}
	sem := make(chan struct{}, maxInFlight)
	for _, e := range []struct {
		name, subject string
		answer        func(context.Context, []byte) (any, error)
	}{
		{"get", query.SubjectAdvisory, handle(a.Advisory)},
		{"cve", query.SubjectAdvisoriesByCVE, handle(a.ByCVE)},
		{"since", query.SubjectAdvisoriesSince, handle(a.Since)},
	} {
		h := micro.HandlerFunc(func(r micro.Request) {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
				defer cancel()
				resp, err := e.answer(rctx, r.Data())
				if err != nil {
					qe := a.answer(e.name, err)
					body, _ := json.Marshal(qe)
					_ = query.Answer(nc, r, nil, qe.Code, qe.Message, body)
					return
				}
				_ = query.Answer(nc, r, resp, 0, "", nil)
			}()
		})
		if err := svc.AddEndpoint(e.name, h, micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			return fmt.Errorf("add endpoint %s: %w", e.subject, err)
		}
	}
	<-ctx.Done()
	if err := svc.Stop(); err != nil {
		return fmt.Errorf("stop micro service: %w", err)
	}
	for range maxInFlight {
		sem <- struct{}{} // answers in flight have gone out
	}
	return nil
}

func handle[Req, Resp any](f func(context.Context, Req) (Resp, error)) func(context.Context, []byte) (any, error) {
	return func(ctx context.Context, data []byte) (any, error) {
		var req Req
		if len(data) > 0 {
			if err := json.Unmarshal(data, &req); err != nil {
				return nil, badRequest("request: %v", err)
			}
		}
		return f(ctx, req)
	}
}
