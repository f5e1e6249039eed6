package bench_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
)

// BenchmarkConsumerThroughput measures the consumer runner every service uses (events.Consumer:
// pull, decode, validate, handler, ack) on an embedded JetStream with a handler that only
// counts: b.N events are stored first, then consumed; events/s is the consuming alone.
func BenchmarkConsumerThroughput(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrency-%d", conc), func(b *testing.B) { benchConsumer(b, conc) })
	}
}

func benchConsumer(b *testing.B, conc int) {
	bus := eventstest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	now := time.Now()
	for i := range b.N {
		m, err := events.New(events.RebootRequired{HostID: fmt.Sprintf("host-%d", i), Packages: []string{"libc6"}, Since: now},
			events.Origin{Producer: "bench", CorrelationID: "bench"}, now)
		if err != nil {
			b.Fatal(err)
		}
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		msg.Header.Set(jetstream.MsgIDHeader, m.ID)
		if _, err := bus.JS.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-bus.JS.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishing did not complete")
	}

	var seen atomic.Int64
	done := make(chan struct{})
	c := events.NewConsumer(bus.JS, events.ConsumerConfig{Name: "bench", Concurrency: conc})
	events.On(c, func(context.Context, events.Meta, events.RebootRequired) error {
		if seen.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	select {
	case <-done:
	case err := <-errc:
		b.Fatalf("consumer stopped: %v", err)
	case <-ctx.Done():
		b.Fatalf("%d of %d events consumed", seen.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
