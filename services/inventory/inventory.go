// Package inventory is the inventory service: the host register, agentless SSH scans, drift detection and the inventory query endpoint.
package inventory

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/services/inventory/internal/api"
	"github.com/patchfleet/patchfleet/services/inventory/internal/register"
	"github.com/patchfleet/patchfleet/services/inventory/internal/scan"
	"github.com/patchfleet/patchfleet/services/inventory/internal/store"
)

// Name is the service's name on the bus and in logs.
const Name = "inventory"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8080"

// OpenAPI describes the HTTP API; it is served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Config configures the service. Zero values take the defaults below.
type Config struct {
	service.Common

	// Tokens are the HTTP API's bearer tokens, each "name:secret" (or a bare secret). With
	// none, from here or TokensFile, every /v1 request is refused.
	Tokens []string
	// TokensFile holds more tokens, one per line; blank lines and # comments are skipped.
	TokensFile string
	// HostsFile is a YAML hosts file imported at start (see register.File).
	HostsFile string

	ScanInterval    time.Duration // default 6h
	ScanJitter      time.Duration // default 10% of the interval
	ScanConcurrency int           // default 64
	ScanTimeout     time.Duration // one host's scan; default 2m
	ScanPoll        time.Duration // default 5s

	// SSH: the client keys the scanner logs in with (files), an ssh-agent socket, the
	// connect timeout. Without keys or an agent, scans are not run (the register, reports
	// and queries still work).
	SSHKeyFiles       []string
	SSHAgentSocket    string
	SSHConnectTimeout time.Duration // default 15s

	// Runner replaces the SSH scanner (simulated fleets in tests).
	Runner scan.Runner
}

func (c *Config) defaults() {
	if c.ScanInterval <= 0 {
		c.ScanInterval = 6 * time.Hour
	}
	if c.ScanJitter <= 0 {
		c.ScanJitter = c.ScanInterval / 10
	}
	if c.ScanConcurrency <= 0 {
		c.ScanConcurrency = 64
	}
	if c.ScanTimeout <= 0 {
		c.ScanTimeout = 2 * time.Minute
	}
	if c.ScanPoll <= 0 {
		c.ScanPoll = 5 * time.Second
	}
	if c.SSHConnectTimeout <= 0 {
		c.SSHConnectTimeout = 15 * time.Second
	}
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate()}
	if c.ScanInterval < 0 || c.ScanJitter < 0 || c.ScanTimeout < 0 || c.ScanPoll < 0 {
		errs = append(errs, errors.New("PATCHFLEET_INVENTORY_SCAN_*: durations must not be negative"))
	}
	if c.ScanConcurrency < 0 || c.ScanConcurrency > 10000 {
		errs = append(errs, fmt.Errorf("PATCHFLEET_INVENTORY_SCAN_CONCURRENCY %d: want 1..10000", c.ScanConcurrency))
	}
	if _, err := parseTokens(strings.Join(c.Tokens, "\n"), "PATCHFLEET_INVENTORY_TOKENS"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// parseTokens reads "name:secret" or bare secrets, one per line.
func parseTokens(text, where string) ([]api.Token, error) {
	var out []api.Token
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		if !ok {
			name, secret = fmt.Sprintf("token-%d", len(out)+1), line
		}
		if len(secret) < 16 {
			return nil, fmt.Errorf("%s line %d: token %q is shorter than 16 characters", where, n, name)
		}
		out = append(out, api.Token{Name: name, Secret: secret})
	}
	return out, nil
}

