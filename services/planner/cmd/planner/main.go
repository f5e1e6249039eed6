// Command planner runs the planner service against an external NATS and PostgreSQL given by
// PATCHFLEET_* environment variables (see the README), plus:
//
//	PATCHFLEET_POLICY_FILE     fleet policy YAML (default: the built-in policy)
//	PATCHFLEET_PLANNER_TICK    how often due rollouts are re-evaluated (default 1s)
//	PATCHFLEET_DOCKER_MANIFEST pinned Docker/Weave versions for docker rollouts (YAML)
//	PATCHFLEET_PLANNER_TOKENS       HTTP API bearer tokens, comma-separated "name:secret"
//	PATCHFLEET_PLANNER_TOKENS_FILE  more tokens, one per line
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
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

		DockerManifest: env.String("PATCHFLEET_DOCKER_MANIFEST", ""),
		Tokens:         list(env.Secret("PATCHFLEET_PLANNER_TOKENS")),
		TokensFile:     env.String("PATCHFLEET_PLANNER_TOKENS_FILE", ""),
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

func list(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
