// Command console serves Patchfleet's web console. Configuration comes from the environment;
// secrets also from files (NAME_FILE):
//
//	PATCHFLEET_NATS_URL, PATCHFLEET_NATS_CREDS, PATCHFLEET_NATS_USER, PATCHFLEET_NATS_PASSWORD,
//	PATCHFLEET_NATS_NKEY, PATCHFLEET_NATS_CA, PATCHFLEET_NATS_CERT, PATCHFLEET_NATS_KEY
//	PATCHFLEET_NATS_INBOX              reply subject prefix (default _INBOX_console, the console user's)
//	PATCHFLEET_CONSOLE_ADDR            pages, /healthz, /metrics (default :8090)
//	PATCHFLEET_CONSOLE_TOKENS          sign-in tokens: "alice=<token>,bob=<token>" (or _FILE, one per line)
//	PATCHFLEET_CONSOLE_SECURE_COOKIES  true when TLS is terminated in front of the console
//	PATCHFLEET_CONSOLE_EXECUTOR_URL    the executor's HTTP server, for stored job logs (optional)
//	PATCHFLEET_CONSOLE_SESSION_TTL     how long a sign-in lasts (default 12h)
//	PATCHFLEET_CONSOLE_STALE_AFTER     a host not scanned for this long is listed (default 24h)
//	PATCHFLEET_CONSOLE_HISTORY         how far back host histories are read (default 720h)
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
	"github.com/patchfleet/patchfleet/tools/console"
	"github.com/patchfleet/patchfleet/tools/console/auth"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	tokens, terr := auth.ParseTokens(env.Secret("PATCHFLEET_CONSOLE_TOKENS"))
	if terr != nil {
		terr = fmt.Errorf("PATCHFLEET_CONSOLE_TOKENS: %w", terr)
	}
	cfg := console.Config{
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
			InboxPrefix: env.String("PATCHFLEET_NATS_INBOX", events.UserInbox("console")),
		},
		HTTPAddr:      env.String("PATCHFLEET_CONSOLE_ADDR", ":8090"),
		Tokens:        tokens,
		SecureCookies: env.Bool("PATCHFLEET_CONSOLE_SECURE_COOKIES", false),
		ExecutorURL:   env.String("PATCHFLEET_CONSOLE_EXECUTOR_URL", ""),
		SessionTTL:    env.Duration("PATCHFLEET_CONSOLE_SESSION_TTL", 12*time.Hour),
		StaleAfter:    env.Duration("PATCHFLEET_CONSOLE_STALE_AFTER", 24*time.Hour),
		History:       env.Duration("PATCHFLEET_CONSOLE_HISTORY", 30*24*time.Hour),
	}
	if err := errors.Join(env.Err(), terr, cfg.Bus.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "console: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := console.Run(ctx, cfg, logger); err != nil {
		logger.Error("console failed", "err", err)
		os.Exit(1)
	}
}
