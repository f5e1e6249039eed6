// Command chatops runs the ChatOps bot. Configuration comes from the environment; secrets
// also from files (NAME_FILE):
//
//	PATCHFLEET_NATS_URL, PATCHFLEET_NATS_CREDS, PATCHFLEET_NATS_USER, PATCHFLEET_NATS_PASSWORD,
//	PATCHFLEET_NATS_NKEY, PATCHFLEET_NATS_CA, PATCHFLEET_NATS_CERT, PATCHFLEET_NATS_KEY
//	PATCHFLEET_NATS_INBOX             reply subject prefix (default _INBOX_chatops, the chatops user's)
//	PATCHFLEET_CHATOPS_ADDR           commands, buttons, /healthz, /metrics (default :8090)
//	PATCHFLEET_SLACK_TOKEN            bot token (xoxb-…), for threads, updates and buttons
//	PATCHFLEET_SLACK_SIGNING_SECRET   verifies slash commands and button clicks
//	PATCHFLEET_SLACK_CHANNEL          channel id to post in
//	PATCHFLEET_SLACK_API_URL          default https://slack.com/api
//	PATCHFLEET_CHAT_WEBHOOK_URL       an incoming webhook instead of the Web API (posting only)
//	PATCHFLEET_CHATOPS_USERS          Slack user id → approver name: "U024BE7LH=alice,U0G9QF9C6=bob"
//	PATCHFLEET_CHATOPS_CONSUMER       durable consumer name (default chatops)
//	PATCHFLEET_CHATOPS_PROGRESS_EVERY least time between progress updates (default 5s)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/tools/chatops"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	users, uerr := chatops.ParseUsers(env.Secret("PATCHFLEET_CHATOPS_USERS"))
	if uerr != nil {
		uerr = fmt.Errorf("PATCHFLEET_CHATOPS_USERS: %w", uerr)
	}
	cfg := chatops.Config{
		Bus: events.BusConfig{
			URL:         env.String("PATCHFLEET_NATS_URL", "nats://127.0.0.1:4222"),
			CredsFile:   env.String("PATCHFLEET_NATS_CREDS", ""),
			User:        env.String("PATCHFLEET_NATS_USER", ""),
			Password:    env.Secret("PATCHFLEET_NATS_PASSWORD"),
			NKeyFile:    env.String("PATCHFLEET_NATS_NKEY", ""),
			CAFile:      env.String("PATCHFLEET_NATS_CA", ""),
			CertFile:    env.String("PATCHFLEET_NATS_CERT", ""),
			KeyFile:     env.String("PATCHFLEET_NATS_KEY", ""),
			Replicas:    env.Int("PATCHFLEET_NATS_REPLICAS", 1),
			InboxPrefix: env.String("PATCHFLEET_NATS_INBOX", events.UserInbox("chatops")),
		},
		HTTPAddr:      env.String("PATCHFLEET_CHATOPS_ADDR", ":8090"),
		SlackAPIURL:   env.String("PATCHFLEET_SLACK_API_URL", "https://slack.com/api"),
		SlackToken:    env.Secret("PATCHFLEET_SLACK_TOKEN"),
		SigningSecret: env.Secret("PATCHFLEET_SLACK_SIGNING_SECRET"),
		Channel:       env.String("PATCHFLEET_SLACK_CHANNEL", ""),
		WebhookURL:    env.Secret("PATCHFLEET_CHAT_WEBHOOK_URL"),
		Users:         users,
		Consumer:      env.String("PATCHFLEET_CHATOPS_CONSUMER", "chatops"),
		ProgressEvery: env.Duration("PATCHFLEET_CHATOPS_PROGRESS_EVERY", 5*time.Second),
		QueryTimeout:  env.Duration("PATCHFLEET_CHATOPS_QUERY_TIMEOUT", 5*time.Second),
	}
	if err := errors.Join(env.Err(), uerr, cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "chatops: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chatops.Run(ctx, cfg, logger); err != nil {
		logger.Error("chatops failed", "err", err)
		os.Exit(1)
	}
}
