package systemtest_test

import (
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
	"github.com/patchfleet/patchfleet/tools/systemtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRolloutOnFleetsim is the whole system on simulated hosts: the advisory for the
// simulated OpenSSL fix ends with every host upgraded, a completed rollout and nothing
// exposed.
func TestRolloutOnFleetsim(t *testing.T) {
	const n = 8
	s := systemtest.Start(t, systemtest.Options{Hosts: n})
	s.WaitScanned(t, 2*time.Minute)

	s.PublishAdvisory(t, "advisory.json", fleetsim.AdvisoryOSV)
	var done events.RolloutCompleted
	s.WaitFor(t, 3*time.Minute, "the rollout to complete", func() bool {
		var ok bool
		done, ok = systemtest.Last[events.RolloutCompleted](t, s)
		return ok
	})
	if done.Outcome != "completed" || done.Succeeded != n || done.Failed != 0 {
		t.Fatalf("rollout ended %+v", done)
	}
	for i, h := range s.Sim.Hosts() {
		if v := h.PackageVersion("libssl3"); v != "3.0.19-1~deb12u3" {
			t.Errorf("%s: libssl3 %s after the rollout", systemtest.HostID(i), v)
		}
	}
	s.WaitFor(t, time.Minute, "no host exposed", func() bool {
		resp, err := s.Query.Exposure(t.Context(), query.ExposureRequest{AdvisoryID: fleetsim.AdvisoryID})
		return err == nil && len(resp.Hosts) == 0
	})
}
