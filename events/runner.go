package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Meta is what a handler knows about the event besides its payload.
type Meta struct {
	ID            string
	Type          string
	SchemaVersion int
	Time          time.Time
	Producer      string
	CorrelationID string
	CausationID   string

	Subject      string
	Stream       string
	Sequence     uint64
	NumDelivered uint64
}

// HandlerFunc handles one event. nil acknowledges it; an error marked Permanent dead-letters
// it; any other error redelivers it later, with backoff, up to the consumer's MaxDeliver.
type HandlerFunc[E Event] func(ctx context.Context, m Meta, e E) error

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as one that no retry can fix (an unknown id, an impossible request).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent or is ErrInvalid.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, ErrInvalid)
}

// ConsumerConfig configures a durable consumer. Name is the durable name on every stream the
// consumer reads.
type ConsumerConfig struct {
	Name        string
	Logger      *slog.Logger
	MaxDeliver  int           // attempts before an event is dead-lettered; default 8
	AckWait     time.Duration // redelivery after a silent consumer; default 30s (heartbeats extend it)
	Backoff     func(delivered uint64) time.Duration
	Concurrency int // handlers running at once; default 1, which keeps stream order
	// DeliverNew starts a new consumer at the end of the streams instead of their beginning.
	DeliverNew bool
	// ShutdownGrace is how long handlers in flight may run on after Run's context ends.
	ShutdownGrace time.Duration
	Metrics       *Metrics
}

func (c *ConsumerConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 8
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Backoff == nil {
		c.Backoff = ExponentialBackoff(500*time.Millisecond, time.Minute)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
}

// ExponentialBackoff doubles the delay from base with every delivery, up to max.
func ExponentialBackoff(base, max time.Duration) func(uint64) time.Duration {
	return func(delivered uint64) time.Duration {
		d := base
		for i := uint64(1); i < delivered && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}

type handler func(ctx context.Context, m Meta, env Envelope) error

// Consumer runs typed handlers on durable JetStream consumers: one per stream that carries an
// event type it handles.
type Consumer struct {
	js       jetstream.JetStream
	cfg      ConsumerConfig
	handlers map[specKey]handler
	streams  map[string][]string // stream -> subjects
}

// NewConsumer returns a consumer; register handlers with On, then call Run.
func NewConsumer(js jetstream.JetStream, cfg ConsumerConfig) *Consumer {
	cfg.defaults()
	return &Consumer{js: js, cfg: cfg, handlers: map[specKey]handler{}, streams: map[string][]string{}}
}

// On registers the handler of one event type.
func On[E Event](c *Consumer, h HandlerFunc[E]) {
	spec := SpecOf[E]()
	c.handlers[specKey{spec.Type, spec.Version}] = func(ctx context.Context, m Meta, env Envelope) error {
		var e E
		if err := DecodeData(env, any(&e).(Event)); err != nil {
			return err
		}
		return h(ctx, m, e)
	}
	c.streams[spec.Stream] = append(c.streams[spec.Stream], spec.Subject)
}

// Run consumes until ctx ends, then drains: it stops fetching, lets the handlers in flight
// finish (within ShutdownGrace) and returns.
func (c *Consumer) Run(ctx context.Context) error {
	if len(c.handlers) == 0 {
		return fmt.Errorf("consumer %s: no handlers", c.cfg.Name)
	}
	// Handlers outlive ctx by the grace period so in-flight work can finish.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.ShutdownGrace, cancel) })
	defer stop()

	var inflight sync.WaitGroup
	// Once shutdown starts, acks wait for the server's confirmation: when Run returns, the
	// events it handled are acked, not merely on their way.
	var draining atomic.Bool
	sem := make(chan struct{}, c.cfg.Concurrency)
	var ccs []jetstream.ConsumeContext
	for _, stream := range slices.Sorted(maps.Keys(c.streams)) {
		cons, err := c.createConsumer(ctx, stream)
		if err != nil {
			for _, cc := range ccs {
				cc.Stop()
			}
			return nil // ctx ended while NATS was away: nothing to drain
		}
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			sem <- struct{}{}
			inflight.Add(1)
			go func() {
				defer func() { <-sem; inflight.Done() }()
				c.process(hctx, stream, msg, &draining)
			}()
		},
			jetstream.PullMaxMessages(c.cfg.Concurrency*2),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				c.cfg.Logger.Debug("consume", "consumer", c.cfg.Name, "stream", stream, "err", err)
			}))
		if err != nil {
			for _, cc := range ccs {
				cc.Stop()
			}
			return fmt.Errorf("consume %s on %s: %w", c.cfg.Name, stream, err)
		}
		ccs = append(ccs, cc)
	}
	<-ctx.Done()
	draining.Store(true)
	for _, cc := range ccs {
		cc.Drain()
	}
	for _, cc := range ccs {
		<-cc.Closed()
	}
	inflight.Wait()
	return nil
}

