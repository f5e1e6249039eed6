// Package api serves the inventory query endpoint — over HTTP JSON (with bearer tokens) and,
// with the same requests and answers, over NATS request/reply as the micro service
// "inventory" — and the register's HTTP API (register, update, decommission, import a hosts
// file, push an offline report).
package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory/internal/store"
)

// Page sizes of every paginated answer.
const (
	DefaultLimit = 100
	MaxLimit     = query.MaxPage
	// MaxGroupedLimit bounds a grouped exposure page: a host costs it its id. The store
	// also ends a page at about 1 MiB of answer.
	MaxGroupedLimit = query.MaxGroupedPage
)

// API answers queries and registrations; HTTP and NATS are thin layers over it.
type API struct {
	Store  *store.Store
	Logger *slog.Logger
	// Wake tells the scan scheduler that hosts became due (scan-now, a registration).
	Wake func()
	// Tokens are the bearer tokens the HTTP API accepts.
	Tokens []Token
	Now    func() time.Time
	// OpenAPI is the description of the HTTP API, served at GET /openapi.yaml.
	OpenAPI []byte
}

// Error is an answer other than success: an HTTP status and a message meant for the caller.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Message) }

func badRequest(format string, args ...any) error {
	return &Error{Code: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// answer maps an error to what the caller sees; internal details stay in the log.
func (a *API) answer(what string, err error) query.Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return query.Error{Code: e.Code, Message: e.Message}
	case errors.Is(err, store.ErrNotFound):
		return query.Error{Code: http.StatusNotFound, Message: err.Error()}
	case errors.Is(err, store.ErrRetired):
		return query.Error{Code: http.StatusConflict, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return query.Error{Code: http.StatusServiceUnavailable, Message: what + ": timed out"}
	}
	a.Logger.Error("query failed", "query", what, "err", err)
	return query.Error{Code: http.StatusInternalServerError, Message: what + ": internal error"}
}

const cursorPrefix = "pf1:"

// EncodeCursor makes an opaque cursor from the last host id of a page.
func EncodeCursor(after string) string {
	if after == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + after))
}

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), cursorPrefix) {
		return "", badRequest("cursor: not a cursor this endpoint returned")
	}
	return strings.TrimPrefix(string(b), cursorPrefix), nil
}

func limit(n int) (int, error) {
	return limitOf(n, MaxLimit)
}

func limitOf(n, most int) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n < 0 || n > most:
		return 0, badRequest("limit: %d is not between 1 and %d", n, most)
	}
	return n, nil
}

// Hosts answers query.HostsRequest.
func (a *API) Hosts(ctx context.Context, req query.HostsRequest) (query.HostsResponse, error) {
	f := store.HostFilter{Fleet: req.Fleet, Tags: req.Tags, IDs: req.IDs, Package: req.Package,
		MinVersion: req.MinVersion, BelowVersion: req.BelowVersion, RebootRequired: req.RebootRequired,
		NotScannedFor: req.NotScannedFor, IncludeRetired: req.IncludeRetired}
	var err error
	if f.After, err = decodeCursor(req.Cursor); err != nil {
		return query.HostsResponse{}, err
	}
	if f.Limit, err = limit(req.Limit); err != nil {
		return query.HostsResponse{}, err
	}
	if req.Package != "" {
		if err := deb.ValidPackageName(req.Package); err != nil {
			return query.HostsResponse{}, badRequest("package: %v", err)
		}
	} else if req.MinVersion != "" || req.BelowVersion != "" {
		return query.HostsResponse{}, badRequest("min_version, below_version: need package")
	}
	for field, v := range map[string]string{"min_version": req.MinVersion, "below_version": req.BelowVersion} {
		if v != "" {
			if err := deb.ValidVersion(v); err != nil {
				return query.HostsResponse{}, badRequest("%s: %v", field, err)
			}
		}
	}
	for k := range req.Tags {
		if k == "" {
			return query.HostsResponse{}, badRequest("tags: empty tag name")
		}
	}
	if req.NotScannedFor < 0 {
		return query.HostsResponse{}, badRequest("not_scanned_for: negative duration")
	}
	hosts, next, err := a.Store.Hosts(ctx, f)
	if err != nil {
		return query.HostsResponse{}, err
	}
	return query.HostsResponse{Hosts: hosts, NextCursor: EncodeCursor(next)}, nil
}

