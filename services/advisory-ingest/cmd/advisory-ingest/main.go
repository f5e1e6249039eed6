// Command advisory-ingest runs the advisory-ingest service against an external NATS and PostgreSQL given by
// PATCHFLEET_* environment variables (see the README), and these of its own:
//
//	PATCHFLEET_INGEST_FEEDS          feeds to read: paths (file, directory, zip dump) or
//	                                 http(s) URLs, comma-separated; none by default
//	PATCHFLEET_INGEST_FEED_INTERVAL  between reads of each feed; default 1h
//	PATCHFLEET_INGEST_FEED_FORMAT    osv, debian-tracker, ubuntu-notices, debian-dsa-list;
//	                                 default: detected per document
//	PATCHFLEET_INGEST_BATCH_SIZE     records per lookup and transaction; default 500
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/services/advisory-ingest"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	cfg := ingest.Config{
		Common:       service.CommonFromEnv(env, ingest.DefaultHTTPAddr),
		Feeds:        list(env.String("PATCHFLEET_INGEST_FEEDS", "")),
		FeedInterval: env.Duration("PATCHFLEET_INGEST_FEED_INTERVAL", time.Hour),
		FeedFormat:   env.String("PATCHFLEET_INGEST_FEED_FORMAT", ""),
		BatchSize:    env.Int("PATCHFLEET_INGEST_BATCH_SIZE", 500),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "advisory-ingest: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := ingest.Run(ctx, cfg, logger); err != nil {
		logger.Error("advisory-ingest failed", "err", err)
		os.Exit(1)
	}
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
