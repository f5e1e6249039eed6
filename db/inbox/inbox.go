// Package inbox makes event consumers idempotent: a consumer records each event id it
// processes in the transaction of its effect, and skips an event it has already recorded.
// A redelivered event (JetStream delivers at least once) is then harmless.
package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/messaging"
)

// Seen records that consumer processes eventID in tx and reports whether it already had:
// then the caller skips the effect (and commits or rolls back; either is harmless). If tx
// rolls back, the record goes with it and the event will be processed on redelivery.
//
// Two deliveries of one event processed at once are serialised by the primary key: the
// second waits for the first transaction and then sees already == true.
func Seen(ctx context.Context, tx pgx.Tx, consumer, eventID string) (already bool, err error) {
	if consumer == "" || eventID == "" {
		return false, fmt.Errorf("inbox: consumer %q and event id %q are required", consumer, eventID)
	}
	n, err := messaging.New(tx).InsertInbox(ctx, messaging.InsertInboxParams{Consumer: consumer, EventID: eventID})
	if err != nil {
		return false, fmt.Errorf("record event %s for consumer %s: %w", eventID, consumer, err)
	}
	return n == 0, nil
}

// Prune deletes records older than retention, and returns how many. Keep retention well
// beyond how long an event can be redelivered (the consumer's MaxDeliver × backoff, and the
// stream's duplicate window for republished events).
func Prune(ctx context.Context, db messaging.DBTX, retention time.Duration, now time.Time) (int64, error) {
	n, err := messaging.New(db).PruneInbox(ctx, now.Add(-retention))
	if err != nil {
		return 0, fmt.Errorf("prune inbox older than %s: %w", retention, err)
	}
	return n, nil
}
