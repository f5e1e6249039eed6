package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/console/auth"
	"github.com/patchfleet/patchfleet/tools/console/feed"
	"github.com/patchfleet/patchfleet/tools/console/view"
)

// Bounds on what one page reads: beyond them a page says it is truncated.
const (
	maxHosts   = 20000
	maxRecords = 50000
)

// allHosts pages through the register.
func (s *Server) allHosts(ctx context.Context, req query.HostsRequest) ([]query.Host, bool, error) {
	req.Limit = 1000
	var out []query.Host
	for {
		page, err := s.q.Hosts(ctx, req)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page.Hosts...)
		if page.NextCursor == "" {
			return out, false, nil
		}
		if len(out) >= maxHosts {
			return out, true, nil
		}
		req.Cursor = page.NextCursor
	}
}

// allCompliance pages through the compliance view.
func (s *Server) allCompliance(ctx context.Context, req query.ComplianceRequest) ([]query.ComplianceRecord, bool, error) {
	req.Limit = 1000
	var out []query.ComplianceRecord
	for {
		page, err := s.q.Compliance(ctx, req)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page.Records...)
		if page.NextCursor == "" {
			return out, false, nil
		}
		if len(out) >= maxRecords {
			return out, true, nil
		}
		req.Cursor = page.NextCursor
	}
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	ctx := r.Context()
	hosts, t1, err := s.allHosts(ctx, query.HostsRequest{})
	if err != nil {
		return "", pageData{}, err
	}
	history, t2, err := s.allCompliance(ctx, query.ComplianceRequest{})
	if err != nil {
		return "", pageData{}, err
	}
	var open []query.ComplianceRecord
	for _, rec := range history {
		if rec.Open() {
			open = append(open, rec)
		}
	}
	rs, err := s.q.Rollouts(ctx, query.RolloutsRequest{Open: true, Limit: 50})
	if err != nil {
		return "", pageData{}, err
	}
	o := view.BuildOverview(view.OverviewInput{Hosts: hosts, Open: open, History: history, Rollouts: rs.Rollouts,
		Now: s.now(), StaleAfter: s.cfg.StaleAfter, Days: s.cfg.ChartDays, Truncated: t1 || t2})
	return "overview", pageData{Title: "Fleet overview", Nav: "overview", Data: o}, nil
}

func (s *Server) rollouts(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	req := query.RolloutsRequest{Fleet: r.URL.Query().Get("fleet"), State: r.URL.Query().Get("state"), Limit: 100}
	rs, err := s.q.Rollouts(r.Context(), req)
	if err != nil {
		return "", pageData{}, err
	}
	return "rollouts", pageData{Title: "Rollouts", Nav: "rollouts", Data: rs.Rollouts}, nil
}

// rolloutPage is the rollout page.
type rolloutPage struct {
	D          query.RolloutDetail
	V          view.RolloutView
	Approvers  []string
	IsApprover bool
}

// approvers returns the approvers of a fleet, from the planner's policies.
func (s *Server) approvers(ctx context.Context, fleet string) ([]string, error) {
	pol, err := s.q.Policies(ctx, query.PoliciesRequest{Fleet: fleet})
	if err != nil {
		return nil, err
	}
	for _, f := range pol.Fleets {
		if f.Name == fleet {
			return f.Approvers, nil
		}
	}
	return nil, nil
}

// budget is a rollout's failure budget: from its plan event, else from the fleet policy.
func (s *Server) budget(ctx context.Context, d query.RolloutDetail) int {
	if b, ok := s.Feed.Budget(d.ID); ok {
		return b
	}
	pol, err := s.q.Policies(ctx, query.PoliciesRequest{Fleet: d.Fleet})
	if err != nil {
		return -1
	}
	for _, f := range pol.Fleets {
		if f.Name == d.Fleet {
			return view.BudgetFromPolicy(f.MaxFailures, d.HostCount)
		}
	}
	return -1
}

func (s *Server) rollout(w http.ResponseWriter, r *http.Request, sess auth.Session) (string, pageData, error) {
	ctx := r.Context()
	d, err := s.q.Rollout(ctx, query.RolloutRequest{ID: r.PathValue("id")})
	if err != nil {
		return "", pageData{}, err
	}
	approvers, err := s.approvers(ctx, d.Fleet)
	if err != nil {
		return "", pageData{}, err
	}
	live := view.NewLiveRollout(d, s.budget(ctx, d))
	p := rolloutPage{D: d, V: live.View(), Approvers: approvers, IsApprover: slices.Contains(approvers, sess.Name)}
	return "rollout", pageData{Title: "Rollout " + view.Short(d.ID), Nav: "rollouts", Data: p}, nil
}

// advisorySearch finds an advisory by id or CVE.
func (s *Server) advisorySearch(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var list []query.Advisory
	if q != "" {
		if strings.HasPrefix(strings.ToUpper(q), "CVE-") {
			res, err := s.q.AdvisoriesByCVE(r.Context(), query.AdvisoriesByCVERequest{CVE: strings.ToUpper(q), Limit: 100})
			if err != nil {
				return "", pageData{}, err
			}
			list = res.Advisories
		} else {
			a, err := s.q.Advisory(r.Context(), query.AdvisoryRequest{ID: q})
			var re *query.RemoteError
			if err != nil && !(errors.As(err, &re) && re.Code == http.StatusNotFound) {
				return "", pageData{}, err
			}
			if err == nil {
				list = []query.Advisory{a}
			}
		}
		if len(list) == 1 {
			http.Redirect(w, r, "/advisories/"+pathEscape(list[0].AdvisoryID), http.StatusSeeOther)
			return "", pageData{}, errRedirected
		}
	}
	return "advisories", pageData{Title: "Advisories", Nav: "advisories", Data: struct {
		Q    string
		List []query.Advisory
	}{q, list}}, nil
}

