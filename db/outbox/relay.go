package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/messaging"
)

// Config tunes a Relay; the zero value is usable.
type Config struct {
	// BatchSize is how many rows are read and published per round; default 500.
	BatchSize int
	// PollInterval is how often the relay looks for rows without being notified (a lost
	// notification, a relay taking over from another); default 1s.
	PollInterval time.Duration
	// PublishTimeout bounds one publish to JetStream; default 5s.
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure (NATS or PostgreSQL down),
	// doubled on each consecutive failure; defaults 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Retention is how long published rows are kept (for inspection) before pruning;
	// default 24h. Negative: never prune.
	Retention time.Duration
	// PruneInterval is how often the publishing relay prunes; default 10m.
	PruneInterval time.Duration
	// Registerer, if set, receives the relay's metrics, labelled with the schema.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	def(&c.PollInterval, time.Second)
	def(&c.PublishTimeout, 5*time.Second)
	def(&c.MinBackoff, 100*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.Retention, 24*time.Hour)
	def(&c.PruneInterval, 10*time.Minute)
	return c
}

// Relay publishes the outbox of one schema to JetStream, in insertion order.
//
// Several relays (one per service instance) may run on one schema: they all LISTEN, but only
// the one holding the schema's session advisory lock publishes, which keeps the order. When
// its connection ends the lock is released and another relay takes over within a
// PollInterval. Rows are marked published after JetStream acknowledged them; a relay that
// dies in between publishes them again and JetStream drops the duplicates by event id.
//
// Order: rows are published by seq, the order of insertion. Transactions that commit
// concurrently may become visible out of seq order; a row committed late is still published,
// just after rows inserted after it.
type Relay struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	cfg     Config
	logger  *slog.Logger
	schema  string
	lockKey string
	metrics *metrics
}

// NewRelay returns a relay for the outbox of pool's schema; pool must come from db.Connect,
// whose search_path names the schema.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, cfg Config, logger *slog.Logger) (*Relay, error) {
	schema := pool.Config().ConnConfig.RuntimeParams["search_path"]
	if err := db.ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("outbox relay: pool's search_path: %w (connect with db.Connect)", err)
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer, schema)
	if err != nil {
		return nil, fmt.Errorf("outbox relay %s: %w", schema, err)
	}
	return &Relay{
		pool:    pool,
		js:      js,
		cfg:     cfg,
		logger:  logger.With("schema", schema),
		schema:  schema,
		lockKey: "patchfleet.outbox." + schema,
		metrics: m,
	}, nil
}

// errPublish marks a failure to publish (NATS), as opposed to one of PostgreSQL.
type errPublish struct{ err error }

func (e errPublish) Error() string { return e.err.Error() }
func (e errPublish) Unwrap() error { return e.err }

