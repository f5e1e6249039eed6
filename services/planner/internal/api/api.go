// Package api serves the planner's query contract (events/query): rollouts, one rollout, a
// preview, the compliance view and the fleet policies, over NATS request/reply (a micro
// service) and as HTTP JSON on the service's server. Both transports call the same functions.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
	"github.com/patchfleet/patchfleet/services/planner/internal/rollout"
)

// API answers the planner's queries.
type API struct {
	Engine       *rollout.Engine
	Policy       *policy.Policy
	PolicySource string
	Logger       *slog.Logger
	Timeout      time.Duration // per request; default 30s
	// Tokens are the HTTP API's bearer tokens; with none every /v1 request is refused. NATS
	// queries are authorised by the NATS account instead.
	Tokens []Token
}

// Policies answers the fleet policies in force.
func (a *API) Policies(_ context.Context, req query.PoliciesRequest) (query.PoliciesResponse, error) {
	out := query.PoliciesResponse{Source: a.PolicySource, Fleets: []query.FleetPolicy{}}
	for _, f := range a.Policy.Fleets {
		if req.Fleet == "" || req.Fleet == f.Name {
			out.Fleets = append(out.Fleets, f.Contract())
		}
	}
	if req.Fleet != "" && len(out.Fleets) == 0 {
		return out, fmt.Errorf("fleet policy %s: %w", req.Fleet, rollout.ErrNotFound)
	}
	return out, nil
}

// PolicyCheck validates a policy file without loading it; each problem names its fleet,
// field and line.
func (a *API) PolicyCheck(_ context.Context, req query.PolicyCheckRequest) (query.PolicyCheckResponse, error) {
	p, err := policy.Parse([]byte(req.Content))
	if err != nil {
		out := query.PolicyCheckResponse{}
		for _, e := range unjoin(err) {
			out.Problems = append(out.Problems, e.Error())
		}
		return out, nil
	}
	out := query.PolicyCheckResponse{Valid: true, Fleets: []query.FleetPolicy{}}
	for _, f := range p.Fleets {
		out.Fleets = append(out.Fleets, f.Contract())
	}
	return out, nil
}

// unjoin lists the errors joined in err (errors.Join), or err itself.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func status(err error) int {
	switch {
	case errors.Is(err, rollout.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, rollout.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func (a *API) timeout() time.Duration {
	if a.Timeout > 0 {
		return a.Timeout
	}
	return 30 * time.Second
}

// endpoint adapts one query function to both transports.
type endpoint struct {
	name, subject string
	nats          func(ctx context.Context, body []byte) (any, error)
}

func handle[Req, Resp any](f func(context.Context, Req) (Resp, error)) func(context.Context, []byte) (any, error) {
	return func(ctx context.Context, body []byte) (any, error) {
		var req Req
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, fmt.Errorf("%w: decode request: %v", rollout.ErrBadRequest, err)
			}
		}
		return f(ctx, req)
	}
}

func (a *API) endpoints() []endpoint {
	return []endpoint{
		{"rollouts", query.SubjectPlannerRollouts, handle(a.Engine.Rollouts)},
		{"rollout", query.SubjectPlannerRollout, handle(a.Engine.Rollout)},
		{"preview", query.SubjectPlannerPreview, handle(a.Engine.Preview)},
		{"compliance", query.SubjectPlannerCompliance, handle(a.Engine.Compliance)},
		{"policies", query.SubjectPlannerPolicies, handle(a.Policies)},
		{"policy-check", query.SubjectPlannerPolicyCheck, handle(a.PolicyCheck)},
	}
}

