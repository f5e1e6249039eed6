package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory/internal/register"
	"github.com/patchfleet/patchfleet/services/inventory/internal/store"
)

// Token is a bearer token the HTTP API accepts, with the name recorded as the actor of what
// it does (who allowed trust on first use, who registered a host).
type Token struct {
	Name   string
	Secret string
}

// requestTimeout bounds one query; the ops server has no write timeout of its own.
const requestTimeout = 30 * time.Second

// Mount adds the API to a service's HTTP server: /v1/ behind bearer tokens, /openapi.yaml
// open (as /healthz, /readyz and /metrics stay).
func (a *API) Mount(srv *ops.Server) {
	srv.Handle("/v1/", a.Handler())
	srv.Handle("GET /openapi.yaml", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(a.OpenAPI)
	}))
}

// Routes are the API's routes (method and pattern), as mounted.
var Routes = []string{
	"GET /v1/hosts",
	"POST /v1/hosts",
	"POST /v1/hosts/import",
	"GET /v1/hosts/{id}",
	"PUT /v1/hosts/{id}",
	"DELETE /v1/hosts/{id}",
	"POST /v1/hosts/{id}/report",
	"POST /v1/hosts/{id}/scan",
	"POST /v1/scans",
	"GET /v1/exposure",
	"POST /v1/exposure",
}

// Handler returns the /v1/ API behind bearer-token authentication.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	h := map[string]http.HandlerFunc{
		"GET /v1/hosts":              a.listHosts,
		"POST /v1/hosts":             a.registerHost,
		"POST /v1/hosts/import":      a.importHosts,
		"GET /v1/hosts/{id}":         a.getHost,
		"PUT /v1/hosts/{id}":         a.registerHost,
		"DELETE /v1/hosts/{id}":      a.decommission,
		"POST /v1/hosts/{id}/report": a.report,
		"POST /v1/hosts/{id}/scan":   a.scanHost,
		"POST /v1/scans":             a.scan,
		"GET /v1/exposure":           a.exposureGET,
		"POST /v1/exposure":          a.exposurePOST,
	}
	for _, route := range Routes {
		mux.Handle(route, h[route])
	}
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, query.Error{Code: http.StatusNotFound, Message: "no route " + r.Method + " " + r.URL.Path})
	})
	return a.authenticate(mux)
}

type actorKey struct{}

func actor(ctx context.Context) string { s, _ := ctx.Value(actorKey{}).(string); return s }

