package inventory_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
)

func registration(id, key string, tofu bool) events.HostRegistered {
	return events.HostRegistered{HostID: id, Name: id + ".example.net", Fleet: "prod-web",
		Tags: map[string]string{"env": "prod", "role": "web"},
		SSH:  events.SSHTarget{Address: "10.0.0.1", User: "patchfleet", Sudo: true, HostKey: key, TOFU: tofu}}
}

func TestRegisterByAPIEventAndFile(t *testing.T) {
	s := start(t, nil)
	key := hostKey(t)

	// API: no key and no trust on first use is refused, naming the field.
	var e query.Error
	if code := s.do("POST", "/v1/hosts", registration("web-1", "", false), &e); code != http.StatusBadRequest || e.Code != 400 {
		t.Fatalf("register without key: %d %+v, want 400", code, e)
	}
	if code := s.do("POST", "/v1/hosts", registration("web-1", "ssh-ed25519 garbage", false), &e); code != http.StatusBadRequest {
		t.Fatalf("register with a bad key: %d, want 400", code)
	}
	var h query.Host
	if code := s.do("POST", "/v1/hosts", registration("web-1", key, false), &h); code != http.StatusCreated {
		t.Fatalf("register: %d, want 201", code)
	}
	if h.SSH.HostKey != key || h.Fleet != "prod-web" || h.Tags["role"] != "web" || h.SSH.Port != 22 {
		t.Fatalf("registered host = %+v", h)
	}
	upd := registration("web-1", "", false)
	upd.HostID = ""
	upd.Fleet = "prod-api"
	upd.SSH.HostKey = key
	if code := s.do("PUT", "/v1/hosts/web-1", upd, &h); code != http.StatusOK || h.Fleet != "prod-api" {
		t.Fatalf("update: %d %+v", code, h)
	}

	// The bus: HostRegistered, delivered twice, registers once; HostDecommissioned retires.
	ev := s.bus.Publish(t, registration("web-2", hostKey(t), false), "provisioning-1")
	eventstest.WaitFor(t, 30*time.Second, "web-2 registered", func() bool {
		return s.do("GET", "/v1/hosts/web-2", nil, nil) == http.StatusOK
	})
	if err := events.Publish(context.Background(), s.bus.JS, ev); err != nil { // deduplicated by id
		t.Fatal(err)
	}

	// A hosts file.
	file := "hosts:\n" +
		"  - id: db-1\n    fleet: prod-db\n    tags: {env: prod}\n    ssh: {address: 10.0.1.1, host_key: \"" + hostKey(t) + "\"}\n" +
		"  - id: db-2\n    fleet: prod-db\n    ssh: {address: 10.0.1.2, tofu: true}\n"
	var imp map[string]int
	if code := s.do("POST", "/v1/hosts/import", file, &imp); code != http.StatusOK || imp["created"] != 2 {
		t.Fatalf("import: %d %v", code, imp)
	}
	if code := s.do("POST", "/v1/hosts/import", "hosts:\n  - id: bad\n    fleet: x\n    ssh: {address: 10.0.0.9}\n", &e); code != http.StatusBadRequest {
		t.Fatalf("import without key: %d %+v", code, e)
	}

	// TOFU allowed is recorded with who allowed it.
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var allowedBy string
	if err := conn.QueryRow(context.Background(), "select tofu_allowed_by from inventory.hosts where id = 'db-2'").Scan(&allowedBy); err != nil {
		t.Fatal(err)
	}
	if allowedBy != "api:tester" {
		t.Errorf("tofu_allowed_by = %q, want api:tester", allowedBy)
	}

	// Decommission by API and by event.
	if code := s.do("DELETE", "/v1/hosts/web-1?reason=replaced", nil, nil); code != http.StatusNoContent {
		t.Fatalf("decommission: %d", code)
	}
	if code := s.do("DELETE", "/v1/hosts/nope", nil, &e); code != http.StatusNotFound {
		t.Fatalf("decommission unknown: %d", code)
	}
	// A decommissioned host's report is refused and stores nothing.
	if code := s.do("POST", "/v1/hosts/web-1/report", report("debian", "12", readFile(t, "testdata/debian12-dpkg.tsv"), false), &e); code != http.StatusConflict {
		t.Fatalf("report of a decommissioned host: %d, want 409", code)
	}
	s.bus.Publish(t, events.HostDecommissioned{HostID: "db-1", Reason: "gone"}, "db-1")
	var page query.HostsResponse
	eventstest.WaitFor(t, 30*time.Second, "db-1 retired", func() bool {
		s.do("GET", "/v1/hosts", nil, &page)
		return len(page.Hosts) == 2
	})
	if page.Hosts[0].ID != "db-2" || page.Hosts[1].ID != "web-2" {
		t.Fatalf("active hosts = %+v", page.Hosts)
	}
	s.do("GET", "/v1/hosts?tag=env=prod&tag=role=web", nil, &page)
	if len(page.Hosts) != 1 || page.Hosts[0].ID != "web-2" {
		t.Fatalf("tag filter: %+v", page.Hosts)
	}
	s.do("GET", "/v1/hosts?include_retired=true", nil, &page)
	if len(page.Hosts) != 4 || !page.Hosts[0].Retired {
		t.Fatalf("with retired: %+v", page.Hosts)
	}
	if got := len(s.events(events.StreamDLQ, "HostRegistered")); got != 0 {
		t.Errorf("%d registrations dead-lettered", got)
	}
}

