package console

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/console/auth"
)

// Test tokens: alice approves both fleets, bob approves none.
const (
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789ab"
	planHash   = "9f2c4e1ab37d55e0c1b8"
)

// fixture is a small fleet as the query endpoints would answer it.
type fixture struct {
	now      time.Time
	hosts    []query.Host
	details  map[string]query.HostDetail
	records  []query.ComplianceRecord
	rollouts map[string]query.RolloutDetail
	policies []query.FleetPolicy
	advisory query.Advisory
	exposure []query.ExposedHost
}

func newFixture(now time.Time) *fixture {
	day := 24 * time.Hour
	os12 := events.OSRelease{ID: "debian", VersionID: "12", Codename: "bookworm"}
	host := func(id, fleet string, scanned time.Duration) query.Host {
		return query.Host{ID: id, Name: id + ".example.net", Fleet: fleet, OS: os12, Kernel: "6.1.0-25-amd64",
			LastScan: now.Add(-scanned), PackageCount: 412, SSH: events.SSHTarget{Address: "10.0.0.1"}}
	}
	f := &fixture{now: now}
	f.hosts = []query.Host{
		host("web-1", "prod-web", time.Hour), host("web-2", "prod-web", time.Hour), host("web-3", "prod-web", 2*time.Hour),
		host("db-1", "prod-db", time.Hour), host("old-1", "staging", 3*day),
	}
	f.hosts[3].RebootRequired, f.hosts[3].RebootPackages = true, []string{"linux-image-6.1.0-26-amd64"}
	f.hosts[3].Components = []events.Component{{Name: "docker", Version: "27.3.1"}, {Name: "nginx", Version: "1.22.1"}}
	f.details = map[string]query.HostDetail{}
	for _, h := range f.hosts {
		f.details[h.ID] = query.HostDetail{Host: h, Packages: []query.Package{
			{Name: "libssl3", Version: "3.0.14-1~deb12u1", Arch: "amd64", SourceName: "openssl", SourceVersion: "3.0.14-1~deb12u1", Status: "ii"},
			{Name: "openssl", Version: "3.0.14-1~deb12u1", Arch: "amd64", SourceName: "openssl", SourceVersion: "3.0.14-1~deb12u1", Status: "ii"},
			{Name: "nginx", Version: "1.22.1-9", Arch: "amd64", SourceName: "nginx", SourceVersion: "1.22.1-9", Status: "ii"},
			{Name: "bash", Version: "5.2.15-2+b7", Arch: "amd64", SourceName: "bash", SourceVersion: "5.2.15-2", Status: "ii"},
		}}
	}
	rec := func(adv, host, fleet string, sev events.Severity, since, patched time.Duration, rollout string) query.ComplianceRecord {
		r := query.ComplianceRecord{AdvisoryID: adv, HostID: host, Fleet: fleet, Severity: sev, ExposedSince: now.Add(-since), RolloutID: rollout}
		if patched > 0 {
			r.PatchedAt = now.Add(-patched)
			r.Vulnerable = since - patched
		} else {
			r.Vulnerable = since
		}
		return r
	}
	f.records = []query.ComplianceRecord{
		rec("DSA-5001-1", "web-1", "prod-web", events.SeverityHigh, 5*day, day, "r-running"),
		rec("DSA-5001-1", "web-2", "prod-web", events.SeverityHigh, 5*day, 0, "r-running"),
		rec("DSA-5001-1", "web-3", "prod-web", events.SeverityHigh, 5*day, 0, "r-running"),
		rec("USN-6409-1", "db-1", "prod-db", events.SeverityCritical, 10*day, 0, ""),
		rec("DSA-4990-1", "web-1", "prod-web", events.SeverityMedium, 20*day, 12*day, ""),
		rec("=HYPERLINK(\"x\")", "old-1", "staging", events.SeverityLow, 2*day, 0, ""),
	}
	f.rollouts = map[string]query.RolloutDetail{
		"r-running": {
			RolloutSummary: query.RolloutSummary{ID: "r-running", Kind: events.KindSecurity, Fleet: "prod-web", State: query.RolloutRunning,
				PlanHash: "5d1e0c7a9b3f", AdvisoryIDs: []string{"DSA-5001-1"}, Severity: "high", Strategy: events.StrategyInPlace,
				Reboot: events.RebootIfRequired, CurrentWave: 1, WaveCount: 2, HostCount: 3, InFlight: 2, Succeeded: 1, CreatedAt: now.Add(-2 * time.Hour)},
			Waves: []query.RolloutWave{{Index: 0, State: "completed", Hosts: 1}, {Index: 1, State: "running", Hosts: 2}},
			Hosts: []query.RolloutHost{
				{HostID: "web-1", Wave: 0, State: "succeeded", JobID: "job-1"},
				{HostID: "web-2", Wave: 1, State: "dispatched", JobID: "job-2"},
				{HostID: "web-3", Wave: 1, State: "dispatched", JobID: "job-3"},
			},
		},
		"r-waiting": {
			RolloutSummary: query.RolloutSummary{ID: "r-waiting", Kind: events.KindSecurity, Fleet: "prod-db", State: query.RolloutAwaitingApproval,
				PlanHash: planHash, AdvisoryIDs: []string{"USN-6409-1"}, Severity: "critical", Strategy: events.StrategyInPlace,
				Reboot: events.RebootNever, NeedsApproval: true, WaveCount: 1, HostCount: 1, Pending: 1, CreatedAt: now.Add(-30 * time.Minute)},
			Waves: []query.RolloutWave{{Index: 0, State: "pending", Hosts: 1}},
			Hosts: []query.RolloutHost{{HostID: "db-1", Wave: 0, State: "pending"}},
		},
	}
	f.policies = []query.FleetPolicy{
		{Name: "prod-web", SecurityUpdates: "auto", MaxFailures: "1", Approvers: []string{"alice"}},
		{Name: "prod-db", SecurityUpdates: "approve", MaxFailures: "0", Approvers: []string{"alice"}},
	}
	f.advisory = query.Advisory{SecurityAdvisoryPublished: events.SecurityAdvisoryPublished{
		AdvisoryID: "DSA-5001-1", Revision: 1, Source: "osv", Aliases: []string{"CVE-2024-5535"}, Title: "openssl: security update",
		Summary: "A buffer over-read in SSL_select_next_proto may expose memory.", Published: now.Add(-5 * day), Modified: now.Add(-5 * day),
		Severity: events.SeverityHigh, References: []string{"https://security-tracker.debian.org/tracker/DSA-5001-1", "javascript:alert(1)"},
		Affected: []events.Affected{{Ecosystem: "debian", Release: "12", Package: "openssl", FixedVersion: "3.0.15-1~deb12u1",
			Binaries: []events.BinaryPackage{{Name: "libssl3"}, {Name: "openssl"}}}},
	}}
	for _, id := range []string{"web-2", "web-3"} {
		f.exposure = append(f.exposure, query.ExposedHost{HostID: id, Name: id + ".example.net", Fleet: "prod-web", OS: os12,
			Packages: []query.ExposedPackage{{Name: "libssl3", Installed: "3.0.14-1~deb12u1", SourceName: "openssl", Fixed: "3.0.15-1~deb12u1", AdvisoryID: "DSA-5001-1"}}})
	}
	return f
}

