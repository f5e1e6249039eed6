// Command executor runs the executor service against an external NATS and PostgreSQL given by
// PATCHFLEET_* environment variables (see the README).
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
	"github.com/patchfleet/patchfleet/services/executor"
)

func main() {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "json")
	cfg := executor.Config{
		Common:         service.CommonFromEnv(env, executor.DefaultHTTPAddr),
		InstanceID:     env.String("PATCHFLEET_EXECUTOR_INSTANCE", ""),
		Concurrency:    env.Int("PATCHFLEET_EXECUTOR_CONCURRENCY", 64),
		AckWait:        env.Duration("PATCHFLEET_EXECUTOR_ACK_WAIT", 0),
		LeaseTTL:       env.Duration("PATCHFLEET_EXECUTOR_LEASE_TTL", 0),
		SSHKeyFiles:    list(env.String("PATCHFLEET_EXECUTOR_SSH_KEY", "")),
		SSHAgentSocket: env.String("SSH_AUTH_SOCK", ""),
		SSHKnownHosts:  env.String("PATCHFLEET_EXECUTOR_SSH_KNOWN_HOSTS", ""),
		LockTimeout:    env.Duration("PATCHFLEET_EXECUTOR_LOCK_TIMEOUT", 0),
		AptTimeout:     env.Duration("PATCHFLEET_EXECUTOR_APT_TIMEOUT", 0),
		RebootTimeout:  env.Duration("PATCHFLEET_EXECUTOR_REBOOT_TIMEOUT", 0),
		RebootDelay:    env.Duration("PATCHFLEET_EXECUTOR_REBOOT_DELAY", 0),
		MinFreeKB:      int64(env.Int("PATCHFLEET_EXECUTOR_MIN_FREE_KB", 0)),
		DBMaxConns:     env.Int("PATCHFLEET_EXECUTOR_DB_MAX_CONNS", 0),
		// Hook commands are split on white space into argv; no shell, no quoting.
		ProviderProvision: strings.Fields(env.String("PATCHFLEET_EXECUTOR_PROVIDER_PROVISION", "")),
		ProviderSwitch:    strings.Fields(env.String("PATCHFLEET_EXECUTOR_PROVIDER_SWITCH", "")),
		ProviderRetire:    strings.Fields(env.String("PATCHFLEET_EXECUTOR_PROVIDER_RETIRE", "")),
		ProviderTimeout:   env.Duration("PATCHFLEET_EXECUTOR_PROVIDER_TIMEOUT", 0),
		ProvidersFile:     env.String("PATCHFLEET_EXECUTOR_PROVIDERS_FILE", ""),
	}
	if err := errors.Join(env.Err(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "executor: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := executor.Run(ctx, cfg, logger); err != nil {
		logger.Error("executor failed", "err", err)
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
