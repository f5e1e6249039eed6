package progress

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

func planned() events.RolloutPlanned {
	return events.RolloutPlanned{
		RolloutID: "r1", PlanHash: "h1", Kind: events.KindSecurity, Fleet: "prod-web",
		Strategy: events.StrategyInPlace, Reboot: events.RebootNever, HostCount: 5, NeedsApproval: true,
		Waves: []events.Wave{{Index: 0, Hosts: []string{"a"}}, {Index: 1, Hosts: []string{"b", "c", "d", "e"}}},
	}
}

func TestApplySequence(t *testing.T) {
	steps := []struct {
		event      events.Event
		state      string
		totals     Counts
		wave1      Counts
		wantChange bool
	}{
		{planned(), StateAwaitingApproval, Counts{}, Counts{}, true},
		{events.RolloutApprovalRequested{RolloutID: "r1", PlanHash: "h1", Fleet: "prod-web", Approvers: []string{"alice"}}, StateAwaitingApproval, Counts{}, Counts{}, false},
		// approvals the planner refuses leave the rollout waiting
		{events.RolloutApproved{Decision: events.Decision{RolloutID: "r1", By: "mallory"}, PlanHash: "h1"}, StateAwaitingApproval, Counts{}, Counts{}, false},
		{events.RolloutApproved{Decision: events.Decision{RolloutID: "r1", By: "alice"}, PlanHash: "h0"}, StateAwaitingApproval, Counts{}, Counts{}, false},
		{events.RolloutApproved{Decision: events.Decision{RolloutID: "r1", By: "alice"}, PlanHash: "h1"}, StateScheduled, Counts{}, Counts{}, true},
		{events.WaveStarted{RolloutID: "r1", Wave: 0, Hosts: []string{"a"}}, StateRunning, Counts{}, Counts{}, true},
		{events.UpgradeCompleted{RolloutID: "r1", HostID: "a"}, StateRunning, Counts{Succeeded: 1}, Counts{}, true},
		{events.UpgradeCompleted{RolloutID: "r1", HostID: "a"}, StateRunning, Counts{Succeeded: 1}, Counts{}, false}, // redelivered
		{events.WaveCompleted{RolloutID: "r1", Wave: 0, Succeeded: 1}, StateRunning, Counts{Succeeded: 1}, Counts{}, true},
		{events.UpgradeCompleted{RolloutID: "r1", HostID: "a"}, StateRunning, Counts{Succeeded: 1}, Counts{}, false}, // late, wave done
		{events.WaveStarted{RolloutID: "r1", Wave: 1, Hosts: []string{"b", "c", "d", "e"}}, StateRunning, Counts{Succeeded: 1}, Counts{}, true},
		// an upgrade result may arrive before the wave's own event: it still counts once
		{events.UpgradeFailed{RolloutID: "r1", HostID: "b", Reason: events.FailAptError}, StateRunning, Counts{Succeeded: 1, Failed: 1}, Counts{Failed: 1}, true},
		{events.UpgradeFailed{RolloutID: "r1", HostID: "b", Reason: events.FailAptError}, StateRunning, Counts{Succeeded: 1, Failed: 1}, Counts{Failed: 1}, false},
		{events.UpgradeCompleted{RolloutID: "r1", HostID: "c"}, StateRunning, Counts{Succeeded: 2, Failed: 1}, Counts{Succeeded: 1, Failed: 1}, true},
		{events.RolloutHalted{RolloutID: "r1", Reason: "failure budget spent", Failed: 1, Budget: 1}, StateHalted, Counts{Succeeded: 2, Failed: 1}, Counts{Succeeded: 1, Failed: 1}, true},
		{events.RolloutResumed{Decision: events.Decision{RolloutID: "r1", By: "bob"}}, StateRunning, Counts{Succeeded: 2, Failed: 1}, Counts{Succeeded: 1, Failed: 1}, true},
		{events.UpgradeCompleted{RolloutID: "r1", HostID: "d"}, StateRunning, Counts{Succeeded: 3, Failed: 1}, Counts{Succeeded: 2, Failed: 1}, true},
		{events.UpgradeCompleted{RolloutID: "r1", HostID: "e"}, StateRunning, Counts{Succeeded: 4, Failed: 1}, Counts{Succeeded: 3, Failed: 1}, true},
		{events.WaveCompleted{RolloutID: "r1", Wave: 1, Succeeded: 3, Failed: 1}, StateRunning, Counts{Succeeded: 4, Failed: 1}, Counts{Succeeded: 3, Failed: 1}, true},
		{events.RolloutCompleted{RolloutID: "r1", Outcome: "completed", Succeeded: 4, Failed: 1}, StateCompleted, Counts{Succeeded: 4, Failed: 1}, Counts{Succeeded: 3, Failed: 1}, true},
		{events.RolloutPaused{Decision: events.Decision{RolloutID: "r1", By: "bob"}}, StateCompleted, Counts{Succeeded: 4, Failed: 1}, Counts{Succeeded: 3, Failed: 1}, false},
	}
	r := &Rollout{ID: "r1"}
	for i, s := range steps {
		changed := r.Apply(s.event)
		if r.State != s.state {
			t.Fatalf("step %d (%T): state %s, want %s", i, s.event, r.State, s.state)
		}
		if got := r.Totals(); got != s.totals {
			t.Fatalf("step %d (%T): totals %+v, want %+v", i, s.event, got, s.totals)
		}
		if got := r.WaveCounts(1); got != s.wave1 {
			t.Fatalf("step %d (%T): wave 1 %+v, want %+v", i, s.event, got, s.wave1)
		}
		if changed != s.wantChange {
			t.Fatalf("step %d (%T): changed %v, want %v", i, s.event, changed, s.wantChange)
		}
		// the state survives a JSON round trip (the bot keeps it in a KV bucket)
		b, _ := json.Marshal(r)
		r = &Rollout{}
		if err := json.Unmarshal(b, r); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.HostWave) != 0 || len(r.Results) != 0 {
		t.Fatalf("completed rollout keeps per-host state: %v %v", r.HostWave, r.Results)
	}
}

