// Package allinone runs the whole of Patchfleet in one process, for a laptop or a small
// fleet: an embedded NATS JetStream server (file storage, listening on loopback so the nats
// CLI and external feed publishers can connect), a local PostgreSQL cluster it provisions
// under the data directory, the four services, each on its own HTTP port, and the web
// console.
//
// The services are the same code the separate binaries run; they reach NATS and PostgreSQL
// through URLs, exactly as they would on a cluster.
package allinone

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/patchfleet/patchfleet/db/pglocal"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/services/advisory-ingest"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/services/planner"
	"github.com/patchfleet/patchfleet/tools/console"
	"github.com/patchfleet/patchfleet/tools/console/auth"
)

// Config of the single-process system.
type Config struct {
	DataDir  string // NATS store and PostgreSQL cluster live here; state survives restarts
	Host     string // loopback by default
	NATSPort int
	PGPort   int
	// HTTP ports of the services.
	InventoryPort, IngestPort, PlannerPort, ExecutorPort int
	// ConsolePort serves the web console; 0 runs no console.
	ConsolePort int
	// ConsoleTokens are the console's sign-in tokens ("name=token" lines); when empty, a
	// token for "operator" is generated once into <DataDir>/console-tokens.
	ConsoleTokens string

	// SSHKeyFiles are the private keys the inventory scans and the executor patches with;
	// SSHAgentSocket an ssh-agent. Without either, hosts are registered and reported on but
	// not scanned or patched.
	SSHKeyFiles    []string
	SSHAgentSocket string
	// PolicyFile is the planner's fleet policy; empty: the built-in default policy.
	PolicyFile string
	// Feeds are advisory feeds advisory-ingest reads or polls (files, directories, OSV zip
	// dumps, URLs).
	Feeds []string
	// ProvidersFile gives fleets with strategy replace their provider hooks (the executor's
	// PATCHFLEET_EXECUTOR_PROVIDERS_FILE); empty: replace jobs fail saying so.
	ProvidersFile string
}

// Default is the configuration `make run` uses.
func Default() Config {
	return Config{DataDir: ".data", Host: "127.0.0.1", NATSPort: 4222, PGPort: 55432,
		InventoryPort: 8080, IngestPort: 8081, PlannerPort: 8082, ExecutorPort: 8083, ConsolePort: 8090}
}

// Validate names each wrong setting.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("PATCHFLEET_DATA_DIR is required"))
	}
	if net.ParseIP(c.Host) == nil {
		errs = append(errs, fmt.Errorf("PATCHFLEET_HOST=%q: not an IP address", c.Host))
	}
	ports := map[string]int{"PATCHFLEET_NATS_PORT": c.NATSPort, "PATCHFLEET_PG_PORT": c.PGPort,
		"PATCHFLEET_INVENTORY_PORT": c.InventoryPort, "PATCHFLEET_INGEST_PORT": c.IngestPort,
		"PATCHFLEET_PLANNER_PORT": c.PlannerPort, "PATCHFLEET_EXECUTOR_PORT": c.ExecutorPort}
	for name, p := range ports {
		if p <= 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s=%d: not a TCP port", name, p))
		}
	}
	if c.ConsolePort < 0 || c.ConsolePort > 65535 {
		errs = append(errs, fmt.Errorf("PATCHFLEET_CONSOLE_PORT=%d: not a TCP port", c.ConsolePort))
	}
	return errors.Join(errs...)
}

// Addrs are where the running system can be reached.
type Addrs struct {
	NATS                                 string
	Inventory, Ingest, Planner, Executor string // http://host:port
	Console                              string // empty when no console runs
	ConsoleTokens                        string // where the console's tokens are, when generated
	APITokens                            string // the inventory's and planner's bearer tokens
}

