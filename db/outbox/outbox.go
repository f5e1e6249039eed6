// Package outbox is the transactional outbox: a service stores the events announcing a state
// change in the transaction that makes the change (Add), and a Relay publishes them to
// JetStream after the commit. An event is therefore on the bus if and only if its
// transaction committed — at least once from the relay, exactly once on the stream, because
// the event id is the Nats-Msg-Id and JetStream drops a duplicate within its window.
package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/messaging"
	"github.com/patchfleet/patchfleet/events"
)

// ChannelPrefix + schema is the LISTEN/NOTIFY channel that wakes a schema's relays.
const ChannelPrefix = "patchfleet_outbox."

// Add stores msgs in the outbox of tx's schema, in order, and notifies the schema's relays,
// which wake when (and only if) tx commits. A message whose id is already in the outbox is
// stored once.
func Add(ctx context.Context, tx pgx.Tx, msgs ...events.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	q := messaging.New(tx)
	batch := messaging.InsertOutboxBatchParams{
		EventIds: make([]string, len(msgs)), Subjects: make([]string, len(msgs)), Datas: make([][]byte, len(msgs))}
	for i, m := range msgs {
		if m.ID == "" || m.Subject == "" || len(m.Data) == 0 {
			return fmt.Errorf("add event %q to outbox: id, subject and data are required", m.ID)
		}
		batch.EventIds[i], batch.Subjects[i], batch.Datas[i] = m.ID, m.Subject, m.Data
	}
	// One statement for the lot, the relays' wake-up included: a batch of advisories adds
	// hundreds of events at once, and a job's every step adds one.
	if err := q.InsertOutboxBatch(ctx, batch); err != nil {
		return fmt.Errorf("add %d events to outbox (first %s): %w", len(msgs), msgs[0].ID, err)
	}
	return nil
}
