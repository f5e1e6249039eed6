package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/inbox"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/plannerdb"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestSeen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := pgtest.New(t, plannerdb.Schema, plannerdb.Migrations)

	// handle is a consumer: it applies its effect (a counter) unless the event was seen.
	handle := func(consumer, eventID string, commit bool) (already bool) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		already, err = inbox.Seen(ctx, tx, consumer, eventID)
		if err != nil {
			t.Fatal(err)
		}
		if !already {
			if _, err := tx.Exec(ctx, "insert into service_info (key, value) values ($1, '1') on conflict (key) do update set value = (service_info.value::int + 1)::text", consumer); err != nil {
				t.Fatal(err)
			}
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return already
	}
	effects := func(consumer string) string {
		var v string
		err := pool.QueryRow(ctx, "select value from service_info where key = $1", consumer).Scan(&v)
		if err == pgx.ErrNoRows {
			return "0"
		}
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	if handle("rollouts", "e1", false) {
		t.Fatal("first delivery reported as seen")
	}
	// That transaction rolled back: the redelivery is processed.
	if handle("rollouts", "e1", true) {
		t.Fatal("redelivery after a rollback reported as seen")
	}
	if !handle("rollouts", "e1", true) {
		t.Fatal("redelivery after a commit not reported as seen")
	}
	if handle("chatops", "e1", true) {
		t.Fatal("another consumer's record hid the event")
	}
	if got := effects("rollouts"); got != "1" {
		t.Fatalf("rollouts applied its effect %s times, want 1", got)
	}

	// Pruning forgets old records only.
	if _, err := pool.Exec(ctx, "update inbox set processed_at = now() - interval '8 days' where consumer = 'chatops'"); err != nil {
		t.Fatal(err)
	}
	n, err := inbox.Prune(ctx, pool, 7*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("pruned %d records, want 1", n)
	}
	err = db.InTx(ctx, pool, func(tx pgx.Tx) error {
		already, err := inbox.Seen(ctx, tx, "rollouts", "e1")
		if err == nil && !already {
			t.Error("pruning removed a recent record")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two deliveries of one event processed at the same time: one applies, the other sees it.
func TestSeenConcurrentDeliveries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := pgtest.New(t, plannerdb.Schema, plannerdb.Migrations)

	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	if already, err := inbox.Seen(ctx, first, "c", "e"); err != nil || already {
		t.Fatalf("first delivery: already %v, err %v", already, err)
	}
	second := make(chan bool, 1)
	go func() {
		var already bool
		err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
			var err error
			already, err = inbox.Seen(ctx, tx, "c", "e") // blocks until first ends
			return err
		})
		if err != nil {
			t.Error(err)
		}
		second <- already
	}()
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !<-second {
		t.Fatal("the concurrent second delivery was not reported as seen")
	}
}