func (s *Server) advisory(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	ctx, id := r.Context(), r.PathValue("id")
	a, err := s.q.Advisory(ctx, query.AdvisoryRequest{ID: id})
	if err != nil {
		return "", pageData{}, err
	}
	exp, err := s.q.Exposure(ctx, query.ExposureRequest{AdvisoryID: a.AdvisoryID, Limit: 1000})
	if err != nil {
		return "", pageData{}, err
	}
	rs, err := s.q.Rollouts(ctx, query.RolloutsRequest{AdvisoryID: a.AdvisoryID, Limit: 100})
	if err != nil {
		return "", pageData{}, err
	}
	recs, _, err := s.allCompliance(ctx, query.ComplianceRequest{AdvisoryID: a.AdvisoryID})
	if err != nil {
		return "", pageData{}, err
	}
	p := view.BuildAdvisory(a, exp.Hosts, rs.Rollouts, recs, exp.NextCursor != "")
	return "advisory", pageData{Title: a.AdvisoryID, Nav: "advisories", Data: p}, nil
}

func (s *Server) hosts(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	q := r.URL.Query()
	req := query.HostsRequest{Fleet: q.Get("fleet"), Package: q.Get("package")}
	if q.Get("reboot") == "1" {
		t := true
		req.RebootRequired = &t
	}
	if q.Get("stale") == "1" {
		req.NotScannedFor = s.cfg.StaleAfter
	}
	hosts, trunc, err := s.allHosts(r.Context(), req)
	if err != nil {
		return "", pageData{}, err
	}
	return "hosts", pageData{Title: "Hosts", Nav: "hosts", Data: struct {
		Hosts      []query.Host
		Fleet, Pkg string
		Reboot     bool
		Stale      bool
		Truncated  bool
	}{hosts, req.Fleet, req.Package, req.RebootRequired != nil, req.NotScannedFor > 0, trunc}}, nil
}

// hostPage is the host page.
type hostPage struct {
	H          query.HostDetail
	Q          string
	Packages   []query.Package
	Stale      bool
	ScanNote   string
	Upgrades   []feed.Upgrade
	Drift      []feed.Drift
	Compliance []query.ComplianceRecord
	Logs       bool // stored job logs can be shown
}

func (s *Server) host(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	ctx := r.Context()
	h, err := s.q.Host(ctx, query.HostRequest{ID: r.PathValue("id"), WithPackages: true})
	if err != nil {
		return "", pageData{}, err
	}
	recs, _, err := s.allCompliance(ctx, query.ComplianceRequest{HostID: h.ID})
	if err != nil {
		return "", pageData{}, err
	}
	q := r.URL.Query().Get("q")
	p := hostPage{H: h, Q: q, Packages: view.FilterPackages(h.Packages, q), Stale: view.Stale(h.Host, s.now(), s.cfg.StaleAfter),
		ScanNote: view.ScanNote(h.Host, s.now()), Upgrades: s.Feed.Upgrades(h.ID), Drift: s.Feed.Drift(h.ID), Compliance: recs,
		Logs: s.cfg.ExecutorURL != ""}
	return "host", pageData{Title: h.Name, Nav: "hosts", Data: p}, nil
}

// complianceFilter reads the compliance page's filters.
func complianceFilter(r *http.Request) query.ComplianceRequest {
	q := r.URL.Query()
	return query.ComplianceRequest{AdvisoryID: q.Get("advisory"), HostID: q.Get("host"), Fleet: q.Get("fleet"), Open: q.Get("open") == "1"}
}

func (s *Server) compliance(w http.ResponseWriter, r *http.Request, _ auth.Session) (string, pageData, error) {
	req := complianceFilter(r)
	recs, trunc, err := s.allCompliance(r.Context(), req)
	if err != nil {
		return "", pageData{}, err
	}
	by := r.URL.Query().Get("by")
	if by != "host" {
		by = "advisory"
	}
	return "compliance", pageData{Title: "Compliance", Nav: "compliance", Data: struct {
		F         query.ComplianceRequest
		By        string
		Groups    []view.ComplianceGroup
		Records   []query.ComplianceRecord
		Truncated bool
		CSV       string
	}{req, by, view.GroupCompliance(recs, by == "host"), recs, trunc, "/compliance.csv?" + r.URL.RawQuery}}, nil
}

func (s *Server) complianceCSV(w http.ResponseWriter, r *http.Request, sess auth.Session) {
	ctx, cancel := context.WithTimeout(r.Context(), 4*s.cfg.QueryTimeout)
	defer cancel()
	recs, trunc, err := s.allCompliance(ctx, complianceFilter(r))
	if err != nil {
		s.fail(w, r, sess, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="patchfleet-compliance-`+s.now().UTC().Format("20060102")+`.csv"`)
	if trunc {
		w.Header().Set("X-Patchfleet-Truncated", "true")
	}
	if err := view.WriteComplianceCSV(w, recs); err != nil {
		s.log.Warn("compliance export", "err", err)
	}
}
