// Package pipeline turns advisories read from any source into stored revisions and the
// events announcing them. Records are handled in batches: one query looks up the stored
// content hashes of a batch, unchanged advisories are dropped without writing anything, and
// the changed ones are written — advisory, revision and outbox message — in one transaction
// per batch, retried as a whole if the database fails.
package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/revision"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/store"
)

// Config tunes a Pipeline; the zero value is usable.
type Config struct {
	Producer   string // events' producer; default "advisory-ingest"
	BatchSize  int    // records per lookup and per transaction; default 500
	Attempts   int    // tries of a batch's transaction before giving up; default 5
	MinBackoff time.Duration
	Registerer prometheus.Registerer
	Now        func() time.Time
	// AddOutbox stores a batch's events in its transaction; default outbox.Add. Benchmarks
	// swap it to measure the outbox's share of a write.
	AddOutbox func(ctx context.Context, tx pgx.Tx, msgs ...events.Message) error
}

// Pipeline ingests advisories into the store. It is safe for concurrent use; each read of a
// source uses its own Batch.
type Pipeline struct {
	st      *store.Store
	cfg     Config
	logger  *slog.Logger
	records *prometheus.CounterVec
}

// New returns a pipeline writing to st.
func New(st *store.Store, cfg Config, logger *slog.Logger) (*Pipeline, error) {
	if cfg.Producer == "" {
		cfg.Producer = "advisory-ingest"
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AddOutbox == nil {
		cfg.AddOutbox = outbox.Add
	}
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "patchfleet_ingest_records_total",
		Help: "Advisory records read, by outcome: published, withdrawn, unchanged, stale, bad, skipped (nothing Patchfleet handles).",
	}, []string{"outcome"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(records); err != nil {
			return nil, fmt.Errorf("register ingest metrics: %w", err)
		}
	}
	return &Pipeline{st: st, cfg: cfg, logger: logger, records: records}, nil
}

// Store is the pipeline's store.
func (p *Pipeline) Store() *store.Store { return p.st }

// Item is one advisory read from a source.
type Item struct {
	Advisory  advisory.Advisory // normalised and valid
	Origin    string            // the record: file, zip entry, URL#id, FEEDS event
	RawDigest []byte            // of the raw record, if the source gave one
	// CausationID is the id of the event that carried the advisory (AdvisorySubmitted).
	CausationID string

	hash string
}

// Stats counts what a batch did.
type Stats struct {
	Read, Published, Withdrawn, Unchanged, Stale, Bad, Skipped int
}

func (s *Stats) add(o Stats) {
	s.Read += o.Read
	s.Published += o.Published
	s.Withdrawn += o.Withdrawn
	s.Unchanged += o.Unchanged
	s.Stale += o.Stale
	s.Bad += o.Bad
	s.Skipped += o.Skipped
}

// Batch collects the records of one read of a source and writes them BatchSize at a time.
// One write runs in the background while the next batch is read and parsed; writes happen
// in order, one at a time. Not safe for concurrent use.
type Batch struct {
	p      *Pipeline
	source string
	items  []Item
	errs   []store.IngestError
	Stats  Stats

	inflight chan written // the background write, if any
}

type written struct {
	st  Stats
	err error
}

// Batch starts a read of source (a path, URL or stream name: what errors are recorded under).
func (p *Pipeline) Batch(source string) *Batch {
	return &Batch{p: p, source: source}
}

// Add queues an item. When the batch is full it waits for the previous write, if one is
// still running, and starts writing this one; the error is a write's that failed.
func (b *Batch) Add(ctx context.Context, it Item) error {
	it.hash = it.Advisory.ContentHash()
	b.items = append(b.items, it)
	b.Stats.Read++
	if len(b.items)+len(b.errs) < b.p.cfg.BatchSize {
		return nil
	}
	if err := b.wait(); err != nil {
		return err
	}
	items, errs := b.items, b.errs
	b.items, b.errs = make([]Item, 0, b.p.cfg.BatchSize), nil
	done := make(chan written, 1)
	b.inflight = done
	go func() {
		st, err := b.p.writeRetrying(ctx, b.source, items, errs)
		done <- written{st, err}
	}()
	return nil
}

// wait waits for the background write, if any.
func (b *Batch) wait() error {
	if b.inflight == nil {
		return nil
	}
	w := <-b.inflight
	b.inflight = nil
	b.Stats.add(w.st)
	return w.err
}

// Bad reports a record that could not be used: logged, counted and recorded with the next
// write. A record that is merely about nothing Patchfleet handles (skipped) is only counted.
func (b *Batch) Bad(origin string, err error, skipped bool) {
	if skipped {
		b.Stats.Skipped++
		b.p.records.WithLabelValues("skipped").Inc()
		b.p.logger.Debug("advisory record skipped", "source", b.source, "record", origin, "reason", err)
		return
	}
	b.Stats.Bad++
	b.p.records.WithLabelValues("bad").Inc()
	b.p.logger.Warn("bad advisory record", "source", b.source, "record", origin, "err", err)
	if len(b.errs) >= maxQueuedErrors {
		// A feed that is bad throughout: the log line and the counter still tell.
		return
	}
	b.errs = append(b.errs, store.IngestError{Source: b.source, Origin: origin, Reason: err.Error()})
}

// maxQueuedErrors bounds the bad records kept between two writes.
const maxQueuedErrors = 10_000

// Flush waits for the background write and writes what is still queued. Call it at the end
// of a read, also after a failed one: what was read is kept.
func (b *Batch) Flush(ctx context.Context) error {
	if err := b.wait(); err != nil {
		return err
	}
	if len(b.items) == 0 && len(b.errs) == 0 {
		return nil
	}
	st, err := b.p.writeRetrying(ctx, b.source, b.items, b.errs)
	if err != nil {
		return err
	}
	b.Stats.add(st)
	clear(b.items)
	b.items = b.items[:0]
	b.errs = b.errs[:0]
	return nil
}

