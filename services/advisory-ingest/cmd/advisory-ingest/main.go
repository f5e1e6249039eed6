// Command advisory-ingest runs the advisory-ingest service against an external NATS and PostgreSQL given by
// PATCHFLEET_* environment variables (see the README).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/services/advisory-ingest"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	cfg := ingest.Config{Common: service.CommonFromEnv(env, ingest.DefaultHTTPAddr)}
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
