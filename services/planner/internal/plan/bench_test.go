package plan

import (
	"fmt"
	"testing"

	"github.com/patchfleet/patchfleet/events"
)

// BenchmarkSecurity100k plans one advisory for 100,000 exposed hosts: policy, merge, waves
// and hash, without IO.
func BenchmarkSecurity100k(b *testing.B) {
	p := mustPolicy(&testing.T{})
	hosts := make([]Host, 100_000)
	for i := range hosts {
		hosts[i] = web(fmt.Sprintf("w%06d", i), pkg("DSA-1", "libssl3", "3.0.11-1~deb12u1", "3.0.13-1~deb12u2"))
	}
	adv := map[string]Advisory{"DSA-1": {ID: "DSA-1", Severity: events.SeverityHigh}}
	for b.Loop() {
		if res := Security(p, adv, hosts, nil, published); len(res.Fleets[0].Hosts) != len(hosts) {
			b.Fatalf("%d hosts planned", len(res.Fleets[0].Hosts))
		}
	}
}
