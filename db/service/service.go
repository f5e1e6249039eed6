// Package service runs one Patchfleet service process: it connects the bus and the
// database, migrates the service's schema, relays its outbox, serves /healthz, /readyz and
// /metrics, runs the service's workers, and on shutdown stops them in the right order —
// consumers drained, outbox flushed, NATS drained, the pool closed last.
//
// It lives in the db module because that is the module that sees both the bus and the
// database; every service's Run is a few lines on top of it.
package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
)

// Config is what every service needs to run.
type Config struct {
	Common
	Name       string // service name: consumer names, logs, NATS connection name
	Schema     string
	Migrations fs.FS
}

// Validate names every missing or wrong field.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("service name is required"))
	}
	if err := db.ValidSchema(c.Schema); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, c.Common.Validate())...)
}

// Service is a started service: its connections, and the workers it will run.
type Service struct {
	Name    string
	Logger  *slog.Logger
	NC      *nats.Conn
	JS      jetstream.JetStream
	Pool    *pgxpool.Pool
	Ops     *ops.Server
	Metrics *events.Metrics

	cfg       Config
	relay     *outbox.Relay
	consumers []*events.Consumer
	workers   []worker
}

type worker struct {
	name string
	run  func(context.Context) error
}

// Start connects and migrates. Nothing runs until Run.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s config: %w", cfg.Name, err)
	}
	if cfg.Bus.InboxPrefix == "" {
		// The service's NATS user in deployments/nats bears its name and reads replies there only.
		cfg.Bus.InboxPrefix = events.UserInbox(cfg.Name)
	}
	logger = logger.With("service", cfg.Name)
	s := &Service{Name: cfg.Name, Logger: logger, cfg: cfg, Ops: ops.New(logger)}
	s.Metrics = events.NewMetrics(s.Ops.Registry)

	var err error
	if s.Pool, err = db.Connect(ctx, cfg.DatabaseURL, cfg.Schema); err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, s.Pool, cfg.Schema, cfg.Migrations); err != nil {
		s.Pool.Close()
		return nil, err
	}
	if s.NC, s.JS, err = events.Connect(ctx, cfg.Bus, "patchfleet-"+cfg.Name, logger); err != nil {
		s.Pool.Close()
		return nil, err
	}
	if s.relay, err = outbox.NewRelay(s.Pool, s.JS, outbox.Config{Registerer: s.Ops.Registry}, logger); err != nil {
		s.NC.Close()
		s.Pool.Close()
		return nil, err
	}
	s.Ops.Check("nats", events.ReadyCheck(s.NC))
	s.Ops.Check("postgres", func(ctx context.Context) error { return s.Pool.Ping(ctx) })
	return s, nil
}

// Consumer returns a durable consumer named after the service (plus suffix, if any) that
// Run will run; register its handlers with events.On before calling Run.
func (s *Service) Consumer(suffix string, cfg events.ConsumerConfig) *events.Consumer {
	cfg.Name = s.Name
	if suffix != "" {
		cfg.Name += "-" + suffix
	}
	if cfg.Logger == nil {
		cfg.Logger = s.Logger
	}
	if cfg.Metrics == nil {
		cfg.Metrics = s.Metrics
	}
	c := events.NewConsumer(s.JS, cfg)
	s.consumers = append(s.consumers, c)
	return c
}

// Go adds a worker that Run runs until its context ends (a scheduler, a poller, an API).
func (s *Service) Go(name string, run func(context.Context) error) {
	s.workers = append(s.workers, worker{name, run})
}

// Run runs everything until ctx ends or a part fails, then shuts down in order. It returns
// the first failure, or nil after a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("%s %s: %w", s.Name, what, err))
		}
	}

	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		fail("outbox relay", s.relay.Run(relayCtx))
	}()
	var opsDone sync.WaitGroup
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	opsDone.Go(func() { fail("http", s.Ops.Serve(opsCtx, s.cfg.HTTPAddr)) })

	var work sync.WaitGroup
	for _, c := range s.consumers {
		work.Go(func() { fail("consumer", c.Run(ctx)) })
	}
	for _, w := range s.workers {
		work.Go(func() { fail(w.name, w.run(ctx)) })
	}
	if addr, err := s.Ops.Addr(ctx); err == nil {
		s.Logger.Info("service started", "http", addr.String())
	}

	<-ctx.Done()
	s.Logger.Info("service stopping")
	work.Wait() // consumers drained, workers returned

	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 10*time.Second)
	if err := s.relay.Flush(flushCtx); err != nil {
		s.Logger.Warn("outbox not fully flushed; the next start publishes the rest", "err", err)
	}
	cancelFlush()
	stopRelay()
	<-relayDone
	stopOps()
	opsDone.Wait()
	if err := s.NC.Drain(); err != nil {
		s.Logger.Warn("drain nats", "err", err)
	}
	s.Pool.Close()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	s.Logger.Info("service stopped")
	return nil
}
