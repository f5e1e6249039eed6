// Package feedpub publishes advisory feeds to the bus: it reads files, directories, OSV zip
// dumps or URLs with advisory-ingest's reader and puts one AdvisorySubmitted per advisory on
// the FEEDS stream, for advisory-ingest to store and announce. Event ids are derived from the
// advisory id and its content hash, so publishing an unchanged feed again changes nothing.
package feedpub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/feed"
)

// Exit statuses of the command.
const (
	ExitOK      = 0 // every record published
	ExitPartial = 1 // some records were bad; the others were published
	ExitFailure = 2 // a source could not be read, or publishing failed
)

// Config says what to publish and how.
type Config struct {
	Sources  []string // paths or http(s) URLs
	Format   string   // "" detects per document; see feed.Formats
	Producer string   // the events' producer; default "feedpub"
	// DryRun writes what would be published to Out, one JSON line per event, instead of
	// publishing.
	DryRun bool
	Out    io.Writer
	// Progress, if set, gets a line every ProgressEvery (default 1s) while publishing, and
	// a summary at the end.
	Progress      io.Writer
	ProgressEvery time.Duration
	HTTPClient    *http.Client
	// MaxPending bounds publishes awaiting JetStream's acknowledgement; default 256.
	MaxPending int
}

// Result counts what was done.
type Result struct {
	Read      int64 // good advisories read
	Published int64 // acknowledged by JetStream (or printed, in a dry run)
	Duplicate int64 // acknowledged as duplicates: published before, within the duplicate window
	Bad       int64
	Skipped   int64 // about nothing Patchfleet handles
}

// ExitCode is the command's exit status for a run that returned err.
func (r Result) ExitCode(err error) int {
	switch {
	case err != nil:
		return ExitFailure
	case r.Bad > 0:
		return ExitPartial
	}
	return ExitOK
}

// DryRunLine is what a dry run prints per event.
type DryRunLine struct {
	Subject  string          `json:"subject"`
	MsgID    string          `json:"msg_id"`
	Origin   string          `json:"origin"`
	Envelope json.RawMessage `json:"envelope"`
}

// Run publishes every source with js (nil for a dry run). Bad records are reported to bad
// (and counted); the error is a source that cannot be read or a failed publish.
func Run(ctx context.Context, cfg Config, js jetstream.JetStream, bad func(feed.Bad)) (Result, error) {
	if cfg.Producer == "" {
		cfg.Producer = "feedpub"
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 256
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if !cfg.DryRun && js == nil {
		return Result{}, errors.New("feedpub: no JetStream connection")
	}
	if cfg.DryRun && cfg.Out == nil {
		cfg.Out = io.Discard
	}
	var res counters
	pub := &publisher{js: js, pending: make(chan jetstream.PubAckFuture, cfg.MaxPending), res: &res}
	if !cfg.DryRun {
		pub.start()
	}
	stopProgress := progress(cfg.Progress, cfg.ProgressEvery, &res)
	enc := json.NewEncoder(cfg.Out)

	var err error
	for _, src := range cfg.Sources {
		err = feed.Read(ctx, src, feed.Options{Format: cfg.Format, HTTPClient: cfg.HTTPClient}, func(s feed.Submission) error {
			res.read.Add(1)
			m, err := feed.Message(s, cfg.Producer, time.Now())
			if err != nil {
				// The reader validated the advisory: the contract refusing it is a record problem.
				res.bad.Add(1)
				if bad != nil {
					bad(feed.Bad{Origin: s.Event.Origin, Err: err})
				}
				return nil
			}
			if cfg.DryRun {
				res.published.Add(1)
				return enc.Encode(DryRunLine{Subject: m.Subject, MsgID: m.ID, Origin: s.Event.Origin, Envelope: m.Data})
			}
			return pub.publish(ctx, m)
		}, func(b feed.Bad) {
			if b.Skipped {
				res.skipped.Add(1)
				return
			}
			res.bad.Add(1)
			if bad != nil {
				bad(b)
			}
		})
		if err != nil {
			err = fmt.Errorf("publish %s: %w", src, err)
			break
		}
	}
	if !cfg.DryRun {
		if perr := pub.wait(); err == nil {
			err = perr
		}
	}
	stopProgress()
	return res.result(), err
}

type counters struct {
	read, published, duplicate, bad, skipped atomic.Int64
}

func (c *counters) result() Result {
	return Result{Read: c.read.Load(), Published: c.published.Load(), Duplicate: c.duplicate.Load(), Bad: c.bad.Load(), Skipped: c.skipped.Load()}
}

// publisher publishes asynchronously, at most MaxPending unacknowledged at a time; acks are
// checked in order by one goroutine.
type publisher struct {
	js      jetstream.JetStream
	pending chan jetstream.PubAckFuture
	res     *counters
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

func (p *publisher) start() {
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		for f := range p.pending {
			select {
			case ack := <-f.Ok():
				p.res.published.Add(1)
				if ack.Duplicate {
					p.res.duplicate.Add(1)
				}
			case err := <-f.Err():
				p.fail(fmt.Errorf("publish %s: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err))
			}
		}
	}()
}

func (p *publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *publisher) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *publisher) publish(ctx context.Context, m events.Message) error {
	if err := p.failed(); err != nil {
		return err
	}
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Data
	msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	f, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publish %s: %w", m.ID, err)
	}
	select {
	case p.pending <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns once every publish is acknowledged or failed.
func (p *publisher) wait() error {
	close(p.pending)
	<-p.done
	return p.failed()
}

func progress(w io.Writer, every time.Duration, c *counters) (stop func()) {
	if w == nil {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{})
	line := func(final bool) {
		r := c.result()
		rate := float64(r.Read) / max(time.Since(start).Seconds(), 1e-9)
		what := "feedpub:"
		if final {
			what = "feedpub: done:"
		}
		fmt.Fprintf(w, "%s %d read, %d published (%d duplicates), %d bad, %d skipped, %.0f records/s\n",
			what, r.Read, r.Published, r.Duplicate, r.Bad, r.Skipped, rate)
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				line(false)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		line(true)
	}
}
