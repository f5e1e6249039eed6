package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
)

func fastConsumer(name string) events.ConsumerConfig {
	return events.ConsumerConfig{
		Name: name, MaxDeliver: 3, AckWait: 2 * time.Second,
		Backoff: func(uint64) time.Duration { return 20 * time.Millisecond },
	}
}

// run starts c and returns a stop function that drains it and reports Run's error.
func run(t *testing.T, c *events.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("consumer did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func deadLetters(t *testing.T, bus *eventstest.Bus) []events.DeadLetter {
	t.Helper()
	ctx := context.Background()
	s, err := bus.JS.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.DeadLetter
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var dl events.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}

func pending(t *testing.T, bus *eventstest.Bus, stream, consumer string) (ackPending int, numPending uint64) {
	t.Helper()
	c, err := bus.JS.Consumer(context.Background(), stream, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return -1, 1 // Run has not created it yet
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending, info.NumPending
}

func TestRunnerAcksHandledEvents(t *testing.T) {
	bus := eventstest.Start(t)
	var got sync.Map
	var calls atomic.Int32
	c := events.NewConsumer(bus.JS, fastConsumer("acks"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		calls.Add(1)
		got.Store(e.HostID, m)
		return nil
	})
	run(t, c)
	msg := bus.Publish(t, events.HostDecommissioned{HostID: "h1", Reason: "gone"}, "corr-1")
	bus.Publish(t, events.HostDecommissioned{HostID: "h2"}, "corr-2")
	// A retried publish of the same event id is stored once.
	if err := events.Publish(context.Background(), bus.JS, msg); err != nil {
		t.Fatal(err)
	}
	eventstest.WaitFor(t, 10*time.Second, "both events handled and acked", func() bool {
		ack, num := pending(t, bus, events.StreamHosts, "acks")
		return calls.Load() == 2 && ack == 0 && num == 0
	})
	v, _ := got.Load("h1")
	m := v.(events.Meta)
	if m.ID != msg.ID || m.CorrelationID != "corr-1" || m.Producer != "test" || m.NumDelivered != 1 || m.Type != "HostDecommissioned" {
		t.Fatalf("meta = %+v", m)
	}
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Fatalf("unexpected dead letters: %+v", dl)
	}
}

func TestRunnerRedeliversTransientErrors(t *testing.T) {
	bus := eventstest.Start(t)
	var calls atomic.Int32
	var lastDelivered atomic.Uint64
	c := events.NewConsumer(bus.JS, fastConsumer("retry"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		lastDelivered.Store(m.NumDelivered)
		if calls.Add(1) < 3 {
			return errors.New("database unavailable")
		}
		return nil
	})
	run(t, c)
	bus.Publish(t, events.HostDecommissioned{HostID: "h1"}, "c")
	eventstest.WaitFor(t, 10*time.Second, "third delivery acked", func() bool {
		ack, _ := pending(t, bus, events.StreamHosts, "retry")
		return calls.Load() == 3 && ack == 0
	})
	if lastDelivered.Load() != 3 {
		t.Fatalf("succeeded on delivery %d, want 3", lastDelivered.Load())
	}
	if dl := deadLetters(t, bus); len(dl) != 0 {
		t.Fatalf("unexpected dead letters: %+v", dl)
	}
}

func TestRunnerDeadLettersPermanentErrors(t *testing.T) {
	bus := eventstest.Start(t)
	var calls atomic.Int32
	c := events.NewConsumer(bus.JS, fastConsumer("perm"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		calls.Add(1)
		return events.Permanent(errors.New("unknown host h1"))
	})
	run(t, c)
	msg := bus.Publish(t, events.HostDecommissioned{HostID: "h1"}, "c")
	eventstest.WaitFor(t, 10*time.Second, "a dead letter", func() bool { return len(deadLetters(t, bus)) == 1 })
	dl := deadLetters(t, bus)[0]
	if dl.Reason != "unknown host h1" || dl.EventID != msg.ID || dl.Consumer != "perm" || dl.Stream != events.StreamHosts || string(dl.Data) != string(msg.Data) {
		t.Fatalf("dead letter = %+v", dl)
	}
	eventstest.WaitFor(t, 10*time.Second, "terminated, not pending", func() bool {
		ack, num := pending(t, bus, events.StreamHosts, "perm")
		return ack == 0 && num == 0
	})
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times, want 1 (a permanent error is not retried)", calls.Load())
	}
}

