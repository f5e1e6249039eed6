// Command inventory runs the inventory service against an external NATS and PostgreSQL given by
// PATCHFLEET_* environment variables (see the README). Its own:
//
//	PATCHFLEET_INVENTORY_TOKENS            HTTP API bearer tokens, comma-separated "name:secret"
//	PATCHFLEET_INVENTORY_TOKENS_FILE       more tokens, one per line
//	PATCHFLEET_INVENTORY_HOSTS_FILE        YAML hosts file imported at start
//	PATCHFLEET_INVENTORY_SCAN_INTERVAL     6h     PATCHFLEET_INVENTORY_SCAN_JITTER  interval/10
//	PATCHFLEET_INVENTORY_SCAN_CONCURRENCY  64     PATCHFLEET_INVENTORY_SCAN_TIMEOUT 2m
//	PATCHFLEET_INVENTORY_SSH_KEYS          client private key files, comma-separated
//	SSH_AUTH_SOCK                          an ssh-agent to use as well
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
	"github.com/patchfleet/patchfleet/services/inventory"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	cfg := inventory.Config{
		Common:          service.CommonFromEnv(env, inventory.DefaultHTTPAddr),
		Tokens:          list(env.Secret("PATCHFLEET_INVENTORY_TOKENS")),
		TokensFile:      env.String("PATCHFLEET_INVENTORY_TOKENS_FILE", ""),
		HostsFile:       env.String("PATCHFLEET_INVENTORY_HOSTS_FILE", ""),
		ScanInterval:    env.Duration("PATCHFLEET_INVENTORY_SCAN_INTERVAL", 0),
		ScanJitter:      env.Duration("PATCHFLEET_INVENTORY_SCAN_JITTER", 0),
		ScanConcurrency: env.Int("PATCHFLEET_INVENTORY_SCAN_CONCURRENCY", 0),
		ScanTimeout:     env.Duration("PATCHFLEET_INVENTORY_SCAN_TIMEOUT", 0),
		SSHKeyFiles:     list(env.String("PATCHFLEET_INVENTORY_SSH_KEYS", "")),
		SSHAgentSocket:  env.String("SSH_AUTH_SOCK", ""),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "inventory: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := inventory.Run(ctx, cfg, logger); err != nil {
		logger.Error("inventory failed", "err", err)
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
