package feed

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
)

// Item is one event as it arrives.
type Item struct {
	Env   events.Envelope
	Event events.Event
}

// Sub receives live items. When it falls behind, items are dropped and Lagged is signalled:
// the watcher then reloads from the query endpoints.
type Sub struct {
	C      chan Item
	Lagged chan struct{}
}

// Feed follows the streams. Run it once; Subscribe any number of times.
type Feed struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Since is how far back the history is rebuilt at start.
	Since time.Duration

	mu   sync.RWMutex
	hist *History
	subs map[*Sub]struct{}
}

// New returns a feed keeping limit entries per host.
func New(js jetstream.JetStream, since time.Duration, limit int, logger *slog.Logger) *Feed {
	return &Feed{JS: js, Logger: logger, Since: since, hist: NewHistory(limit), subs: map[*Sub]struct{}{}}
}

// followed lists each stream the console reads and the subjects it needs from it.
func followed() map[string][]string {
	subj := func(specs ...events.Spec) []string {
		var out []string
		for _, s := range specs {
			out = append(out, s.Subject)
		}
		return out
	}
	return map[string][]string{
		events.StreamRollouts: {"pf.rollouts.>"},
		events.StreamUpgrades: subj(events.SpecOf[events.UpgradeStarted](), events.SpecOf[events.UpgradeCompleted](), events.SpecOf[events.UpgradeFailed]()),
		events.StreamHosts:    subj(events.SpecOf[events.HostDriftDetected]()),
	}
}

// Run consumes until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	start := time.Now().Add(-f.Since)
	for stream, subjects := range followed() {
		cons, err := f.JS.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		})
		if err != nil {
			return fmt.Errorf("follow %s: %w", stream, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) { f.handle(stream, m.Data()) })
		if err != nil {
			return fmt.Errorf("follow %s: %w", stream, err)
		}
		defer cc.Stop()
	}
	<-ctx.Done()
	return nil
}

func (f *Feed) handle(stream string, data []byte) {
	env, err := events.DecodeEnvelope(data)
	if err != nil {
		f.Logger.Warn("undecodable event", "stream", stream, "err", err)
		return
	}
	e, ok, err := Decode(env)
	if !ok {
		return
	}
	if err != nil {
		f.Logger.Warn("invalid event", "stream", stream, "event_id", env.ID, "type", env.Type, "err", err)
		return
	}
	f.Publish(Item{Env: env, Event: e})
}

// Publish folds an item into the history and hands it to every subscriber.
func (f *Feed) Publish(it Item) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hist.Apply(it.Env, it.Event)
	for s := range f.subs {
		select {
		case s.C <- it:
		default:
			select {
			case s.Lagged <- struct{}{}:
			default:
			}
		}
	}
}

// Subscribe returns a subscription and the function that ends it.
func (f *Feed) Subscribe() (*Sub, func()) {
	s := &Sub{C: make(chan Item, 256), Lagged: make(chan struct{}, 1)}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	return s, func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}
}

// Upgrades returns a host's recent jobs, newest first.
func (f *Feed) Upgrades(host string) []Upgrade {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.hist.Upgrades(host)
}

// Drift returns a host's recent drift, newest first.
func (f *Feed) Drift(host string) []Drift {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.hist.Drift(host)
}

// Budget returns a rollout's failure budget, when its plan was seen.
func (f *Feed) Budget(rollout string) (int, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.hist.Budget(rollout)
}
