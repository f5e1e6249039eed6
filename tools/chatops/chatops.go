// Package chatops is the ChatOps bot: it follows the event streams on its own durable
// consumer and tells a Slack channel (or any incoming webhook) what happens — advisories
// that expose hosts, approval requests with buttons, one thread per rollout with a progress
// message updated in place, failures, halts, pending reboots and a per-host summary — and
// takes signed slash commands and button clicks from people, turning them into decision
// events or query answers.
//
// State (the thread of each rollout, the messages it updates, the ids of events already
// announced) lives in two JetStream KV buckets. Slack being slow or down delays messages and
// never loses them: a handler that cannot post returns an error and the event comes back
// later, with backoff; nothing else in the system waits for the bot.
package chatops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/slack"
)

// Producer names the bot in the events it publishes.
const Producer = "chatops"

// Config of the bot.
type Config struct {
	Bus      events.BusConfig
	HTTPAddr string // slash commands, interactivity, health and metrics

	// Slack Web API (threads, updates, buttons), or an incoming webhook (posting only).
	SlackAPIURL   string
	SlackToken    string
	Channel       string
	WebhookURL    string
	SigningSecret string

	// Users maps Slack user ids to Patchfleet identities, the names fleet policies list as
	// approvers ("U024BE7LH=alice").
	Users map[string]string

	Consumer      string        // durable consumer name
	ProgressEvery time.Duration // least time between two progress updates for host results
	QueryTimeout  time.Duration
}

// Validate names each wrong setting by its variable.
func (c Config) Validate() error {
	var errs []error
	if err := c.Bus.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("PATCHFLEET_NATS_*: %w", err))
	}
	switch {
	case c.SlackToken == "" && c.WebhookURL == "":
		errs = append(errs, errors.New("PATCHFLEET_SLACK_TOKEN or PATCHFLEET_CHAT_WEBHOOK_URL is required"))
	case c.SlackToken != "" && c.Channel == "":
		errs = append(errs, errors.New("PATCHFLEET_SLACK_CHANNEL is required with PATCHFLEET_SLACK_TOKEN"))
	}
	if c.SlackToken != "" && c.SigningSecret == "" {
		errs = append(errs, errors.New("PATCHFLEET_SLACK_SIGNING_SECRET is required with PATCHFLEET_SLACK_TOKEN (commands and buttons are verified with it)"))
	}
	if c.Consumer == "" {
		errs = append(errs, errors.New("PATCHFLEET_CHATOPS_CONSUMER must not be empty"))
	}
	for id, name := range c.Users {
		if id == "" || name == "" {
			errs = append(errs, fmt.Errorf("PATCHFLEET_CHATOPS_USERS: %q=%q: want slack-user-id=name", id, name))
		}
	}
	return errors.Join(errs...)
}

// ParseUsers reads "U1=alice,U2=bob" (commas or newlines).
func ParseUsers(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		f = strings.TrimSpace(f)
		if f == "" || strings.HasPrefix(f, "#") {
			continue
		}
		id, name, ok := strings.Cut(f, "=")
		id, name = strings.TrimSpace(id), strings.TrimSpace(name)
		if !ok || id == "" || name == "" {
			return nil, fmt.Errorf("%q: want slack-user-id=name", f)
		}
		out[id] = name
	}
	return out, nil
}

// Queries are the query endpoints the bot asks (query.Client implements them).
type Queries interface {
	Rollout(context.Context, query.RolloutRequest) (query.RolloutDetail, error)
	Rollouts(context.Context, query.RolloutsRequest) (query.RolloutsResponse, error)
	Policies(context.Context, query.PoliciesRequest) (query.PoliciesResponse, error)
	Exposure(context.Context, query.ExposureRequest) (query.ExposureResponse, error)
	Host(context.Context, query.HostRequest) (query.HostDetail, error)
}

// Chat posts messages and, where it can, updates them.
type Chat interface {
	Post(context.Context, slack.Message) (slack.Ref, error)
	Update(context.Context, slack.Ref, slack.Message) error // slack.ErrNoUpdate when it cannot
}