func (c Config) tokens() ([]api.Token, error) {
	toks, err := parseTokens(strings.Join(c.Tokens, "\n"), "PATCHFLEET_INVENTORY_TOKENS")
	if err != nil || c.TokensFile == "" {
		return toks, err
	}
	b, err := os.ReadFile(c.TokensFile)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	more, err := parseTokens(string(b), c.TokensFile)
	return append(toks, more...), err
}

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s config: %w", Name, err)
	}
	tokens, err := cfg.tokens()
	if err != nil {
		return fmt.Errorf("%s config: %w", Name, err)
	}
	runner := cfg.Runner
	if runner == nil && (len(cfg.SSHKeyFiles) > 0 || cfg.SSHAgentSocket != "") {
		signers, err := sshx.LoadSigners(cfg.SSHKeyFiles...)
		if err != nil {
			return fmt.Errorf("%s ssh keys: %w", Name, err)
		}
		ssh := scan.NewSSH(sshx.Config{Signers: signers, AgentSocket: cfg.SSHAgentSocket, ConnectTimeout: cfg.SSHConnectTimeout,
			MaxConns: cfg.ScanConcurrency, IdleTimeout: 30 * time.Second, Logger: logger})
		defer ssh.Close() // the pool closes last, after the service has stopped
		runner = ssh
	}

	svc, err := service.Start(ctx, service.Config{Common: cfg.Common, Name: Name, Schema: inventorydb.Schema, Migrations: inventorydb.Migrations}, logger)
	if err != nil {
		return err
	}
	st := store.New(svc.Pool)
	if cfg.HostsFile != "" {
		if err := importFile(ctx, st, cfg.HostsFile, svc.Logger); err != nil {
			svc.Pool.Close()
			svc.NC.Close()
			return err
		}
	}
	scanner := scan.New(st, runner, scan.Config{Interval: cfg.ScanInterval, Jitter: cfg.ScanJitter,
		Concurrency: cfg.ScanConcurrency, Timeout: cfg.ScanTimeout, Poll: cfg.ScanPoll}, svc.Logger, svc.Ops.Registry)
	if runner != nil {
		if conns := int(svc.Pool.Config().MaxConns); conns < cfg.ScanConcurrency/4 {
			svc.Logger.Warn("database pool smaller than the scans it serves; set pool_max_conns in the database URL",
				"pool_max_conns", conns, "scan_concurrency", cfg.ScanConcurrency)
		}
		svc.Go("scanner", scanner.Run)
	} else {
		svc.Logger.Warn("no SSH keys configured: hosts are not scanned (offline reports still work)")
	}
	if len(tokens) == 0 {
		svc.Logger.Warn("no API tokens configured: the HTTP API refuses every request (NATS queries still work)")
	}
	// Exposure answers read the hosts from a copy in memory: read now, it spares the first
	// answer after a start (about half a second for 100,000 hosts).
	svc.Go("hosts copy", func(ctx context.Context) error {
		if err := st.LoadHosts(ctx); err != nil && ctx.Err() == nil {
			svc.Logger.Warn("hosts not read ahead of the first exposure answer", "err", err)
		}
		return nil
	})
	a := &api.API{Store: st, Logger: svc.Logger, Wake: scanner.Wake, Tokens: tokens, OpenAPI: OpenAPI}
	a.Mount(svc.Ops)
	svc.Go("query", func(ctx context.Context) error { return a.Serve(ctx, svc.NC) })
	consume(svc, st, scanner)
	return svc.Run(ctx)
}

func importFile(ctx context.Context, st *store.Store, path string, logger *slog.Logger) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read hosts file: %w", err)
	}
	hosts, err := register.ParseFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("hosts file %s: %w", path, err)
	}
	created, err := st.Import(ctx, hosts, "file:"+path)
	if err != nil {
		return fmt.Errorf("import hosts file %s: %w", path, err)
	}
	logger.Info("hosts file imported", "file", path, "hosts", len(hosts), "created", created)
	return nil
}

// consume registers the service's event handlers: the register and upgrades on one durable
// consumer (in order), advisories on another so a flood of them never delays a registration.
func consume(svc *service.Service, st *store.Store, scanner *scan.Scanner) {
	const hostsInbox, advisoriesInbox = Name + ".hosts", Name + ".advisories"
	hosts := svc.Consumer("", events.ConsumerConfig{})
	events.On(hosts, func(ctx context.Context, m events.Meta, e events.HostRegistered) error {
		if err := register.Check(e); err != nil {
			return events.Permanent(err)
		}
		if err := st.RegisterEvent(ctx, hostsInbox, m, e); err != nil {
			return err
		}
		scanner.Wake()
		return nil
	})
	events.On(hosts, func(ctx context.Context, m events.Meta, e events.HostDecommissioned) error {
		return st.DecommissionEvent(ctx, hostsInbox, m, e)
	})
	events.On(hosts, func(ctx context.Context, m events.Meta, e events.UpgradeCompleted) error {
		if err := st.UpgradeCompleted(ctx, hostsInbox, m, e); err != nil {
			return err
		}
		scanner.Wake()
		return nil
	})
	advisories := svc.Consumer("advisories", events.ConsumerConfig{})
	events.On(advisories, func(ctx context.Context, m events.Meta, e events.SecurityAdvisoryPublished) error {
		return st.SaveAdvisory(ctx, advisoriesInbox, m, e)
	})
	events.On(advisories, func(ctx context.Context, m events.Meta, e events.AdvisoryWithdrawn) error {
		return st.WithdrawAdvisory(ctx, advisoriesInbox, m, e)
	})
}