// authenticate accepts a request carrying one of the tokens. Tokens are compared as SHA-256
// digests in constant time, every token every time, so timing says nothing about them.
func (a *API) authenticate(next http.Handler) http.Handler {
	digests := make([][32]byte, len(a.Tokens))
	for i, t := range a.Tokens {
		digests[i] = sha256.Sum256([]byte(t.Secret))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(given)))
		match := -1
		for i, d := range digests {
			if subtle.ConstantTimeCompare(got[:], d[:]) == 1 && ok && given != "" {
				match = i
			}
		}
		if match < 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="patchfleet-inventory"`)
			writeError(w, query.Error{Code: http.StatusUnauthorized, Message: "a valid bearer token is required"})
			return
		}
		ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), actorKey{}, "api:"+a.Tokens[match].Name), requestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func writeError(w http.ResponseWriter, e query.Error) { writeJSON(w, e.Code, e) }

// writeJSON writes compact JSON: answers run to hundreds of kilobytes (a page of exposed
// hosts with their packages), and indentation would double them.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"code":500,"message":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

func (a *API) fail(w http.ResponseWriter, what string, err error) { writeError(w, a.answer(what, err)) }

// decode reads a JSON body strictly: unknown fields are a 400 naming them.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Code: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body larger than %d bytes", tooBig.Limit)}
		}
		return badRequest("body: %v", err)
	}
	return nil
}

func (a *API) listHosts(w http.ResponseWriter, r *http.Request) {
	req, err := hostsRequest(r.URL.Query())
	if err != nil {
		a.fail(w, "hosts", err)
		return
	}
	resp, err := a.Hosts(r.Context(), req)
	if err != nil {
		a.fail(w, "hosts", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// hostsRequest reads GET /v1/hosts parameters: fleet, tag=k=v (repeated), id (repeated),
// package, min_version, below_version, reboot_required, not_scanned_for (a Go duration),
// include_retired, cursor, limit.
func hostsRequest(v url.Values) (query.HostsRequest, error) {
	if err := known(v, "fleet", "tag", "id", "package", "min_version", "below_version", "reboot_required",
		"not_scanned_for", "include_retired", "cursor", "limit"); err != nil {
		return query.HostsRequest{}, err
	}
	req := query.HostsRequest{Fleet: v.Get("fleet"), IDs: v["id"], Package: v.Get("package"),
		MinVersion: v.Get("min_version"), BelowVersion: v.Get("below_version"), Cursor: v.Get("cursor")}
	for _, t := range v["tag"] {
		k, val, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return req, badRequest("tag: %q is not name=value", t)
		}
		if req.Tags == nil {
			req.Tags = map[string]string{}
		}
		req.Tags[k] = val
	}
	var err error
	if s := v.Get("reboot_required"); s != "" {
		b, perr := strconv.ParseBool(s)
		if perr != nil {
			return req, badRequest("reboot_required: %q is not true or false", s)
		}
		req.RebootRequired = &b
	}
	if s := v.Get("include_retired"); s != "" {
		if req.IncludeRetired, err = strconv.ParseBool(s); err != nil {
			return req, badRequest("include_retired: %q is not true or false", s)
		}
	}
	if s := v.Get("not_scanned_for"); s != "" {
		if req.NotScannedFor, err = time.ParseDuration(s); err != nil || req.NotScannedFor <= 0 {
			return req, badRequest("not_scanned_for: %q is not a positive duration like 24h", s)
		}
	}
	if req.Limit, err = intParam(v, "limit"); err != nil {
		return req, err
	}
	return req, nil
}

func known(v url.Values, names ...string) error {
	for k := range v {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			return badRequest("%s: unknown parameter", k)
		}
	}
	return nil
}

func intParam(v url.Values, name string) (int, error) {
	s := v.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, badRequest("%s: %q is not a number", name, s)
	}
	return n, nil
}

func (a *API) getHost(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := known(v, "packages"); err != nil {
		a.fail(w, "host", err)
		return
	}
	with := false
	if s := v.Get("packages"); s != "" {
		var err error
		if with, err = strconv.ParseBool(s); err != nil {
			a.fail(w, "host", badRequest("packages: %q is not true or false", s))
			return
		}
	}
	resp, err := a.Host(r.Context(), query.HostRequest{ID: r.PathValue("id"), WithPackages: with})
	if err != nil {
		a.fail(w, "host", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// registerHost handles POST /v1/hosts and PUT /v1/hosts/{id}; the body is a HostRegistered.
func (a *API) registerHost(w http.ResponseWriter, r *http.Request) {
	var e events.HostRegistered
	if err := decode(r, &e); err != nil {
		a.fail(w, "register", err)
		return
	}
	if id := r.PathValue("id"); id != "" {
		if e.HostID != "" && e.HostID != id {
			a.fail(w, "register", badRequest("host_id: %q differs from the path's %q", e.HostID, id))
			return
		}
		e.HostID = id
	}
	if e.Name == "" {
		e.Name = e.HostID
	}
	if err := register.Check(e); err != nil {
		a.fail(w, "register", badRequest("%v", err))
		return
	}
	created, err := a.Store.Register(r.Context(), e, actor(r.Context()))
	if err != nil {
		a.fail(w, "register", err)
		return
	}
	if a.Wake != nil {
		a.Wake()
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	host, err := a.Store.Host(r.Context(), e.HostID, false)
	if err != nil {
		a.fail(w, "register", err)
		return
	}
	writeJSON(w, code, host.Host)
}

// importHosts handles POST /v1/hosts/import: a YAML hosts file, all or nothing.
func (a *API) importHosts(w http.ResponseWriter, r *http.Request) {
	hosts, err := register.ParseFile(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.fail(w, "import", &Error{Code: http.StatusRequestEntityTooLarge, Message: "hosts file too large"})
			return
		}
		a.fail(w, "import", badRequest("%v", err))
		return
	}
	created, err := a.Store.Import(r.Context(), hosts, actor(r.Context()))
	if err != nil {
		a.fail(w, "import", err)
		return
	}
	if a.Wake != nil {
		a.Wake()
	}
	writeJSON(w, http.StatusOK, map[string]int{"hosts": len(hosts), "created": created})
}

func (a *API) decommission(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := known(v, "reason"); err != nil {
		a.fail(w, "decommission", err)
		return
	}
	if err := a.Store.Decommission(r.Context(), r.PathValue("id"), v.Get("reason")); err != nil {
		a.fail(w, "decommission", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// report handles POST /v1/hosts/{id}/report: the raw output of the scan script, stored
// exactly like a scan (offline).
func (a *API) report(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.fail(w, "report", &Error{Code: http.StatusRequestEntityTooLarge, Message: "report too large"})
			return
		}
		a.fail(w, "report", badRequest("body: %v", err))
		return
	}
	h, err := a.Store.Host(r.Context(), id, false)
	if err != nil {
		a.fail(w, "report", err)
		return
	}
	facts, err := hostfacts.Parse(body)
	if err != nil {
		a.fail(w, "report", badRequest("body: %v", err))
		return
	}
	rep, err := a.Store.Observe(r.Context(), store.Observation{HostID: h.ID, ScanID: events.NewID(), At: a.now(), Offline: true, Facts: facts})
	if err != nil {
		a.fail(w, "report", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *API) scanHost(w http.ResponseWriter, r *http.Request) {
	a.respondScan(w, r, query.ScanRequest{HostIDs: []string{r.PathValue("id")}})
}

func (a *API) scan(w http.ResponseWriter, r *http.Request) {
	var req query.ScanRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, "scan", err)
		return
	}
	a.respondScan(w, r, req)
}

func (a *API) respondScan(w http.ResponseWriter, r *http.Request, req query.ScanRequest) {
	resp, err := a.Scan(r.Context(), req)
	if err != nil {
		a.fail(w, "scan", err)
		return
	}
	writeJSON(w, http.StatusAccepted, resp)
}

// exposureGET handles GET /v1/exposure?advisory_id=|cve=&fleet=&host_id=&cursor=&limit=&grouped=.
func (a *API) exposureGET(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := known(v, "advisory_id", "cve", "fleet", "host_id", "cursor", "limit", "grouped"); err != nil {
		a.fail(w, "exposure", err)
		return
	}
	req := query.ExposureRequest{AdvisoryID: v.Get("advisory_id"), CVE: v.Get("cve"), Fleet: v.Get("fleet"),
		HostIDs: v["host_id"], Cursor: v.Get("cursor")}
	var err error
	if req.Limit, err = intParam(v, "limit"); err != nil {
		a.fail(w, "exposure", err)
		return
	}
	if s := v.Get("grouped"); s != "" {
		if req.Grouped, err = strconv.ParseBool(s); err != nil {
			a.fail(w, "exposure", badRequest("grouped: %q is not true or false", s))
			return
		}
	}
	a.respondExposure(w, r, req)
}

// exposurePOST handles POST /v1/exposure with a query.ExposureRequest body (needed for an
// explicit affected list).
func (a *API) exposurePOST(w http.ResponseWriter, r *http.Request) {
	var req query.ExposureRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, "exposure", err)
		return
	}
	a.respondExposure(w, r, req)
}

func (a *API) respondExposure(w http.ResponseWriter, r *http.Request, req query.ExposureRequest) {
	resp, err := a.Exposure(r.Context(), req)
	if err != nil {
		a.fail(w, "exposure", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
