package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// ErrBadRequest marks a query the caller got wrong (answered as 400).
var ErrBadRequest = errors.New("bad request")

func limit(n int) int32 {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return int32(n)
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// Rollouts answers a page of rollouts, newest first.
func (e *Engine) Rollouts(ctx context.Context, req query.RolloutsRequest) (query.RolloutsResponse, error) {
	p := plannerdb.ListRolloutsParams{Fleet: req.Fleet, State: req.State, AdvisoryID: req.AdvisoryID, Open: req.Open, Max: limit(req.Limit) + 1}
	if req.Cursor != "" {
		ns, id, ok := strings.Cut(req.Cursor, "/")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil || id == "" {
			return query.RolloutsResponse{}, fmt.Errorf("%w: cursor %q", ErrBadRequest, req.Cursor)
		}
		p.AfterTime, p.AfterID = time.Unix(0, n).UTC(), id
	}
	rows, err := plannerdb.New(e.Pool).ListRollouts(ctx, p)
	if err != nil {
		return query.RolloutsResponse{}, fmt.Errorf("list rollouts: %w", err)
	}
	out := query.RolloutsResponse{Rollouts: []query.RolloutSummary{}}
	for i, r := range rows {
		if int32(i) == p.Max-1 {
			last := rows[i-1]
			out.NextCursor = fmt.Sprintf("%d/%s", last.CreatedAt.UnixNano(), last.ID)
			break
		}
		out.Rollouts = append(out.Rollouts, summaryOf(r))
	}
	return out, nil
}

func summaryOf(r plannerdb.ListRolloutsRow) query.RolloutSummary {
	return query.RolloutSummary{
		ID: r.ID, Kind: r.Kind, Fleet: r.Fleet, State: r.State, PlanHash: r.PlanHash, AdvisoryIDs: r.AdvisoryIds,
		RequestID: r.RequestID, Severity: r.Severity, Strategy: r.Strategy, Reboot: r.Reboot,
		NeedsApproval: r.NeedsApproval, ApprovedBy: r.ApprovedBy, NotBefore: deref(r.NotBefore),
		CurrentWave: int(r.CurrentWave), WaveCount: int(r.WaveCount), HostCount: int(r.HostCount),
		Pending: int(r.Pending), InFlight: int(r.InFlight), Succeeded: int(r.Succeeded), Failed: int(r.Failed),
		Skipped: int(r.Skipped), Reason: r.Reason, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, FinishedAt: deref(r.FinishedAt),
	}
}

// ErrNotFound marks an unknown id (answered as 404).
var ErrNotFound = errNotFound

// Rollout answers one rollout with its waves and hosts.
func (e *Engine) Rollout(ctx context.Context, req query.RolloutRequest) (query.RolloutDetail, error) {
	if req.ID == "" {
		return query.RolloutDetail{}, fmt.Errorf("%w: id is required", ErrBadRequest)
	}
	q := plannerdb.New(e.Pool)
	rows, err := q.ListRollouts(ctx, plannerdb.ListRolloutsParams{ID: req.ID, Max: 1})
	if err != nil {
		return query.RolloutDetail{}, wrapRollout("load", req.ID, err)
	}
	if len(rows) == 0 {
		return query.RolloutDetail{}, fmt.Errorf("rollout %s: %w", req.ID, ErrNotFound)
	}
	out := query.RolloutDetail{RolloutSummary: summaryOf(rows[0])}
	ws, err := q.ListWaves(ctx, req.ID)
	if err != nil {
		return query.RolloutDetail{}, wrapRollout("load waves of", req.ID, err)
	}
	for _, w := range ws {
		out.Waves = append(out.Waves, query.RolloutWave{Index: int(w.Idx), State: w.State, Hosts: int(w.Hosts), StartedAt: deref(w.StartedAt), CompletedAt: deref(w.CompletedAt)})
	}
	hs, err := q.ListRolloutHosts(ctx, req.ID)
	if err != nil {
		return query.RolloutDetail{}, wrapRollout("load hosts of", req.ID, err)
	}
	for _, h := range hs {
		var pkgs []events.PackageTarget
		_ = json.Unmarshal(h.Packages, &pkgs) // written by persist from the same type
		out.Hosts = append(out.Hosts, query.RolloutHost{
			HostID: h.HostID, Wave: int(h.Wave), State: h.State, JobID: h.JobID, Packages: pkgs, Reason: h.Reason,
			RebootPending: h.RebootPending, Rebooted: h.Rebooted, DispatchedAt: deref(h.DispatchedAt), FinishedAt: deref(h.FinishedAt),
		})
	}
	return out, nil
}

// Compliance answers how long hosts were exposed, per advisory and host.
func (e *Engine) Compliance(ctx context.Context, req query.ComplianceRequest) (query.ComplianceResponse, error) {
	p := plannerdb.ComplianceParams{
		AdvisoryID: req.AdvisoryID, HostID: req.HostID, Bucket: plannerdb.ExposureBucket(req.HostID), Fleet: req.Fleet, Open: req.Open,
		Max: limit(req.Limit) + 1,
	}
	if req.Cursor != "" {
		a, h, ok := strings.Cut(req.Cursor, "\x00")
		if !ok {
			return query.ComplianceResponse{}, fmt.Errorf("%w: cursor %q", ErrBadRequest, req.Cursor)
		}
		p.AfterAdvisory, p.AfterHost = a, h
	}
	rows, err := plannerdb.New(e.Pool).Compliance(ctx, p)
	if err != nil {
		return query.ComplianceResponse{}, fmt.Errorf("compliance: %w", err)
	}
	now := e.now()
	out := query.ComplianceResponse{Records: []query.ComplianceRecord{}}
	for i, r := range rows {
		if int32(i) == p.Max-1 {
			out.NextCursor = rows[i-1].AdvisoryID + "\x00" + rows[i-1].HostID
			break
		}
		end := now
		switch {
		case r.PatchedAt != nil:
			end = *r.PatchedAt
		case r.RetiredAt != nil:
			end = *r.RetiredAt
		}
		out.Records = append(out.Records, query.ComplianceRecord{
			AdvisoryID: r.AdvisoryID, HostID: r.HostID, Fleet: r.Fleet, Severity: events.Severity(r.Severity),
			ExposedSince: r.ExposedSince, PatchedAt: deref(r.PatchedAt), RetiredAt: deref(r.RetiredAt), RebootPending: r.RebootPending,
			RolloutID: r.RolloutID, Vulnerable: end.Sub(r.ExposedSince),
		})
	}
	return out, nil
}

// Preview plans without persisting: what an advisory or a request would roll out.
func (e *Engine) Preview(ctx context.Context, req query.PreviewRequest) (query.PreviewResponse, error) {
	var out query.PreviewResponse
	switch {
	case req.Advisory != nil && req.Request == nil:
		if err := req.Advisory.Validate(); err != nil {
			return out, fmt.Errorf("%w: advisory: %v", ErrBadRequest, err)
		}
		res, err := e.planAdvisory(ctx, *req.Advisory, e.now())
		if err != nil {
			return out, err
		}
		for _, f := range res.Fleets {
			out.Plans = append(out.Plans, f.Preview())
		}
		out.Unmatched = res.Unmatched
	case req.Request != nil && req.Advisory == nil:
		if err := req.Request.Validate(); err != nil {
			return out, fmt.Errorf("%w: request: %v", ErrBadRequest, err)
		}
		res, err := e.planRequest(ctx, *req.Request)
		if err != nil {
			return out, err
		}
		for _, f := range res.Fleets {
			out.Plans = append(out.Plans, f.Preview())
		}
		out.Unmatched = res.Unmatched
	default:
		return out, fmt.Errorf("%w: give exactly one of advisory and request", ErrBadRequest)
	}
	if out.Plans == nil {
		out.Plans = []query.PlanPreview{}
	}
	return out, nil
}
