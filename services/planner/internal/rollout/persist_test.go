package rollout

import (
	"slices"
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/planner/internal/plan"
)

// jobRows stores each distinct job once: hosts with the same packages, advisories and pins
// share a target; a difference in any of them, however placed, makes another.
func TestJobRowsShareOnlyIdenticalJobs(t *testing.T) {
	pkg := func(name, v string) []events.PackageTarget {
		return []events.PackageTarget{{Name: name, MinVersion: v}}
	}
	fp := &plan.Fleet{Hosts: []plan.HostPlan{
		{HostID: "a", Job: &plan.Job{Packages: pkg("libssl3", "3.0.13-1"), Advisories: []string{"DSA-1"}}},
		{HostID: "b", Job: &plan.Job{Packages: pkg("libssl3", "3.0.13-1"), Advisories: []string{"DSA-1"}}},
		{HostID: "c", Job: &plan.Job{Packages: pkg("libssl3", "3.0.14-1"), Advisories: []string{"DSA-1"}}},
		{HostID: "d", Job: &plan.Job{Packages: pkg("libssl3", "3.0.13-1"), Advisories: []string{"DSA-2"}}},
		{HostID: "e", Job: &plan.Job{Packages: pkg("libssl", "33.0.13-1"), Advisories: []string{"DSA-1"}}},
		{HostID: "f", Job: &plan.Job{Packages: pkg("libssl3", "3.0.13-1"), Advisories: []string{"DSA-1"},
			Components: []events.Component{{Name: "docker", Version: "27.1"}}}},
		{HostID: "g", Job: &plan.Job{Packages: pkg("libssl3", "3.0.13-1"), Advisories: []string{"DSA-1", "DSA-2"}}},
		{HostID: "h", Job: &plan.Job{}},
		{HostID: "i", Job: &plan.Job{Packages: pkg("libssl3", "3.0.13-1"), Advisories: []string{"DSA-1"}}},
	}}
	fp.Waves = [][]string{{"a", "c", "b"}, {"i", "d", "e", "f", "g", "h"}}
	targets, rows := jobRows("r1", fp)
	if len(targets) != 7 {
		t.Fatalf("%d targets, want 7: %+v", len(targets), targets)
	}
	want := map[string]int32{"a": 0, "b": 0, "c": 1, "d": 2, "e": 3, "f": 4, "g": 5, "h": 6, "i": 0}
	waveOf := map[string]int32{"a": 0, "b": 0, "c": 0, "i": 1, "d": 1, "e": 1, "f": 1, "g": 1, "h": 1}
	seen := map[string]bool{}
	for k, r := range rows {
		if r.RolloutID != "r1" || k > 0 && (r.Wave < rows[k-1].Wave || r.Wave == rows[k-1].Wave && r.Target <= rows[k-1].Target) {
			t.Errorf("row %d %+v out of (wave, target) order", k, r)
		}
		for _, h := range r.HostIds {
			if seen[h] || r.Target != want[h] || r.Wave != waveOf[h] {
				t.Errorf("host %s in row %+v: target %d, wave %d wanted, once", h, r, want[h], waveOf[h])
			}
			seen[h] = true
		}
	}
	if len(seen) != len(want) || len(rows) != 8 {
		t.Errorf("%d hosts in %d rows, want %d in 8: %+v", len(seen), len(rows), len(want), rows)
	}
	// Hosts keep their order within a wave and target.
	if got := rows[0].HostIds; !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("wave 0, target 0: %v", got)
	}
	for i, tg := range targets {
		if tg.Idx != int32(i) {
			t.Errorf("target %d has index %d", i, tg.Idx)
		}
	}
	if got := string(targets[3].Packages); got != `[{"name":"libssl","min_version":"33.0.13-1"}]` {
		t.Errorf("target 3 packages %s", got)
	}
	if got := string(targets[6].Packages); got != "[]" || targets[6].AdvisoryIds == nil {
		t.Errorf("empty job stored as packages %s, advisories %v", got, targets[6].AdvisoryIds)
	}
}
