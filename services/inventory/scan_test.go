package inventory_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory"
)

func decodeAll[E events.Event](t *testing.T, envs []events.Envelope) []E {
	t.Helper()
	out := make([]E, len(envs))
	for i, env := range envs {
		if err := events.DecodeData(env, any(&out[i]).(events.Event)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestScanDriftAndExplainedUpgrade(t *testing.T) {
	f := newFleet()
	s := start(t, f)
	tsv := readFile(t, "testdata/debian12-dpkg.tsv")
	key := hostKey(t)
	f.set("web-1", key, report("debian", "12", tsv, false))
	s.do("POST", "/v1/hosts", registration("web-1", key, false), nil)

	// Baseline: reported, no changes, no drift.
	first := decodeAll[events.HostInventoryReported](t, s.waitEvents(events.StreamHosts, "HostInventoryReported", 1))[0]
	if first.PackageCount != 703 || len(first.Changes) != 0 || first.OS.ID != "debian" || first.OS.VersionID != "12" {
		t.Fatalf("first report = %+v", first)
	}
	if h := s.host("web-1"); len(h.Packages) != 703 || h.Kernel != "6.1.0-37-amd64" {
		t.Fatalf("host = %d packages, kernel %s", len(h.Packages), h.Kernel)
	}

	// A manual upgrade of curl: drift.
	f.set("web-1", key, report("debian", "12", withVersion(tsv, "curl", "7.88.1-10+deb12u15"), false))
	s.do("POST", "/v1/hosts/web-1/scan", nil, nil)
	drift := decodeAll[events.HostDriftDetected](t, s.waitEvents(events.StreamHosts, "HostDriftDetected", 1))[0]
	if len(drift.Changes) != 1 || drift.Changes[0].Name != "curl" || drift.Changes[0].From != "7.88.1-10+deb12u14" || drift.Changes[0].To != "7.88.1-10+deb12u15" {
		t.Fatalf("drift = %+v", drift)
	}

	// Patchfleet upgrades libc6 and reports it; the inventory scans at once and sees no drift.
	upgraded := withVersion(withVersion(tsv, "curl", "7.88.1-10+deb12u15"), "libc6", "2.36-9+deb12u15")
	f.set("web-1", key, report("debian", "12", upgraded, true))
	s.bus.Publish(t, events.UpgradeCompleted{JobID: "job-1", RolloutID: "r-1", HostID: "web-1",
		Packages: []events.PackageResult{{Name: "libc6", Before: "2.36-9+deb12u14", After: "2.36-9+deb12u15"}}, RebootRequired: true}, "r-1")
	reports := decodeAll[events.HostInventoryReported](t, s.waitEvents(events.StreamHosts, "HostInventoryReported", 3))
	last := reports[2]
	if len(last.Changes) != 1 || last.Changes[0].Name != "libc6" || !last.RebootRequired {
		t.Fatalf("report after upgrade = %+v", last)
	}
	if p := last.Previous; p == nil || p.ScanID != reports[1].ScanID || p.RebootRequired || p.Kernel != "6.1.0-37-amd64" ||
		p.PackageSet != reports[1].PackageSet || p.OS.VersionID != "12" {
		t.Fatalf("previous of the report after upgrade = %+v", last.Previous)
	}
	if first.Previous != nil {
		t.Errorf("first report has a previous observation: %+v", first.Previous)
	}
	reboot := decodeAll[events.RebootRequired](t, s.waitEvents(events.StreamHosts, "RebootRequired", 1))
	if reboot[0].HostID != "web-1" {
		t.Fatalf("reboot = %+v", reboot)
	}
	// Another scan, asked over NATS, with nothing new: no drift, no second RebootRequired.
	if r, err := s.query.Scan(context.Background(), query.ScanRequest{HostIDs: []string{"web-1"}}); err != nil || r.Queued != 1 {
		t.Fatalf("scan over NATS: %+v %v", r, err)
	}
	s.waitEvents(events.StreamHosts, "HostInventoryReported", 4)
	if n := len(s.events(events.StreamHosts, "HostDriftDetected")); n != 1 {
		t.Errorf("%d drift events, want 1", n)
	}
	if n := len(s.events(events.StreamHosts, "RebootRequired")); n != 1 {
		t.Errorf("%d RebootRequired events, want 1", n)
	}
	var page struct{ Hosts []struct{ ID string } }
	s.do("GET", "/v1/hosts?reboot_required=true", nil, &page)
	if len(page.Hosts) != 1 {
		t.Errorf("reboot_required filter: %+v", page)
	}
}

func TestOfflineReport(t *testing.T) {
	s := start(t, nil)
	tsv := readFile(t, "testdata/debian12-dpkg.tsv")
	s.do("POST", "/v1/hosts", registration("air-1", hostKey(t), false), nil)
	var rep events.HostInventoryReported
	if code := s.do("POST", "/v1/hosts/air-1/report", report("debian", "12", tsv, false), &rep); code != http.StatusOK {
		t.Fatalf("report: %d", code)
	}
	if !rep.Offline || rep.PackageCount != 703 || !strings.HasPrefix(rep.PackageSet, "sha256:") {
		t.Fatalf("report = %+v", rep)
	}
	got := decodeAll[events.HostInventoryReported](t, s.waitEvents(events.StreamHosts, "HostInventoryReported", 1))
	if !got[0].Offline || got[0].ScanID != rep.ScanID {
		t.Fatalf("event = %+v", got[0])
	}
	// The same packages on a second host share the stored set.
	s.do("POST", "/v1/hosts", registration("air-2", hostKey(t), false), nil)
	var rep2 events.HostInventoryReported
	s.do("POST", "/v1/hosts/air-2/report", report("debian", "12", tsv, false), &rep2)
	if rep2.PackageSet != rep.PackageSet {
		t.Errorf("package sets %s and %s differ", rep.PackageSet, rep2.PackageSet)
	}
	if code := s.do("POST", "/v1/hosts/air-1/report", "Permission denied (publickey).\n", nil); code != http.StatusBadRequest {
		t.Errorf("not a report: %d, want 400", code)
	}
	if code := s.do("POST", "/v1/hosts/nope/report", report("debian", "12", tsv, false), nil); code != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", code)
	}
	eventstest.WaitFor(t, 10*time.Second, "host packages", func() bool { return len(s.host("air-2").Packages) == 703 })
}

func TestScheduledScans(t *testing.T) {
	f := newFleet()
	s := start(t, f, func(c *inventory.Config) {
		c.ScanInterval, c.ScanJitter = 200*time.Millisecond, 100*time.Millisecond
	})
	key := hostKey(t)
	f.set("cron-1", key, report("debian", "12", "adduser\t3.134\tall\tadduser\t3.134\tii \n", false))
	s.do("POST", "/v1/hosts", registration("cron-1", key, false), nil)
	// Scanned again and again without being asked.
	s.waitEvents(events.StreamHosts, "HostInventoryReported", 4)
	// A retired host is not.
	s.do("DELETE", "/v1/hosts/cron-1", nil, nil)
	n := len(s.events(events.StreamHosts, "HostInventoryReported"))
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if got := len(s.events(events.StreamHosts, "HostInventoryReported")); got > n+1 {
			t.Fatalf("retired host scanned: %d reports after %d", got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