// Run starts everything, calls started with the addresses once every service runs, and
// blocks until ctx ends; then it stops the services, NATS and PostgreSQL, in that order.
func Run(ctx context.Context, cfg Config, logger *slog.Logger, started func(Addrs)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ns, err := embedded.Start(embedded.Config{StoreDir: filepath.Join(cfg.DataDir, "nats"), Host: cfg.Host, Port: cfg.NATSPort})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	logger.Info("nats started", "url", ns.ClientURL())

	pg, err := pglocal.Open(ctx, filepath.Join(cfg.DataDir, "postgres"), cfg.PGPort, logger.With("component", "postgres"))
	if err != nil {
		return err
	}
	defer func() {
		if err := pg.Stop(); err != nil {
			logger.Warn("stop postgresql", "err", err)
		}
	}()
	if err := pg.CreateDatabase(ctx, "patchfleet"); err != nil {
		return err
	}

	common := func(port int) service.Common {
		return service.Common{
			Bus:         events.BusConfig{URL: ns.ClientURL(), Replicas: 1},
			DatabaseURL: pg.URL("patchfleet"),
			HTTPAddr:    net.JoinHostPort(cfg.Host, strconv.Itoa(port)),
		}
	}
	url := func(port int) string { return "http://" + net.JoinHostPort(cfg.Host, strconv.Itoa(port)) }
	apiTokens, err := apiTokenFile(filepath.Join(cfg.DataDir, "api-tokens"))
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	runs := []struct {
		name string
		run  func(context.Context) error
	}{
		{inventory.Name, func(ctx context.Context) error {
			return inventory.Run(ctx, inventory.Config{Common: common(cfg.InventoryPort), TokensFile: apiTokens,
				SSHKeyFiles: cfg.SSHKeyFiles, SSHAgentSocket: cfg.SSHAgentSocket}, logger)
		}},
		{ingest.Name, func(ctx context.Context) error {
			return ingest.Run(ctx, ingest.Config{Common: common(cfg.IngestPort), Feeds: cfg.Feeds}, logger)
		}},
		{planner.Name, func(ctx context.Context) error {
			return planner.Run(ctx, planner.Config{Common: common(cfg.PlannerPort), PolicyFile: cfg.PolicyFile, TokensFile: apiTokens}, logger)
		}},
		{executor.Name, func(ctx context.Context) error {
			return executor.Run(ctx, executor.Config{Common: common(cfg.ExecutorPort),
				SSHKeyFiles: cfg.SSHKeyFiles, SSHAgentSocket: cfg.SSHAgentSocket, ProvidersFile: cfg.ProvidersFile}, logger)
		}},
	}
	var consoleAddrs Addrs
	if cfg.ConsolePort != 0 {
		tokens, where, err := consoleTokens(cfg)
		if err != nil {
			return err
		}
		consoleAddrs.Console, consoleAddrs.ConsoleTokens = url(cfg.ConsolePort), where
		runs = append(runs, struct {
			name string
			run  func(context.Context) error
		}{console.Producer, func(ctx context.Context) error {
			return console.Run(ctx, console.Config{Bus: events.BusConfig{URL: ns.ClientURL(), Replicas: 1},
				HTTPAddr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.ConsolePort)), Tokens: tokens, ExecutorURL: url(cfg.ExecutorPort)}, logger)
		}})
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			if err := r.run(ctx); err != nil {
				cancel(fmt.Errorf("%s: %w", r.name, err))
			}
		})
	}
	if started != nil {
		started(Addrs{NATS: ns.ClientURL(), APITokens: apiTokens, Inventory: url(cfg.InventoryPort), Ingest: url(cfg.IngestPort),
			Planner: url(cfg.PlannerPort), Executor: url(cfg.ExecutorPort), Console: consoleAddrs.Console, ConsoleTokens: consoleAddrs.ConsoleTokens})
	}
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// consoleTokens returns the configured tokens, or those of the generated token file and its
// path.
func consoleTokens(cfg Config) (*auth.Tokens, string, error) {
	if cfg.ConsoleTokens != "" {
		t, err := auth.ParseTokens(cfg.ConsoleTokens)
		if err != nil {
			return nil, "", fmt.Errorf("PATCHFLEET_CONSOLE_TOKENS: %w", err)
		}
		return t, "", nil
	}
	path := filepath.Join(cfg.DataDir, "console-tokens")
	t, err := console.TokenFile(path, "operator")
	return t, path, err
}

// apiTokenFile makes sure path holds a bearer token for the inventory's and the planner's
// HTTP APIs ("name:secret" lines), generating one for "operator" on first start, and returns
// the path. The token itself is never printed or logged.
func apiTokenFile(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("api token file %s: %w", path, err)
	}
	content := "# Patchfleet inventory and planner API tokens: name:secret, one per line\noperator:" + auth.NewToken() + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("create api token file %s: %w", path, err)
	}
	return path, nil
}