// writeRetrying writes a batch, retrying the transaction with backoff if the database
// fails; the error is ctx's, a permanent one, or the last failure.
func (p *Pipeline) writeRetrying(ctx context.Context, source string, items []Item, errs []store.IngestError) (Stats, error) {
	backoff := p.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		st, err := p.write(ctx, items, errs)
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil || attempt == p.cfg.Attempts || events.IsPermanent(err) {
			return Stats{}, fmt.Errorf("ingest batch of %d records from %s: %w", len(items), source, err)
		}
		p.logger.Warn("ingest batch failed; retrying", "source", source, "records", len(items), "attempt", attempt, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return Stats{}, ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
}

func incoming(items []Item) []revision.Incoming {
	out := make([]revision.Incoming, len(items))
	for i, it := range items {
		out[i] = revision.Incoming{ID: it.Advisory.ID, Hash: it.hash, Modified: it.Advisory.Modified, Withdrawn: !it.Advisory.Withdrawn.IsZero()}
	}
	return out
}

func ids(items []Item) []string {
	seen := make(map[string]bool, len(items))
	out := make([]string, 0, len(items))
	for _, it := range items {
		if !seen[it.Advisory.ID] {
			seen[it.Advisory.ID] = true
			out = append(out, it.Advisory.ID)
		}
	}
	return out
}

// write decides a batch against the stored state and writes the changes. The first look is
// outside any transaction: a batch of unchanged records costs one read and writes nothing.
// Changes are decided again on locked rows, so concurrent ingesters of one advisory cannot
// both create a revision.
func (p *Pipeline) write(ctx context.Context, items []Item, errs []store.IngestError) (Stats, error) {
	var st Stats
	stored, err := p.st.States(ctx, ids(items))
	if err != nil {
		return st, err
	}
	var changed []Item
	var first Stats // unchanged and stale at first look
	for i, d := range revision.Plan(stored, incoming(items)) {
		switch d.Kind {
		case revision.Unchanged:
			first.Unchanged++
		case revision.Stale:
			first.Stale++
		default:
			changed = append(changed, items[i])
		}
	}
	if len(changed) == 0 && len(errs) == 0 {
		p.count(first)
		return first, nil
	}
	err = db.InTx(ctx, p.st.Pool, func(tx pgx.Tx) error {
		st = first
		if err := store.SaveErrors(ctx, tx, errs); err != nil {
			return err
		}
		locked, err := store.LockStates(ctx, tx, ids(changed))
		if err != nil {
			return err
		}
		decisions := revision.Plan(locked, incoming(changed))
		revs := make([]store.Revision, 0, len(changed))
		msgs := make([]events.Message, 0, len(changed))
		for i, d := range decisions {
			it := changed[i]
			switch d.Kind {
			case revision.Unchanged:
				st.Unchanged++
				continue
			case revision.Stale:
				st.Stale++
				continue
			case revision.Publish:
				st.Published++
			case revision.Withdraw:
				st.Withdrawn++
			}
			rev, msg, err := p.revision(it, d)
			if err != nil {
				return err
			}
			revs = append(revs, rev)
			msgs = append(msgs, msg)
		}
		if err := store.SaveRevisions(ctx, tx, revs); err != nil {
			return err
		}
		return p.cfg.AddOutbox(ctx, tx, msgs...)
	})
	if err != nil {
		return Stats{}, err
	}
	p.count(st)
	return st, nil
}

func (p *Pipeline) count(st Stats) {
	for outcome, n := range map[string]int{"published": st.Published, "withdrawn": st.Withdrawn, "unchanged": st.Unchanged, "stale": st.Stale} {
		if n > 0 {
			p.records.WithLabelValues(outcome).Add(float64(n))
		}
	}
}

// revision builds the stored revision and the event announcing it. The event id is derived
// from the advisory, the revision and its content hash, so a batch retried after a failure
// publishes each revision once (and a revision number reused after the database was
// restored from an old backup does not collide with the event it had before).
func (p *Pipeline) revision(it Item, d revision.Decision) (store.Revision, events.Message, error) {
	a := it.Advisory
	origin := events.Origin{Producer: p.cfg.Producer, CorrelationID: a.ID, CausationID: it.CausationID}
	var e events.Event = a.Event(d.Revision)
	if d.Kind == revision.Withdraw {
		e = a.WithdrawnEvent(d.Revision)
	}
	// events.NewDerived's id, built here with WrapEncode so the envelope's data doubles as
	// the stored record instead of being encoded twice.
	id := events.DerivedID(e.EventType(), a.ID, strconv.Itoa(d.Revision), it.hash)
	env, msg, err := events.WrapEncode(id, e, origin, p.cfg.Now())
	if err != nil {
		// The advisory was validated when read: an event that does not validate or encode
		// is a bug or a contract mismatch, which no retry fixes.
		return store.Revision{}, events.Message{}, events.Permanent(fmt.Errorf("advisory %s from %s: %w", a.ID, it.Origin, err))
	}
	record := []byte(env.Data)
	if d.Kind == revision.Withdraw {
		if record, err = store.Record(a.Event(d.Revision)); err != nil {
			return store.Revision{}, events.Message{}, err
		}
	}
	return store.Revision{
		ID: a.ID, Revision: d.Revision, Hash: it.hash, Source: a.Source, Origin: it.Origin, Aliases: a.Aliases,
		Modified: a.Modified, Withdrawn: a.Withdrawn, Record: record, EventID: msg.ID, RawDigest: it.RawDigest,
	}, msg, nil
}