// Run relays until ctx ends, then returns nil. Failures are logged and retried with backoff.
func (r *Relay) Run(ctx context.Context) error {
	backoff := r.cfg.MinBackoff
	for {
		started := time.Now()
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > r.cfg.MaxBackoff {
			backoff = r.cfg.MinBackoff // the session was healthy for a while
		}
		r.logger.Warn("outbox relay failed; reconnecting", "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// session relays over one dedicated connection until it fails or ctx ends. The connection
// is outside the pool: it holds a session lock and a LISTEN, neither of which may leak into
// a pooled connection.
func (r *Relay) session(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // also releases the lock
	if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{ChannelPrefix + r.schema}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	q := messaging.New(conn)
	leader := false
	var nextPrune time.Time
	backoff := r.cfg.MinBackoff
	for {
		if !leader {
			if leader, err = tryLock(ctx, conn, r.lockKey); err != nil {
				return err
			}
			if leader {
				r.logger.Info("outbox relay is publishing")
			}
		}
		if leader {
			n, err := r.drain(ctx, q)
			var pubErr errPublish
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.As(err, &pubErr):
				r.logger.Warn("outbox relay cannot publish", "err", err, "published", n, "retry_in", backoff)
				// Sleep rather than wait for a notification: new commits must not turn the
				// backoff into a retry per commit. Notifications queue meanwhile.
				if !sleep(ctx, backoff) {
					return ctx.Err()
				}
				backoff = min(2*backoff, r.cfg.MaxBackoff)
				continue
			case err != nil:
				return err
			default:
				backoff = r.cfg.MinBackoff
				if n > 0 {
					r.logger.Debug("outbox relay published", "events", n)
				}
			}
			if r.cfg.Retention > 0 && time.Now().After(nextPrune) {
				if err := r.prune(ctx, q); err != nil {
					return err
				}
				nextPrune = time.Now().Add(r.cfg.PruneInterval)
			}
		}
		if err := waitNotification(ctx, conn, r.cfg.PollInterval); err != nil {
			return err
		}
	}
}

// drain publishes every unpublished row, batch by batch, and marks them published.
func (r *Relay) drain(ctx context.Context, q *messaging.Queries) (int, error) {
	total := 0
	for {
		rows, err := q.FetchUnpublished(ctx, int32(r.cfg.BatchSize))
		if err != nil {
			return total, fmt.Errorf("fetch unpublished events: %w", err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		done, pubErr := r.publish(ctx, rows)
		if len(done) > 0 {
			// Not ctx: what JetStream has acknowledged should be recorded even at shutdown.
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
			_, err := q.MarkPublished(mctx, done)
			cancel()
			if err != nil {
				return total, fmt.Errorf("mark events %d..%d published: %w", done[0], done[len(done)-1], err)
			}
			r.metrics.published.Add(float64(len(done)))
			total += len(done)
		}
		if pubErr != nil {
			return total, pubErr
		}
		if len(rows) < r.cfg.BatchSize {
			// The outbox was empty behind this batch when it was read; anything committed
			// since has notified, and the notification wakes the relay again.
			return total, nil
		}
	}
}

// publish puts a batch on the bus with asynchronous publishes — one round trip for the batch,
// not one per event — and returns the seqs of the longest acknowledged prefix. Events after a
// failed one may have been stored already; they are published again with the same ids and
// JetStream drops the duplicates, so nothing is lost or doubled, though such an event can then
// precede the failed one on the stream.
func (r *Relay) publish(ctx context.Context, rows []messaging.FetchUnpublishedRow) ([]int64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(rows))
	var sendErr error
	for _, row := range rows {
		msg := nats.NewMsg(row.Subject)
		msg.Data = row.Data
		msg.Header.Set(jetstream.MsgIDHeader, row.EventID)
		f, err := r.js.PublishMsgAsync(msg)
		if err != nil {
			sendErr = fmt.Errorf("outbox seq %d: publish %s %s: %w", row.Seq, row.Subject, row.EventID, err)
			break
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(r.cfg.PublishTimeout)
	defer timeout.Stop()
	done := make([]int64, 0, len(futures))
	for i, f := range futures {
		select {
		case <-f.Ok():
			done = append(done, rows[i].Seq)
			continue
		case err := <-f.Err():
			sendErr = fmt.Errorf("outbox seq %d: publish %s %s: %w", rows[i].Seq, rows[i].Subject, rows[i].EventID, err)
		case <-timeout.C:
			sendErr = fmt.Errorf("outbox seq %d: no acknowledgement within %v", rows[i].Seq, r.cfg.PublishTimeout)
		case <-ctx.Done():
			sendErr = ctx.Err()
		}
		break
	}
	if sendErr != nil {
		r.metrics.publishErrors.Inc()
		return done, errPublish{sendErr}
	}
	return done, nil
}

func (r *Relay) prune(ctx context.Context, q *messaging.Queries) error {
	n, err := q.PruneOutbox(ctx, time.Now().Add(-r.cfg.Retention))
	if err != nil {
		return fmt.Errorf("prune outbox: %w", err)
	}
	if n > 0 {
		r.metrics.pruned.Add(float64(n))
		r.logger.Debug("outbox pruned", "rows", n)
	}
	return nil
}

// Prune deletes published rows older than the retention now, rather than on the relay's
// schedule.
func (r *Relay) Prune(ctx context.Context) error {
	return r.prune(ctx, messaging.New(r.pool))
}

// Flush publishes every event committed before it was called, and returns once they are all
// on the bus (or ctx ends). Call it at shutdown, after the work that adds events has
// stopped. If another relay (of this process or another) is publishing, Flush wakes it and
// waits for it; otherwise it publishes itself.
func (r *Relay) Flush(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("flush outbox %s: connect: %w", r.schema, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := messaging.New(conn)
	last, err := q.LastUnpublished(ctx)
	if err != nil {
		return fmt.Errorf("flush outbox %s: %w", r.schema, err)
	}
	if last == 0 {
		return nil
	}
	backoff := r.cfg.MinBackoff
	for {
		leader, err := tryLock(ctx, conn, r.lockKey)
		if err != nil {
			return fmt.Errorf("flush outbox %s: %w", r.schema, err)
		}
		if leader {
			_, err := r.drain(ctx, q)
			if err == nil {
				return nil
			}
			var pubErr errPublish
			if !errors.As(err, &pubErr) {
				return fmt.Errorf("flush outbox %s: %w", r.schema, err)
			}
			r.logger.Warn("outbox flush cannot publish", "err", err, "retry_in", backoff)
			if _, err := conn.Exec(ctx, "select pg_advisory_unlock(hashtext($1))", r.lockKey); err != nil {
				return fmt.Errorf("flush outbox %s: unlock: %w", r.schema, err)
			}
		} else {
			pending, err := q.CountUnpublishedUpTo(ctx, last)
			if err != nil {
				return fmt.Errorf("flush outbox %s: %w", r.schema, err)
			}
			if pending == 0 {
				return nil
			}
			if err := q.NotifyOutbox(ctx); err != nil {
				return fmt.Errorf("flush outbox %s: %w", r.schema, err)
			}
			backoff = min(backoff, 20*time.Millisecond) // the publisher is quick; look again soon
		}
		if !sleep(ctx, backoff) {
			return fmt.Errorf("flush outbox %s: %w", r.schema, ctx.Err())
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

func tryLock(ctx context.Context, conn *pgx.Conn, key string) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, "select pg_try_advisory_lock(hashtext($1))", key).Scan(&ok); err != nil {
		return false, fmt.Errorf("try lock %s: %w", key, err)
	}
	return ok, nil
}

// waitNotification returns when a notification arrives, d has passed or ctx ends.
func waitNotification(ctx context.Context, conn *pgx.Conn, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, err := conn.WaitForNotification(wctx)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil && wctx.Err() == nil:
		return fmt.Errorf("wait for notification: %w", err)
	}
	// A timeout leaves the connection usable: pgconn closes it only on other errors.
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
