// Package ingest is the advisory-ingest service: it reads advisory feeds, normalises and stores them, and publishes SecurityAdvisoryPublished once per advisory revision.
//
// Advisories come from configured feeds (files, directories, OSV zip dumps, polled URLs)
// and from external publishers as AdvisorySubmitted events on the FEEDS stream; both go
// through one pipeline (internal/pipeline). Queries by id, CVE and modification time are
// answered over NATS (micro service "advisories") and HTTP (internal/api).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/api"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/feeds"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/pipeline"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/source"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/store"
)

// Name is the service's name on the bus and in logs.
const Name = "advisory-ingest"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8081"

// SourceFeedsStream is what advisories submitted on the FEEDS stream are recorded under
// (ingest errors, metrics).
const SourceFeedsStream = "FEEDS"

// Config configures the service. Zero values take the defaults.
type Config struct {
	service.Common

	// Feeds are read (files, directories, zip dumps) or polled (http/https URLs) every
	// FeedInterval, starting at once. None by default: advisories then come only from
	// publishers on the FEEDS stream.
	Feeds        []string
	FeedInterval time.Duration // default 1h
	// FeedFormat forces a format for every feed ("" detects it per document).
	FeedFormat string
	// BatchSize is how many records are looked up and written together; default 500.
	BatchSize int
	// HTTPClient polls URL feeds; nil: a client with a 5 minute timeout.
	HTTPClient *http.Client
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate()}
	for _, f := range c.Feeds {
		if f == "" {
			errs = append(errs, errors.New("PATCHFLEET_INGEST_FEEDS: empty feed location"))
		}
	}
	if c.FeedInterval < 0 {
		errs = append(errs, errors.New("PATCHFLEET_INGEST_FEED_INTERVAL: must not be negative"))
	}
	switch source.Format(c.FeedFormat) {
	case source.FormatAuto, source.FormatOSV, source.FormatDebianTracker, source.FormatUbuntuNotices, source.FormatDebianDSAList:
	default:
		errs = append(errs, fmt.Errorf("PATCHFLEET_INGEST_FEED_FORMAT %q: want osv, debian-tracker, ubuntu-notices or debian-dsa-list", c.FeedFormat))
	}
	if c.BatchSize < 0 || c.BatchSize > 10_000 {
		errs = append(errs, fmt.Errorf("PATCHFLEET_INGEST_BATCH_SIZE %d: want 1..10000", c.BatchSize))
	}
	return errors.Join(errs...)
}

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s config: %w", Name, err)
	}
	svc, err := service.Start(ctx, service.Config{Common: cfg.Common, Name: Name, Schema: ingestdb.Schema, Migrations: ingestdb.Migrations}, logger)
	if err != nil {
		return err
	}
	st := store.New(svc.Pool)
	p, err := pipeline.New(st, pipeline.Config{Producer: Name, BatchSize: cfg.BatchSize, Registerer: svc.Ops.Registry}, svc.Logger)
	if err != nil {
		svc.NC.Close()
		svc.Pool.Close()
		return err
	}

	reader := &feeds.Reader{Pipeline: p, Logger: svc.Logger, Client: cfg.HTTPClient}
	for _, loc := range cfg.Feeds {
		f := feeds.Feed{Location: loc, Interval: cfg.FeedInterval, Format: source.Format(cfg.FeedFormat)}
		svc.Go("feed "+loc, func(ctx context.Context) error { return reader.Run(ctx, f) })
	}
	if len(cfg.Feeds) == 0 {
		svc.Logger.Info("no feeds configured: advisories come from publishers on the FEEDS stream only")
	}

	c := svc.Consumer("feeds", events.ConsumerConfig{})
	events.On(c, submitted(p))

	a := &api.API{Store: st, Logger: svc.Logger}
	a.Mount(svc.Ops.Handle)
	svc.Go("query", func(ctx context.Context) error { return a.Serve(ctx, svc.NC) })
	return svc.Run(ctx)
}

// submitted handles an advisory from an external publisher. Redelivery needs no inbox: an
// advisory whose content is stored already is unchanged and writes nothing, and the events
// of a retried batch have derived ids, deduplicated by JetStream. An advisory that fails
// ingest's own validation is recorded as an ingest error and dead-lettered.
func submitted(p *pipeline.Pipeline) events.HandlerFunc[events.AdvisorySubmitted] {
	return func(ctx context.Context, m events.Meta, e events.AdvisorySubmitted) error {
		origin := e.Origin
		if origin == "" {
			origin = "event " + m.ID
		}
		b := p.Batch(SourceFeedsStream)
		a := advisory.FromSubmission(e)
		if err := a.Validate(); err != nil {
			b.Bad(origin, err, false)
			if ferr := b.Flush(ctx); ferr != nil {
				return ferr
			}
			return events.Permanent(fmt.Errorf("advisory %s submitted by %s: %w", e.AdvisoryID, m.Producer, err))
		}
		if err := b.Add(ctx, pipeline.Item{Advisory: a, Origin: origin, CausationID: m.ID}); err != nil {
			return err
		}
		return b.Flush(ctx)
	}
}