func TestRunnerDeadLettersMalformedEventsWithoutCallingHandler(t *testing.T) {
	bus := eventstest.Start(t)
	var calls atomic.Int32
	c := events.NewConsumer(bus.JS, fastConsumer("malformed"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		calls.Add(1)
		return nil
	})
	run(t, c)
	subject := events.SpecOf[events.HostDecommissioned]().Subject
	ctx := context.Background()
	for _, body := range []string{"not json at all", `{"id":"x","type":"HostDecommissioned","schema_version":1,"time":"2026-01-01T00:00:00Z","producer":"p","data":{"host_id":""}}`} {
		if _, err := bus.JS.Publish(ctx, subject, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	bus.Publish(t, events.HostDecommissioned{HostID: "ok"}, "c") // the consumer keeps going
	eventstest.WaitFor(t, 10*time.Second, "two dead letters and one handled event", func() bool {
		return len(deadLetters(t, bus)) == 2 && calls.Load() == 1
	})
	for _, dl := range deadLetters(t, bus) {
		if dl.Reason == "" || dl.Deliveries != 1 {
			t.Errorf("dead letter %+v: want a reason and a single delivery", dl)
		}
	}
}

func TestRunnerGivesUpAfterMaxDeliver(t *testing.T) {
	bus := eventstest.Start(t)
	var calls atomic.Int32
	c := events.NewConsumer(bus.JS, fastConsumer("bounded"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		calls.Add(1)
		return errors.New("still failing")
	})
	run(t, c)
	bus.Publish(t, events.HostDecommissioned{HostID: "h1"}, "c")
	eventstest.WaitFor(t, 10*time.Second, "dead letter after max deliveries", func() bool { return len(deadLetters(t, bus)) == 1 })
	dl := deadLetters(t, bus)[0]
	if dl.Deliveries != 3 || dl.Reason != "still failing" {
		t.Fatalf("dead letter = %+v, want 3 deliveries", dl)
	}
	if calls.Load() != 3 {
		t.Fatalf("handler called %d times, want MaxDeliver=3", calls.Load())
	}
}

func TestRunnerHeartbeatsLongWork(t *testing.T) {
	bus := eventstest.Start(t)
	cfg := fastConsumer("long")
	cfg.AckWait = time.Second
	var deliveries []uint64
	var mu sync.Mutex
	c := events.NewConsumer(bus.JS, cfg)
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		mu.Lock()
		deliveries = append(deliveries, m.NumDelivered)
		mu.Unlock()
		select { // work for three ack waits; without in-progress heartbeats it would be redelivered
		case <-time.After(3 * cfg.AckWait):
		case <-ctx.Done():
		}
		return nil
	})
	run(t, c)
	bus.Publish(t, events.HostDecommissioned{HostID: "h1"}, "c")
	eventstest.WaitFor(t, 10*time.Second, "long event acked", func() bool {
		ack, num := pending(t, bus, events.StreamHosts, "long")
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) >= 1 && ack == 0 && num == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 1 {
		t.Fatalf("delivered %v; a heartbeating handler must not be redelivered", deliveries)
	}
}

func TestRunnerDrainsOnShutdown(t *testing.T) {
	bus := eventstest.Start(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	c := events.NewConsumer(bus.JS, fastConsumer("drain"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		close(started)
		<-release
		finished.Store(true)
		return ctx.Err() // the handler's context outlives Run's during the grace period
	})
	stop := run(t, c)
	bus.Publish(t, events.HostDecommissioned{HostID: "h1"}, "c")
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a handler was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("handler did not finish")
	}
	ack, num := pending(t, bus, events.StreamHosts, "drain")
	if ack != 0 || num != 0 {
		t.Fatalf("after drain: %d awaiting ack, %d pending; the in-flight event must be acked", ack, num)
	}
}

func TestWorkQueueDeliversEachJobOnce(t *testing.T) {
	bus := eventstest.Start(t)
	var mu sync.Mutex
	seen := map[string]int{}
	handler := func(ctx context.Context, m events.Meta, e events.UpgradeRequested) error {
		mu.Lock()
		seen[e.JobID]++
		mu.Unlock()
		return nil
	}
	// Two executors share one durable consumer: the work is split, never duplicated.
	for range 2 {
		cfg := fastConsumer("executor")
		cfg.Concurrency = 4
		c := events.NewConsumer(bus.JS, cfg)
		events.On(c, handler)
		run(t, c)
	}
	const jobs = 50
	for i := range jobs {
		bus.Publish(t, events.UpgradeRequested{JobID: string(rune('A' + i)), RolloutID: "r", HostID: "h", Kind: events.KindSecurity,
			Strategy: events.StrategyInPlace, Reboot: events.RebootNever}, "r")
	}
	eventstest.WaitFor(t, 10*time.Second, "all jobs handled and removed from the queue", func() bool {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		s, err := bus.JS.Stream(context.Background(), events.StreamJobs)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n == jobs && info.State.Msgs == 0
	})
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s handled %d times", id, n)
		}
	}
}

func TestEnsureStreamsRestoresTheContract(t *testing.T) {
	bus := eventstest.Start(t) // streams created once already
	ctx := context.Background()
	s, err := bus.JS.Stream(ctx, events.StreamHosts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge = 48 * time.Hour
	if _, err := bus.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := events.EnsureStreams(ctx, bus.JS, 1); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := events.StreamConfigs(1)
	for _, w := range want {
		if w.Name == events.StreamHosts && info.Config.MaxAge != w.MaxAge {
			t.Fatalf("max age %v after EnsureStreams, want %v", info.Config.MaxAge, w.MaxAge)
		}
	}
	if err := events.EnsureStreams(ctx, bus.JS, 1); err != nil { // unchanged: read only
		t.Fatal(err)
	}
}

func TestRunnerWaitsForMissingStream(t *testing.T) {
	bus := eventstest.Start(t)
	ctx := context.Background()
	if err := bus.JS.DeleteStream(ctx, events.StreamHosts); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	c := events.NewConsumer(bus.JS, fastConsumer("patient"))
	events.On(c, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		calls.Add(1)
		return nil
	})
	stop := run(t, c) // cannot create its consumer yet: it keeps trying instead of failing
	if err := events.EnsureStreams(ctx, bus.JS, 1); err != nil {
		t.Fatal(err)
	}
	bus.Publish(t, events.HostDecommissioned{HostID: "h1"}, "c")
	eventstest.WaitFor(t, 20*time.Second, "event handled once the stream exists", func() bool { return calls.Load() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