// Host answers query.HostRequest.
func (a *API) Host(ctx context.Context, req query.HostRequest) (query.HostDetail, error) {
	if req.ID == "" {
		return query.HostDetail{}, badRequest("id: required")
	}
	return a.Store.Host(ctx, req.ID, req.WithPackages)
}

// Exposure answers query.ExposureRequest: by advisory id, by CVE (every advisory that has it
// as an alias), or by an explicit affected list, which needs nothing stored; with an affected
// list, advisory_id only names the advisory in the answer.
func (a *API) Exposure(ctx context.Context, req query.ExposureRequest) (query.ExposureResponse, error) {
	var out query.ExposureResponse
	switch {
	case len(req.Affected) > 0 && req.CVE != "":
		return out, badRequest("cve, affected: give one")
	case len(req.Affected) == 0 && (req.AdvisoryID != "") == (req.CVE != ""):
		return out, badRequest("advisory_id, cve, affected: give exactly one (advisory_id may name an affected list)")
	}
	f := store.ExposureFilter{Fleet: req.Fleet, IDs: req.HostIDs}
	var err error
	if f.After, err = decodeCursor(req.Cursor); err != nil {
		return out, err
	}
	most := MaxLimit
	if req.Grouped {
		most = MaxGroupedLimit
	}
	if f.Limit, err = limitOf(req.Limit, most); err != nil {
		return out, err
	}
	switch {
	case len(req.Affected) > 0:
		// The contract's own validation of affected entries.
		check := events.SecurityAdvisoryPublished{AdvisoryID: "request", Revision: 1, Source: "request",
			Severity: events.SeverityUnknown, Modified: time.Unix(1, 0), Affected: req.Affected}
		if err := check.Validate(); err != nil {
			return out, badRequest("affected: %v", err)
		}
		if req.AdvisoryID != "" {
			out.AdvisoryIDs = []string{req.AdvisoryID}
		}
		for _, af := range req.Affected {
			f.Entries = append(f.Entries, store.Entry{AdvisoryID: req.AdvisoryID, Affected: af})
		}
	default:
		key := req.AdvisoryID
		if req.CVE != "" {
			key = strings.ToUpper(req.CVE)
			if !strings.HasPrefix(key, "CVE-") {
				return out, badRequest("cve: %q is not a CVE id", req.CVE)
			}
		}
		advs, err := a.Store.Advisories(ctx, key)
		if err != nil {
			return out, err
		}
		for _, adv := range advs {
			if adv.Withdrawn {
				continue
			}
			out.AdvisoryIDs = append(out.AdvisoryIDs, adv.ID)
			for _, af := range adv.Affected {
				f.Entries = append(f.Entries, store.Entry{AdvisoryID: adv.ID, Affected: af})
			}
		}
	}
	var next string
	if req.Grouped {
		out.Hosts = []query.ExposedHost{}
		out.Groups, next, err = a.Store.ExposureGroups(ctx, f)
	} else {
		out.Hosts, next, err = a.Store.Exposure(ctx, f)
	}
	if err != nil {
		return query.ExposureResponse{}, err
	}
	out.NextCursor = EncodeCursor(next)
	return out, nil
}

// Scan answers query.ScanRequest: the hosts become due now and the scheduler is woken.
func (a *API) Scan(ctx context.Context, req query.ScanRequest) (query.ScanResponse, error) {
	if len(req.HostIDs) == 0 && req.Fleet == "" {
		return query.ScanResponse{}, badRequest("host_ids, fleet: give at least one")
	}
	n, err := a.Store.ScanNow(ctx, req.HostIDs, req.Fleet)
	if err != nil {
		return query.ScanResponse{}, err
	}
	if n > 0 && a.Wake != nil {
		a.Wake()
	}
	return query.ScanResponse{Queued: n}, nil
}
