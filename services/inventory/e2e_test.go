//go:build e2e

package inventory_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/tools/testfleet"
)

// TestE2EInventory scans real Debian hosts (sshd, dpkg, apt) through the service and the
// sshx pool: registered with pinned keys, scanned, packages seen; a manual upgrade is
// drift; a wrong pinned key is refused, marked and announced.
func TestE2EInventory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("testfleet needs root")
	}
	fleet := testfleet.New(t, 2)
	hosts := fleet.Hosts()
	s := start(t, nil, func(c *inventory.Config) {
		c.SSHKeyFiles = []string{fleet.ClientKeyPath()}
		c.SSHConnectTimeout = 10 * time.Second
		c.ScanTimeout = time.Minute
	})
	authorized := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	register := func(id string, h *testfleet.Host, key string) {
		t.Helper()
		reg := events.HostRegistered{HostID: id, Name: h.Name(), Fleet: "e2e",
			SSH: events.SSHTarget{Address: "127.0.0.1", Port: h.Port(), HostKey: key}}
		if code := s.do("POST", "/v1/hosts", reg, nil); code != http.StatusCreated {
			t.Fatalf("register %s: %d", id, code)
		}
	}

	register("real-0", hosts[0], authorized(hosts[0].HostKey()))
	var h query.HostDetail
	eventstest.WaitFor(t, 2*time.Minute, "real-0 scanned", func() bool {
		h = s.host("real-0")
		return h.PackageCount > 0 || h.LastScanError != ""
	})
	if h.LastScanError != "" || h.OS.ID != "debian" || h.Kernel == "" {
		t.Fatalf("scan of real-0: %+v", h.Host)
	}
	before := ""
	for _, p := range h.Packages {
		if p.Name == "pf-demo" {
			before = p.Version
		}
	}
	if before == "" {
		t.Fatalf("pf-demo not among %d packages", len(h.Packages))
	}

	// A manual upgrade outside Patchfleet: drift.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := hosts[0].ManualUpgrade(ctx, "pf-demo", "1.1"); err != nil {
		t.Fatal(err)
	}
	// And held there: the scan reads holds from dpkg's status.
	if _, err := hosts[0].MustRun(ctx, "apt-mark hold pf-demo"); err != nil {
		t.Fatal(err)
	}
	s.do("POST", "/v1/hosts/real-0/scan", nil, nil)
	drift := decodeAll[events.HostDriftDetected](t, s.waitEvents(events.StreamHosts, "HostDriftDetected", 1))[0]
	if len(drift.Changes) != 1 || drift.Changes[0].Name != "pf-demo" || drift.Changes[0].From != before || drift.Changes[0].To != "1.1" {
		t.Fatalf("drift = %+v", drift)
	}
	if held := s.host("real-0").Held; len(held) != 1 || held[0] != "pf-demo" {
		t.Errorf("held %q after apt-mark hold pf-demo, want pf-demo", held)
	}

	// A wrong pinned key (host 0's key for host 1): refused, marked, announced.
	register("real-1", hosts[1], authorized(hosts[0].HostKey()))
	eventstest.WaitFor(t, 2*time.Minute, "real-1 refused", func() bool { return s.host("real-1").KeyMismatch })
	km := decodeAll[events.HostKeyMismatch](t, s.waitEvents(events.StreamHosts, "HostKeyMismatch", 1))[0]
	if km.HostID != "real-1" || km.Presented != ssh.FingerprintSHA256(hosts[1].HostKey()) || km.Expected != ssh.FingerprintSHA256(hosts[0].HostKey()) {
		t.Fatalf("HostKeyMismatch = %+v", km)
	}
	if got := s.host("real-1"); got.PackageCount != 0 {
		t.Errorf("a refused host has %d packages", got.PackageCount)
	}

	// Trust on first use through sshx: the key host 1 presents is pinned.
	reg := events.HostRegistered{HostID: "real-tofu", Name: hosts[1].Name(), Fleet: "e2e",
		SSH: events.SSHTarget{Address: "127.0.0.1", Port: hosts[1].Port(), TOFU: true}}
	if code := s.do("POST", "/v1/hosts", reg, nil); code != http.StatusCreated {
		t.Fatalf("register real-tofu: %d", code)
	}
	eventstest.WaitFor(t, 2*time.Minute, "real-tofu scanned", func() bool { return s.host("real-tofu").PackageCount > 0 })
	if got := s.host("real-tofu").SSH.HostKey; got != authorized(hosts[1].HostKey()) {
		t.Errorf("pinned %q, want host 1's key", got)
	}
}
