// Command planner runs the planner service against an external NATS and PostgreSQL given by
// PATCHFLEET_* environment variables (see the README), plus:
//
//	PATCHFLEET_POLICY_FILE     fleet policy YAML (default: the built-in policy)
//	PATCHFLEET_PLANNER_TICK    how often due rollouts are re-evaluated (default 1s)
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
	"github.com/patchfleet/patchfleet/services/planner"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	cfg := planner.Config{
		Common:     service.CommonFromEnv(env, planner.DefaultHTTPAddr),
		PolicyFile: env.String("PATCHFLEET_POLICY_FILE", ""),
		Tick:       env.Duration("PATCHFLEET_PLANNER_TICK", planner.DefaultTick),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "planner: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := planner.Run(ctx, cfg, logger); err != nil {
		logger.Error("planner failed", "err", err)
		os.Exit(1)
	}
}