func TestTrustOnFirstUseAndKeyMismatch(t *testing.T) {
	f := newFleet()
	s := start(t, f)
	tsv := readFile(t, "testdata/debian12-dpkg.tsv")
	real1, real2 := hostKey(t), hostKey(t)
	f.set("tofu-1", real1, report("debian", "12", tsv, false))
	f.set("pinned-1", real2, report("debian", "12", tsv, false))

	// Trust on first use: the first key seen is pinned, with when.
	s.do("POST", "/v1/hosts", registration("tofu-1", "", true), nil)
	eventstest.WaitFor(t, 30*time.Second, "tofu-1 scanned", func() bool { return s.host("tofu-1").PackageCount > 0 })
	if h := s.host("tofu-1"); h.SSH.HostKey != real1 {
		t.Fatalf("pinned %q, want the key presented", h.SSH.HostKey)
	}
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var pinnedAt *time.Time
	if err := conn.QueryRow(context.Background(), "select tofu_pinned_at from inventory.hosts where id = 'tofu-1'").Scan(&pinnedAt); err != nil || pinnedAt == nil {
		t.Fatalf("tofu_pinned_at = %v, %v", pinnedAt, err)
	}
	// Re-registering without a key keeps the pin; the host now presents another key: refused.
	s.do("PUT", "/v1/hosts/tofu-1", registration("tofu-1", "", true), nil)
	f.set("tofu-1", hostKey(t), report("debian", "12", tsv, false))
	s.do("POST", "/v1/hosts/tofu-1/scan", nil, nil)
	eventstest.WaitFor(t, 30*time.Second, "tofu-1 mismatch", func() bool { return s.host("tofu-1").KeyMismatch })

	// A wrong pinned key: refused, marked, announced once.
	s.do("POST", "/v1/hosts", registration("pinned-1", hostKey(t), false), nil)
	eventstest.WaitFor(t, 30*time.Second, "pinned-1 mismatch", func() bool { return s.host("pinned-1").KeyMismatch })
	h := s.host("pinned-1")
	if h.PackageCount != 0 || h.LastScanError == "" {
		t.Fatalf("refused host = %+v", h.Host)
	}
	got := s.waitEvents(events.StreamHosts, "HostKeyMismatch", 2)
	var km events.HostKeyMismatch
	for _, env := range got {
		if err := events.DecodeData(env, &km); err != nil {
			t.Fatal(err)
		}
		if km.HostID == "pinned-1" && km.Presented != fingerprint(real2) {
			t.Errorf("presented %s, want %s", km.Presented, fingerprint(real2))
		}
	}
	// A scan asked for now skips a marked host; re-pinning clears the mark and scans.
	var sr query.ScanResponse
	s.do("POST", "/v1/hosts/pinned-1/scan", nil, &sr)
	if sr.Queued != 0 {
		t.Errorf("scan of a mismatched host queued %d", sr.Queued)
	}
	s.do("PUT", "/v1/hosts/pinned-1", registration("pinned-1", real2, false), nil)
	eventstest.WaitFor(t, 30*time.Second, "pinned-1 scanned after re-pin", func() bool {
		h := s.host("pinned-1")
		return !h.KeyMismatch && h.PackageCount > 0
	})
	if n := len(s.events(events.StreamHosts, "HostKeyMismatch")); n != 2 {
		t.Errorf("%d HostKeyMismatch events, want 2", n)
	}
}
