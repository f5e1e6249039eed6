// Package waves splits a rollout's hosts into waves: the canary first, then waves that grow
// to cumulative targets ("10%", "50%", "100%" or counts), in a deterministic host order and
// never with an empty wave.
package waves

import (
	"slices"

	"github.com/patchfleet/patchfleet/services/planner/internal/quantity"
)

// Split returns the waves of hosts. Hosts are ordered by id, so the same hosts always give
// the same waves (and the same plan hash). The first canary hosts form wave 0; each mark is
// the number of hosts done once its wave ends (canary included); a mark that adds nothing
// is skipped, and the last wave takes whatever the marks left.
func Split(hosts []string, canary int, marks []quantity.Q) [][]string {
	if len(hosts) == 0 {
		return nil
	}
	sorted := slices.Clone(hosts)
	if !slices.IsSorted(sorted) { // planners pass them sorted
		slices.Sort(sorted)
	}
	sorted = slices.Compact(sorted)
	n := len(sorted)
	var out [][]string
	done := 0
	take := func(upTo int) {
		upTo = min(upTo, n)
		if upTo > done {
			out = append(out, sorted[done:upTo:upTo])
			done = upTo
		}
	}
	take(canary)
	for _, m := range marks {
		take(m.Of(n))
	}
	take(n)
	return out
}

// Flatten returns each host's wave index.
func Flatten(ws [][]string) map[string]int {
	out := make(map[string]int)
	for i, w := range ws {
		for _, h := range w {
			out[h] = i
		}
	}
	return out
}