func TestApprovalRefusal(t *testing.T) {
	approval := func(by, hash string) events.RolloutApproved {
		return events.RolloutApproved{Decision: events.Decision{RolloutID: "r1", By: by}, PlanHash: hash}
	}
	tests := []struct {
		name      string
		approvers []string
		hash      string
		approval  events.RolloutApproved
		want      string
	}{
		{"an approver, the plan", []string{"alice", "bob"}, "h1", approval("bob", "h1"), ""},
		{"not an approver", []string{"alice"}, "h1", approval("mallory", "h1"), "mallory is not an approver of fleet prod-web"},
		{"another plan", []string{"alice"}, "h2", approval("alice", "h1"), "it names plan h1, the plan is h2"},
		{"no plan named", []string{"alice"}, "h2", approval("alice", ""), "it names no plan, the plan is h2"},
		{"no approvers listed: anyone", nil, "h1", approval("mallory", "h1"), ""},
		{"nothing known yet", nil, "", approval("mallory", "h1"), ""},
	}
	for _, tc := range tests {
		r := &Rollout{ID: "r1", Fleet: "prod-web", PlanHash: tc.hash, Approvers: tc.approvers}
		if got := r.ApprovalRefusal(tc.approval); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		changed := r.Apply(tc.approval)
		if wantChange := tc.want == ""; changed != wantChange || (r.ApprovedBy == tc.approval.By) != wantChange {
			t.Errorf("%s: changed %v, approved by %q", tc.name, changed, r.ApprovedBy)
		}
	}
}

func TestBar(t *testing.T) {
	tests := []struct {
		done, total, width int
		want               string
	}{
		{0, 10, 10, "[░░░░░░░░░░]"},
		{5, 10, 10, "[█████░░░░░]"},
		{10, 10, 10, "[██████████]"},
		{12, 10, 4, "[████]"},
		{1, 3, 6, "[██░░░░]"},
		{0, 0, 4, "[░░░░]"},
	}
	for _, tt := range tests {
		if got := Bar(tt.done, tt.total, tt.width); got != tt.want {
			t.Errorf("Bar(%d, %d, %d) = %s, want %s", tt.done, tt.total, tt.width, got, tt.want)
		}
	}
}

func TestText(t *testing.T) {
	r := &Rollout{ID: "r1"}
	r.Apply(planned())
	r.Apply(events.WaveStarted{RolloutID: "r1", Wave: 0, Hosts: []string{"a"}})
	r.Apply(events.UpgradeCompleted{RolloutID: "r1", HostID: "a"})
	r.Apply(events.WaveCompleted{RolloutID: "r1", Wave: 0, Succeeded: 1})
	r.Apply(events.WaveStarted{RolloutID: "r1", Wave: 1, Hosts: []string{"b", "c", "d", "e"}})
	r.Apply(events.UpgradeFailed{RolloutID: "r1", HostID: "b", Reason: events.FailAptError})
	want := strings.Join([]string{
		"rollout r1 · prod-web · security — running",
		"[████████░░░░░░░░░░░░]  40% 2/5 hosts · 1 failed",
		"wave 0 (canary)  [██████████] 1/1 ✓",
		"wave 1           [██░░░░░░░░] 1/4 · 1 failed",
	}, "\n")
	if got := Text(r); got != want {
		t.Fatalf("Text:\n%s\nwant:\n%s", got, want)
	}
}

func TestDecode(t *testing.T) {
	env, err := events.Wrap("id1", events.WaveStarted{RolloutID: "r1", Wave: 0, Hosts: []string{"a"}}, events.Origin{Producer: "p", CorrelationID: "r1"}, testTime)
	if err != nil {
		t.Fatal(err)
	}
	e, ok, err := Decode(env)
	if err != nil || !ok {
		t.Fatalf("Decode: %v %v", ok, err)
	}
	if ws, isWave := e.(events.WaveStarted); !isWave || RolloutID(ws) != "r1" {
		t.Fatalf("Decode = %#v", e)
	}
	env.Type = "HostRegistered"
	if _, ok, _ := Decode(env); ok {
		t.Fatal("Decode follows HostRegistered")
	}
}

var testTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// Host results can arrive before the plan they belong to; until the plan (or the end) is
// seen, the rollout is not known and has no total to count against.
func TestKnownOnlyOnceThePlanOrTheEndIsSeen(t *testing.T) {
	r := &Rollout{ID: "r1"}
	r.Apply(events.UpgradeCompleted{JobID: "j1", RolloutID: "r1", HostID: "a"})
	if r.Known() {
		t.Fatal("known after a host result alone")
	}
	r.Apply(events.RolloutPlanned{RolloutID: "r1", PlanHash: "h", HostCount: 2, Waves: []events.Wave{{Index: 0, Hosts: []string{"a", "b"}}}})
	if !r.Known() {
		t.Fatal("not known after RolloutPlanned")
	}
	ended := &Rollout{ID: "r2"}
	ended.Apply(events.RolloutCompleted{RolloutID: "r2", Outcome: "completed", Succeeded: 1})
	if !ended.Known() {
		t.Fatal("not known after RolloutCompleted")
	}
}