// createConsumer creates or updates the durable consumer on stream, retrying with backoff
// while NATS cannot answer (restarting, electing a leader): a service that starts during an
// outage waits for the bus instead of exiting. It fails only when ctx ends.
func (c *Consumer) createConsumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	backoff := ExponentialBackoff(250*time.Millisecond, 10*time.Second)
	for attempt := uint64(1); ; attempt++ {
		cons, err := c.js.CreateOrUpdateConsumer(ctx, stream, c.consumerConfig(c.streams[stream]))
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := backoff(attempt)
		c.cfg.Logger.Warn("create consumer; retrying", "consumer", c.cfg.Name, "stream", stream, "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *Consumer) consumerConfig(subjects []string) jetstream.ConsumerConfig {
	deliver := jetstream.DeliverAllPolicy
	if c.cfg.DeliverNew {
		deliver = jetstream.DeliverNewPolicy
	}
	return jetstream.ConsumerConfig{
		Durable:        c.cfg.Name,
		FilterSubjects: slices.Sorted(slices.Values(subjects)),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		// One delivery more than the runner allows, so a message whose handler never returned
		// (the process died each time) still comes back once to be dead-lettered.
		MaxDeliver:    c.cfg.MaxDeliver + 1,
		MaxAckPending: max(c.cfg.Concurrency*4, 64),
		DeliverPolicy: deliver,
	}
}

func (c *Consumer) process(ctx context.Context, stream string, msg jetstream.Msg, draining *atomic.Bool) {
	start := time.Now()
	log := c.cfg.Logger.With("consumer", c.cfg.Name, "subject", msg.Subject())
	md, err := msg.Metadata()
	if err != nil {
		log.Error("event without metadata; terminated", "err", err)
		_ = msg.Term()
		return
	}
	m := Meta{Subject: msg.Subject(), Stream: stream, Sequence: md.Sequence.Stream, NumDelivered: md.NumDelivered}
	log = log.With("seq", m.Sequence, "delivered", m.NumDelivered)

	var outcome string
	err = c.handle(ctx, msg, &m)
	switch {
	case err == nil:
		outcome = "ack"
		if draining.Load() {
			err = msg.DoubleAck(ctx)
		} else {
			err = msg.Ack()
		}
		log.Debug("event handled", "type", m.Type, "id", m.ID, "correlation_id", m.CorrelationID)
	case IsPermanent(err) || m.NumDelivered >= uint64(c.cfg.MaxDeliver):
		outcome = "dead_letter"
		log.Error("event dead-lettered", "type", m.Type, "id", m.ID, "correlation_id", m.CorrelationID, "reason", err)
		if dlErr := c.deadLetter(ctx, msg, m, err); dlErr != nil {
			// Keep the event rather than lose it: it comes back and is dead-lettered later.
			log.Error("dead-letter publish failed; event kept", "err", dlErr)
			outcome = "nak"
			err = msg.NakWithDelay(c.cfg.Backoff(m.NumDelivered))
			break
		}
		err = msg.TermWithReason(truncate(err.Error(), 200))
	default:
		outcome = "nak"
		delay := c.cfg.Backoff(m.NumDelivered)
		log.Warn("event failed; retrying", "type", m.Type, "id", m.ID, "correlation_id", m.CorrelationID, "err", err, "retry_in", delay)
		err = msg.NakWithDelay(delay)
	}
	if err != nil {
		log.Warn("acknowledge event", "outcome", outcome, "err", err)
	}
	c.cfg.Metrics.observe(c.cfg.Name, m.Type, outcome, time.Since(start))
}

// handle decodes and runs the handler, keeping the message alive with in-progress heartbeats.
func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg, m *Meta) error {
	if m.NumDelivered > uint64(c.cfg.MaxDeliver) {
		return Permanent(fmt.Errorf("delivered %d times without an outcome (handler crashed or hung)", m.NumDelivered))
	}
	env, err := DecodeEnvelope(msg.Data())
	if err != nil {
		return err
	}
	m.ID, m.Type, m.SchemaVersion, m.Time = env.ID, env.Type, env.SchemaVersion, env.Time
	m.Producer, m.CorrelationID, m.CausationID = env.Producer, env.CorrelationID, env.CausationID
	h, ok := c.handlers[specKey{env.Type, env.SchemaVersion}]
	if !ok {
		return fmt.Errorf("%w: no handler for %s v%d on %s", ErrInvalid, env.Type, env.SchemaVersion, m.Subject)
	}

	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(c.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return h(ctx, *m, env)
}

// DeadLetter is what the DLQ stream holds for an event a consumer gave up on.
type DeadLetter struct {
	Consumer   string    `json:"consumer"`
	Stream     string    `json:"stream"`
	Subject    string    `json:"subject"`
	Sequence   uint64    `json:"sequence"`
	Deliveries uint64    `json:"deliveries"`
	EventID    string    `json:"event_id,omitempty"`
	EventType  string    `json:"event_type,omitempty"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
	Data       []byte    `json:"data"` // the message as received
}

func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, m Meta, reason error) error {
	body, err := json.Marshal(DeadLetter{
		Consumer: c.cfg.Name, Stream: m.Stream, Subject: m.Subject, Sequence: m.Sequence,
		Deliveries: m.NumDelivered, EventID: m.ID, EventType: m.Type,
		Reason: reason.Error(), Time: time.Now().UTC(), Data: msg.Data(),
	})
	if err != nil {
		return err
	}
	out := nats.NewMsg(SubjectDLQ + "." + c.cfg.Name)
	out.Data = body
	out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%s:%d", c.cfg.Name, m.Stream, m.Sequence))
	_, err = c.js.PublishMsg(ctx, out)
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Metrics counts handled events per consumer, type and outcome (ack, nak, dead_letter).
type Metrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the runner's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchfleet_events_handled_total", Help: "Events handled, by consumer, type and outcome.",
		}, []string{"consumer", "type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchfleet_event_handler_seconds", Help: "Time spent handling an event.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"consumer", "type"}),
	}
	reg.MustRegister(m.handled, m.duration)
	return m
}

func (m *Metrics) observe(consumer, typ, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.handled.WithLabelValues(consumer, typ, outcome).Inc()
	m.duration.WithLabelValues(consumer, typ).Observe(d.Seconds())
}
