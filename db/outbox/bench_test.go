package outbox_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/outbox"
)

// BenchmarkCommitToBus measures the time from a transaction's commit to its event arriving
// at a subscriber, through NOTIFY and the relay: reported as tx-to-bus-ms, from the start of
// the (one-insert) transaction to the event's arrival.
func BenchmarkCommitToBus(b *testing.B) {
	f := setup(b)
	r, err := outbox.NewRelay(f.pool, f.bus.JS, outbox.Config{PollInterval: time.Hour}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	f.run(r)
	arrived := make(chan struct{}, 1)
	sub, err := f.bus.Conn.Subscribe("pf.advisories.>", func(*nats.Msg) { arrived <- struct{}{} })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	var total time.Duration
	n := 0
	for b.Loop() {
		m := event(b, n)
		n++
		start := time.Now()
		err := db.InTx(f.ctx, f.pool, func(tx pgx.Tx) error { return outbox.Add(f.ctx, tx, m) })
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-arrived:
			total += time.Since(start)
		case <-time.After(10 * time.Second):
			b.Fatal("event did not arrive")
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "tx-to-bus-ms")
}
