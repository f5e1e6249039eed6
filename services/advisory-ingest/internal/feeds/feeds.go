// Package feeds runs configured advisory feeds through the pipeline: files, directories and
// OSV zip dumps read on a schedule, and HTTP(S) URLs polled with conditional requests whose
// validators survive restarts.
package feeds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/pipeline"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/source"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/store"
)

// Feed is one configured feed.
type Feed struct {
	Location string        // a file, directory or zip path, or an http(s):// URL
	Interval time.Duration // between reads (polls); default 1h
	Format   source.Format // FormatAuto unless given
}

// IsURL reports whether a feed location is polled over HTTP.
func IsURL(location string) bool {
	return strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://")
}

// Reader reads feeds into a pipeline.
type Reader struct {
	Pipeline   *pipeline.Pipeline
	Logger     *slog.Logger
	Client     *http.Client  // for URLs; nil: the Poller's default
	MinBackoff time.Duration // after a failed poll; 0: 10s
}

// options skips records whose raw bytes were ingested before under this feed.
func (r *Reader) options(ctx context.Context, f Feed) (source.Options, error) {
	known, err := r.Pipeline.Store().RawDigests(ctx, f.Location)
	if err != nil {
		return source.Options{}, err
	}
	return source.Options{Format: f.Format, Unchanged: func(origin string, digest []byte) bool {
		d, ok := known[origin]
		return ok && bytes.Equal(d, digest)
	}}, nil
}

// collect returns the callbacks feeding a source's records into b; the yield error stops
// reading.
func collect(ctx context.Context, b *pipeline.Batch) (source.Yield, source.Bad) {
	return func(rec source.Record) error {
			return b.Add(ctx, pipeline.Item{Advisory: rec.Advisory, Origin: rec.Origin, RawDigest: rec.RawDigest})
		}, func(br source.BadRecord) {
			b.Bad(br.Origin, br.Err, br.Skipped())
		}
}

// ReadPath reads a file, directory or zip dump once.
func (r *Reader) ReadPath(ctx context.Context, f Feed) (pipeline.Stats, error) {
	opts, err := r.options(ctx, f)
	if err != nil {
		return pipeline.Stats{}, err
	}
	b := r.Pipeline.Batch(f.Location)
	yield, bad := collect(ctx, b)
	err = source.ReadPath(ctx, f.Location, opts, yield, bad)
	// What was read before a failure is kept.
	if ferr := b.Flush(ctx); err == nil {
		err = ferr
	}
	return b.Stats, err
}

// Poll makes one conditional request for a URL feed, from the stored validators, and
// stores the new ones only once the records read are stored: a feed whose records could
// not be written is fetched in full again.
func (r *Reader) Poll(ctx context.Context, p *source.Poller, f Feed) (changed bool, st pipeline.Stats, err error) {
	st0, err := r.Pipeline.Store().FeedState(ctx, f.Location)
	if err != nil {
		return false, st, err
	}
	p.SetState(st0.ETag, st0.LastModified)
	if p.Options, err = r.options(ctx, f); err != nil {
		return false, st, err
	}
	b := r.Pipeline.Batch(f.Location)
	yield, bad := collect(ctx, b)
	changed, err = p.Poll(ctx, yield, bad)
	if ferr := b.Flush(ctx); err == nil {
		err = ferr
	}
	if err != nil {
		p.SetState(st0.ETag, st0.LastModified)
		return false, b.Stats, err
	}
	if changed {
		etag, lm := p.State()
		if err := r.Pipeline.Store().FeedPolled(ctx, f.Location, store.FeedState{ETag: etag, LastModified: lm}, time.Now()); err != nil {
			return changed, b.Stats, err
		}
	}
	return changed, b.Stats, nil
}

// Run reads a feed every Interval until ctx ends; failures are logged, recorded (URL feeds)
// and retried with backoff. It returns nil when ctx ends.
func (r *Reader) Run(ctx context.Context, f Feed) error {
	interval := f.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	minB := r.MinBackoff
	if minB <= 0 {
		minB = 10 * time.Second
	}
	p := &source.Poller{URL: f.Location, Client: r.Client, Interval: interval}
	failures := 0
	for {
		start := time.Now()
		var st pipeline.Stats
		var err error
		changed := true
		if IsURL(f.Location) {
			changed, st, err = r.Poll(ctx, p, f)
		} else {
			st, err = r.ReadPath(ctx, f)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := interval
		if err != nil {
			failures++
			wait = source.Backoff(minB, interval, failures)
			r.Logger.Warn("feed read failed", "feed", f.Location, "err", err, "retry_in", wait)
			if IsURL(f.Location) {
				if serr := r.Pipeline.Store().FeedFailed(ctx, f.Location, err, time.Now()); serr != nil {
					r.Logger.Warn("record feed failure", "feed", f.Location, "err", serr)
				}
			}
		} else {
			failures = 0
			r.Logger.Info("feed read", "feed", f.Location, "changed", changed, "records", st.Read,
				"published", st.Published, "withdrawn", st.Withdrawn, "unchanged", st.Unchanged,
				"stale", st.Stale, "bad", st.Bad, "skipped", st.Skipped, "took", time.Since(start).Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Validate checks a feed's configuration.
func (f Feed) Validate() error {
	if f.Location == "" {
		return errors.New("feed location is empty")
	}
	if f.Interval < 0 {
		return fmt.Errorf("feed %s: negative interval", f.Location)
	}
	return nil
}