// WebAPI is the Chat of Slack's Web API.
type WebAPI struct{ *slack.Client }

func (c WebAPI) Post(ctx context.Context, m slack.Message) (slack.Ref, error) {
	return c.PostMessage(ctx, m)
}

func (c WebAPI) Update(ctx context.Context, ref slack.Ref, m slack.Message) error {
	return c.UpdateMessage(ctx, ref, m)
}

// Webhook is the Chat of an incoming webhook: no threads, no updates.
type Webhook struct{ *slack.Webhook }

func (w Webhook) Post(ctx context.Context, m slack.Message) (slack.Ref, error) {
	return slack.Ref{}, w.Webhook.Post(ctx, m)
}

func (Webhook) Update(context.Context, slack.Ref, slack.Message) error { return slack.ErrNoUpdate }

// Bot is the notifier and the command handler, with everything it needs.
type Bot struct {
	JS            jetstream.JetStream
	Queries       Queries
	Chat          Chat
	Store         *Store
	Channel       string
	SigningSecret []byte
	Users         map[string]string
	Logger        *slog.Logger
	HTTP          *http.Client
	Now           func() time.Time
	ProgressEvery time.Duration
	QueryTimeout  time.Duration
}

// ConsumerConfig is the bot's durable consumer: it starts at the end of the streams (a new
// bot does not replay a year of history into the channel) and keeps retrying an event for
// about a week, so a long Slack outage delays messages without losing them; what still
// fails goes to the DLQ with the reason.
func ConsumerConfig(name string, logger *slog.Logger, metrics *events.Metrics) events.ConsumerConfig {
	return events.ConsumerConfig{
		Name: name, Logger: logger, Metrics: metrics, DeliverNew: true,
		MaxDeliver: 2100,
		Backoff:    events.ExponentialBackoff(time.Second, 5*time.Minute),
	}
}

// Run runs the bot until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	nc, js, err := events.Connect(ctx, cfg.Bus, "patchfleet-chatops", logger)
	if err != nil {
		return err
	}
	defer nc.Drain()
	store, err := OpenStore(ctx, js, cfg.Bus.Replicas)
	if err != nil {
		return err
	}
	var chat Chat = Webhook{&slack.Webhook{URL: cfg.WebhookURL, HTTP: &http.Client{Timeout: 15 * time.Second}}}
	if cfg.SlackToken != "" {
		chat = WebAPI{slack.NewClient(cfg.SlackAPIURL, cfg.SlackToken)}
	}
	srv := ops.New(logger)
	bot := &Bot{JS: js, Queries: query.Client{NC: nc}, Chat: chat, Store: store, Channel: cfg.Channel,
		SigningSecret: []byte(cfg.SigningSecret), Users: cfg.Users, Logger: logger,
		HTTP: &http.Client{Timeout: 10 * time.Second}, ProgressEvery: cfg.ProgressEvery, QueryTimeout: cfg.QueryTimeout}
	bot.defaults()
	srv.Check("nats", events.ReadyCheck(nc))
	srv.Handle("/slack/", bot.Handler())
	cons := events.NewConsumer(js, ConsumerConfig(cfg.Consumer, logger, events.NewMetrics(srv.Registry)))
	bot.Register(cons)

	// If either half fails, the other stops too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx, cfg.HTTPAddr) }()
	go func() { errc <- cons.Run(ctx) }()
	logger.Info("chatops bot running", "http", cfg.HTTPAddr, "consumer", cfg.Consumer, "webhook_only", cfg.SlackToken == "")
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

func (b *Bot) defaults() {
	if b.Logger == nil {
		b.Logger = slog.New(slog.DiscardHandler)
	}
	if b.HTTP == nil {
		b.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if b.QueryTimeout <= 0 {
		b.QueryTimeout = 5 * time.Second
	}
	if b.Users == nil {
		b.Users = map[string]string{}
	}
}
