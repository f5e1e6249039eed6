package feed

import (
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

func TestHistory(t *testing.T) {
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	env := func(min int) events.Envelope { return events.Envelope{Time: at.Add(time.Duration(min) * time.Minute)} }
	h := NewHistory(2)
	h.Apply(env(0), events.RolloutPlanned{RolloutID: "r1", MaxFailures: 3})
	h.Apply(env(1), events.UpgradeStarted{JobID: "j1", RolloutID: "r1", HostID: "a", Executor: "x"})
	h.Apply(env(2), events.UpgradeCompleted{JobID: "j1", RolloutID: "r1", HostID: "a", RebootPending: true,
		Packages: []events.PackageResult{{Name: "libssl3", Before: "1", After: "2"}}})
	h.Apply(env(1), events.UpgradeStarted{JobID: "j1", RolloutID: "r1", HostID: "a", Executor: "x"}) // redelivered
	h.Apply(env(3), events.UpgradeFailed{JobID: "j2", RolloutID: "r2", HostID: "a", Reason: "apt_error"})
	h.Apply(env(4), events.UpgradeFailed{JobID: "j3", RolloutID: "r3", HostID: "a", Reason: "unreachable"})
	h.Apply(env(5), events.HostDriftDetected{HostID: "a", ScanID: "s1", Changes: []events.PackageChange{{Name: "curl", From: "1", To: "2"}}})
	h.Apply(env(5), events.HostDriftDetected{HostID: "a", ScanID: "s1", Changes: []events.PackageChange{{Name: "curl", From: "1", To: "2"}}})

	u := h.Upgrades("a")
	if len(u) != 2 || u[0].JobID != "j3" || u[1].JobID != "j2" || u[1].Reason != "apt_error" {
		t.Fatalf("upgrades (limit 2, newest first): %+v", u)
	}
	if d := h.Drift("a"); len(d) != 1 || d[0].ScanID != "s1" || !d[0].At.Equal(at.Add(5*time.Minute)) {
		t.Errorf("drift %+v", d)
	}
	if b, ok := h.Budget("r1"); !ok || b != 3 {
		t.Errorf("budget %d %v", b, ok)
	}
	h.Apply(env(6), events.RolloutCompleted{RolloutID: "r1", Outcome: "completed"})
	if _, ok := h.Budget("r1"); ok {
		t.Error("a completed rollout keeps its budget")
	}

	h = NewHistory(10)
	h.Apply(env(1), events.UpgradeStarted{JobID: "j1", RolloutID: "r1", HostID: "a", Executor: "x"})
	h.Apply(env(2), events.UpgradeCompleted{JobID: "j1", RolloutID: "r1", HostID: "a"})
	h.Apply(env(1), events.UpgradeStarted{JobID: "j1", RolloutID: "r1", HostID: "a", Executor: "x"})
	if u := h.Upgrades("a"); len(u) != 1 || u[0].Status != UpgradeSucceeded || !u[0].Finished.Equal(at.Add(2*time.Minute)) {
		t.Errorf("a redelivered start changed a finished job: %+v", u)
	}
}