// serve answers the query subjects from the fixture, like the services' micro endpoints.
func (f *fixture) serve(t testing.TB, bus *eventstest.Bus) {
	t.Helper()
	var mu sync.Mutex
	endpoint := func(svc micro.Service, subject string, answer func(data []byte) (any, int, string)) {
		err := svc.AddEndpoint(strings.ReplaceAll(subject, ".", "_"), micro.HandlerFunc(func(r micro.Request) {
			mu.Lock()
			v, code, msg := answer(r.Data())
			mu.Unlock()
			if code != 0 {
				_ = r.Error(strconv.Itoa(code), msg, nil)
				return
			}
			_ = r.RespondJSON(v)
		}), micro.WithEndpointSubject(subject))
		if err != nil {
			t.Fatal(err)
		}
	}
	service := func(name string) micro.Service {
		s, err := micro.AddService(bus.Conn, micro.Config{Name: name, Version: "0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Stop() })
		return s
	}
	inv, pl, adv := service("inventory"), service("planner"), service("advisories")
	endpoint(inv, query.SubjectHosts, func(b []byte) (any, int, string) {
		var req query.HostsRequest
		_ = json.Unmarshal(b, &req)
		var out []query.Host
		for _, h := range f.hosts {
			if (req.Fleet == "" || h.Fleet == req.Fleet) && (req.RebootRequired == nil || h.RebootRequired == *req.RebootRequired) &&
				(req.NotScannedFor == 0 || f.now.Sub(h.LastScan) > req.NotScannedFor) {
				out = append(out, h)
			}
		}
		return query.HostsResponse{Hosts: out}, 0, ""
	})
	endpoint(inv, query.SubjectHost, func(b []byte) (any, int, string) {
		var req query.HostRequest
		_ = json.Unmarshal(b, &req)
		if h, ok := f.details[req.ID]; ok {
			return h, 0, ""
		}
		return nil, 404, "no such host"
	})
	endpoint(inv, query.SubjectExposure, func(b []byte) (any, int, string) {
		return query.ExposureResponse{AdvisoryIDs: []string{f.advisory.AdvisoryID}, Hosts: f.exposure}, 0, ""
	})
	endpoint(pl, query.SubjectPlannerRollouts, func(b []byte) (any, int, string) {
		var req query.RolloutsRequest
		_ = json.Unmarshal(b, &req)
		var out []query.RolloutSummary
		for _, id := range []string{"r-waiting", "r-running"} {
			r := f.rollouts[id]
			if req.AdvisoryID != "" && !strings.Contains(strings.Join(r.AdvisoryIDs, ","), req.AdvisoryID) {
				continue
			}
			out = append(out, r.RolloutSummary)
		}
		return query.RolloutsResponse{Rollouts: out}, 0, ""
	})
	endpoint(pl, query.SubjectPlannerRollout, func(b []byte) (any, int, string) {
		var req query.RolloutRequest
		_ = json.Unmarshal(b, &req)
		if r, ok := f.rollouts[req.ID]; ok {
			return r, 0, ""
		}
		return nil, 404, "no such rollout"
	})
	endpoint(pl, query.SubjectPlannerCompliance, func(b []byte) (any, int, string) {
		var req query.ComplianceRequest
		_ = json.Unmarshal(b, &req)
		var out []query.ComplianceRecord
		for _, r := range f.records {
			if (req.AdvisoryID == "" || r.AdvisoryID == req.AdvisoryID) && (req.HostID == "" || r.HostID == req.HostID) &&
				(req.Fleet == "" || r.Fleet == req.Fleet) && (!req.Open || r.PatchedAt.IsZero() || r.RebootPending) {
				out = append(out, r)
			}
		}
		return query.ComplianceResponse{Records: out}, 0, ""
	})
	endpoint(pl, query.SubjectPlannerPolicies, func(b []byte) (any, int, string) {
		return query.PoliciesResponse{Source: "test", Fleets: f.policies}, 0, ""
	})
	endpoint(adv, query.SubjectAdvisory, func(b []byte) (any, int, string) {
		var req query.AdvisoryRequest
		_ = json.Unmarshal(b, &req)
		if req.ID == f.advisory.AdvisoryID {
			return f.advisory, 0, ""
		}
		return nil, 404, "no such advisory"
	})
	endpoint(adv, query.SubjectAdvisoriesByCVE, func(b []byte) (any, int, string) {
		return query.AdvisoriesResponse{Advisories: []query.Advisory{f.advisory}}, 0, ""
	})
}

// harness is a console on a test bus with fake query responders.
type harness struct {
	bus     *eventstest.Bus
	fix     *fixture
	console *Server
	web     *httptest.Server
	logs    *syncBuffer
}

func startHarness(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	bus := eventstest.Start(t)
	fix := newFixture(time.Now())
	fix.serve(t, bus)
	tokens, err := auth.ParseTokens("alice=" + aliceToken + "\nbob=" + bobToken)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{HTTPAddr: "127.0.0.1:0", Tokens: tokens, QueryTimeout: 5 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := NewServer(cfg, bus.Conn, bus.JS, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = s.Feed.Run(ctx) }()
	web := httptest.NewServer(s.Handler())
	t.Cleanup(web.Close)
	return &harness{bus: bus, fix: fix, console: s, web: web, logs: logs}
}

// syncBuffer collects the console's logs, so tests can read what it wrote.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