// ServeNATS runs the micro service until ctx ends. Instances share a queue group, so each
// request is answered once.
func (a *API) ServeNATS(ctx context.Context, nc *nats.Conn) error {
	svc, err := micro.AddService(nc, micro.Config{Name: query.ServicePlanner, Version: "1.0.0", Description: "Patchfleet planner queries"})
	if err != nil {
		return fmt.Errorf("start planner query service: %w", err)
	}
	for _, ep := range a.endpoints() {
		ep := ep
		err := svc.AddEndpoint(ep.name, micro.HandlerFunc(func(r micro.Request) {
			rctx, cancel := context.WithTimeout(ctx, a.timeout())
			defer cancel()
			out, err := ep.nats(rctx, r.Data())
			if err != nil {
				code := status(err)
				if code == http.StatusInternalServerError {
					a.Logger.Error("query failed", "subject", ep.subject, "err", err)
				}
				_ = r.Error(strconv.Itoa(code), err.Error(), nil)
				return
			}
			if err := r.RespondJSON(out); err != nil {
				a.Logger.Warn("answer query", "subject", ep.subject, "err", err)
			}
		}), micro.WithEndpointSubject(ep.subject))
		if err != nil {
			_ = svc.Stop()
			return fmt.Errorf("add endpoint %s: %w", ep.subject, err)
		}
	}
	<-ctx.Done()
	return svc.Stop()
}

// Mount puts the HTTP API on the service's server behind bearer tokens (/healthz, /readyz
// and /metrics stay open).
func (a *API) Mount(s *ops.Server) { s.Handle("/v1/", a.Handler()) }

// Handler is the /v1/ API behind bearer-token authentication: GET
// /v1/rollouts?fleet=&state=&advisory_id=&open=&cursor=&limit=, GET /v1/rollouts/{id}, POST
// /v1/preview (a query.PreviewRequest), GET
// /v1/compliance?advisory_id=&host_id=&fleet=&open=&cursor=&limit=, GET /v1/policies?fleet=.
func (a *API) Handler() http.Handler {
	s := http.NewServeMux()
	s.Handle("GET /v1/rollouts", a.http(func(r *http.Request) (any, error) {
		v := r.URL.Query()
		return a.Engine.Rollouts(r.Context(), query.RolloutsRequest{
			Fleet: v.Get("fleet"), State: v.Get("state"), AdvisoryID: v.Get("advisory_id"), Open: v.Get("open") == "true",
			Cursor: v.Get("cursor"), Limit: atoi(v.Get("limit")),
		})
	}))
	s.Handle("GET /v1/rollouts/{id}", a.http(func(r *http.Request) (any, error) {
		return a.Engine.Rollout(r.Context(), query.RolloutRequest{ID: r.PathValue("id")})
	}))
	s.Handle("POST /v1/preview", a.http(func(r *http.Request) (any, error) {
		var req query.PreviewRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return nil, fmt.Errorf("%w: decode preview request: %v", rollout.ErrBadRequest, err)
		}
		return a.Engine.Preview(r.Context(), req)
	}))
	s.Handle("GET /v1/compliance", a.http(func(r *http.Request) (any, error) {
		v := r.URL.Query()
		return a.Engine.Compliance(r.Context(), query.ComplianceRequest{
			AdvisoryID: v.Get("advisory_id"), HostID: v.Get("host_id"), Fleet: v.Get("fleet"), Open: v.Get("open") == "true",
			Cursor: v.Get("cursor"), Limit: atoi(v.Get("limit")),
		})
	}))
	s.Handle("GET /v1/policies", a.http(func(r *http.Request) (any, error) {
		return a.Policies(r.Context(), query.PoliciesRequest{Fleet: r.URL.Query().Get("fleet")})
	}))
	s.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		ops.WriteJSON(w, http.StatusNotFound, query.Error{Code: http.StatusNotFound, Message: "no route " + r.Method + " " + r.URL.Path})
	})
	return a.authenticate(s)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func (a *API) http(f func(*http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), a.timeout())
		defer cancel()
		out, err := f(r.WithContext(ctx))
		if err != nil {
			code := status(err)
			if code == http.StatusInternalServerError {
				a.Logger.Error("query failed", "path", r.URL.Path, "err", err)
			}
			ops.WriteJSON(w, code, query.Error{Code: code, Message: err.Error()})
			return
		}
		ops.WriteJSON(w, http.StatusOK, out)
	})
}
