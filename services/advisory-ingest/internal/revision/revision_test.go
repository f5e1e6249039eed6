package revision

import (
	"slices"
	"testing"
	"time"
)

var (
	t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

func TestDecide(t *testing.T) {
	stored := func(rev int, hash string, mod time.Time, withdrawn bool) *Stored {
		return &Stored{Revision: rev, Hash: hash, Modified: mod, Withdrawn: withdrawn}
	}
	tests := []struct {
		name   string
		stored *Stored
		in     Incoming
		want   Decision
	}{
		{"new", nil, Incoming{Hash: "a", Modified: t0}, Decision{Publish, 1}},
		{"new and already withdrawn", nil, Incoming{Hash: "a", Modified: t0, Withdrawn: true}, Decision{Withdraw, 1}},
		{"same content", stored(3, "a", t0, false), Incoming{Hash: "a", Modified: t0}, Decision{Unchanged, 3}},
		{"same content, only modified bumped", stored(3, "a", t0, false), Incoming{Hash: "a", Modified: t1}, Decision{Unchanged, 3}},
		{"same content, older modified", stored(3, "a", t1, false), Incoming{Hash: "a", Modified: t0}, Decision{Unchanged, 3}},
		{"changed", stored(1, "a", t0, false), Incoming{Hash: "b", Modified: t1}, Decision{Publish, 2}},
		{"changed, same modified", stored(1, "a", t0, false), Incoming{Hash: "b", Modified: t0}, Decision{Publish, 2}},
		{"changed but older", stored(2, "a", t1, false), Incoming{Hash: "b", Modified: t0}, Decision{Stale, 2}},
		{"withdrawn", stored(1, "a", t0, false), Incoming{Hash: "w", Modified: t1, Withdrawn: true}, Decision{Withdraw, 2}},
		{"still withdrawn, edited", stored(2, "w", t0, true), Incoming{Hash: "w2", Modified: t1, Withdrawn: true}, Decision{Unchanged, 2}},
		{"still withdrawn, same", stored(2, "w", t0, true), Incoming{Hash: "w", Modified: t1, Withdrawn: true}, Decision{Unchanged, 2}},
		{"reinstated", stored(2, "w", t0, true), Incoming{Hash: "b", Modified: t1}, Decision{Publish, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.stored, tt.in); got != tt.want {
				t.Errorf("Decide = %v %d, want %v %d", got.Kind, got.Revision, tt.want.Kind, tt.want.Revision)
			}
		})
	}
}

func TestPlanDecidesRepeatsAgainstEarlierOutcomes(t *testing.T) {
	stored := map[string]Stored{"A": {Revision: 4, Hash: "a", Modified: t0}}
	batch := []Incoming{
		{ID: "A", Hash: "a", Modified: t0},                   // unchanged
		{ID: "B", Hash: "b", Modified: t0},                   // new
		{ID: "B", Hash: "b", Modified: t1},                   // same as the one just decided
		{ID: "A", Hash: "a2", Modified: t1},                  // changed
		{ID: "A", Hash: "a3", Modified: t1, Withdrawn: true}, // then withdrawn
	}
	got := Plan(stored, batch)
	want := []Decision{{Unchanged, 4}, {Publish, 1}, {Unchanged, 1}, {Publish, 5}, {Withdraw, 6}}
	if !slices.Equal(got, want) {
		t.Errorf("Plan = %v, want %v", got, want)
	}
	if stored["A"].Revision != 4 {
		t.Errorf("Plan modified stored: %+v", stored["A"])
	}
}
