// Command patchfleetd runs the whole of Patchfleet in one process (make run): embedded NATS,
// a local PostgreSQL under the data directory, and all four services.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/tools/allinone"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "text")
	def := allinone.Default()
	cfg := allinone.Config{
		DataDir:       env.String("PATCHFLEET_DATA_DIR", def.DataDir),
		Host:          env.String("PATCHFLEET_HOST", def.Host),
		NATSPort:      env.Int("PATCHFLEET_NATS_PORT", def.NATSPort),
		PGPort:        env.Int("PATCHFLEET_PG_PORT", def.PGPort),
		InventoryPort: env.Int("PATCHFLEET_INVENTORY_PORT", def.InventoryPort),
		IngestPort:    env.Int("PATCHFLEET_INGEST_PORT", def.IngestPort),
		PlannerPort:   env.Int("PATCHFLEET_PLANNER_PORT", def.PlannerPort),
		ExecutorPort:  env.Int("PATCHFLEET_EXECUTOR_PORT", def.ExecutorPort),
		ConsolePort:   env.Int("PATCHFLEET_CONSOLE_PORT", def.ConsolePort),
		ConsoleTokens: env.Secret("PATCHFLEET_CONSOLE_TOKENS"),
		SSHKeyFiles:   list(env.String("PATCHFLEET_SSH_KEYS", "")),
		// The agent socket is read from the environment only here, in main.
		SSHAgentSocket: env.String("SSH_AUTH_SOCK", ""),
		PolicyFile:     env.String("PATCHFLEET_POLICY_FILE", ""),
		Feeds:          list(env.String("PATCHFLEET_FEEDS", "")),
		ProvidersFile:  env.String("PATCHFLEET_EXECUTOR_PROVIDERS_FILE", ""),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "patchfleetd: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := allinone.Run(ctx, cfg, logger, func(a allinone.Addrs) {
		fmt.Printf("\nPatchfleet is running (Ctrl-C stops it).\n"+
			"  inventory endpoint  %s\n  advisory-ingest     %s\n  planner             %s\n  executor            %s\n"+
			"  NATS                %s\n  data                %s\n  API tokens          %s (Authorization: Bearer <secret>)\n\n",
			a.Inventory, a.Ingest, a.Planner, a.Executor, a.NATS, cfg.DataDir, a.APITokens)
		if a.Console != "" {
			fmt.Printf("  web console         %s", a.Console)
			if a.ConsoleTokens != "" {
				fmt.Printf("  (sign in with a token from %s)", a.ConsoleTokens)
			}
			fmt.Print("\n\n")
		}
	})
	if err != nil {
		logger.Error("patchfleetd failed", "err", err)
		os.Exit(1)
	}
}

// list splits a comma-separated variable into its non-empty items.
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
