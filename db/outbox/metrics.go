package outbox

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published, publishErrors, pruned prometheus.Counter
}

// newMetrics registers the relay's counters on reg (labelled with the schema); with a nil
// reg they count without being exported.
func newMetrics(reg prometheus.Registerer, schema string) (*metrics, error) {
	labels := prometheus.Labels{"schema": schema}
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchfleet_outbox_published_total", Help: "Events the outbox relay published to JetStream.", ConstLabels: labels,
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchfleet_outbox_publish_errors_total", Help: "Failed attempts to publish an outbox event.", ConstLabels: labels,
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchfleet_outbox_pruned_total", Help: "Published outbox rows deleted after the retention.", ConstLabels: labels,
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.published, m.publishErrors, m.pruned} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
