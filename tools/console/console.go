// Package console is Patchfleet's web console: the fleet's exposure, rollouts (live), hosts,
// advisories and compliance at a glance, with approve / pause / resume / cancel for the
// people allowed to decide. It reads only what any other client may read — the query
// endpoints over NATS and the event streams — and decides only by publishing the same
// decision events as the ChatOps bot and the CLI.
package console

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/tools/console/auth"
)

// Producer names the console in the events it publishes.
const Producer = "console"

// Config of the console.
type Config struct {
	Bus      events.BusConfig
	HTTPAddr string
	// Tokens are the sign-in tokens and whose they are.
	Tokens *auth.Tokens
	// SecureCookies marks the session cookie Secure even when the request did not arrive
	// over TLS here (TLS terminated by a proxy in front).
	SecureCookies bool
	// ExecutorURL is the executor's HTTP server, for stored job logs (optional).
	ExecutorURL  string
	SessionTTL   time.Duration
	QueryTimeout time.Duration
	// StaleAfter is how old a host's last scan may be before the overview lists it.
	StaleAfter time.Duration
	// History is how far back host histories are rebuilt from the streams at start.
	History   time.Duration
	ChartDays int
}

// Defaults fills in unset durations and sizes.
func (c Config) Defaults() Config {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = 24 * time.Hour
	}
	if c.History == 0 {
		c.History = 30 * 24 * time.Hour
	}
	if c.ChartDays == 0 {
		c.ChartDays = 30
	}
	return c
}

// Validate names each wrong setting.
func (c Config) Validate() error {
	var errs []error
	if c.Tokens == nil || c.Tokens.Len() == 0 {
		errs = append(errs, errors.New("PATCHFLEET_CONSOLE_TOKENS: at least one name=token is required"))
	}
	if c.ExecutorURL != "" {
		if u, err := url.Parse(c.ExecutorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("PATCHFLEET_CONSOLE_EXECUTOR_URL=%q: not an http(s) URL", c.ExecutorURL))
		}
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("PATCHFLEET_CONSOLE_ADDR is required"))
	}
	return errors.Join(errs...)
}

// Run connects to NATS, follows the streams and serves the console until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg = cfg.Defaults()
	if err := errors.Join(cfg.Bus.Validate(), cfg.Validate()); err != nil {
		return err
	}
	logger = logger.With("service", "console")
	nc, js, err := events.Connect(ctx, cfg.Bus, "patchfleet-console", logger)
	if err != nil {
		return err
	}
	defer nc.Drain()
	s, err := NewServer(cfg, nc, js, logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := s.Feed.Run(ctx); err != nil {
			cancel(err)
		}
	}()
	srv := ops.New(logger)
	srv.Check("nats", events.ReadyCheck(nc))
	srv.Handle("/", s.Handler())
	logger.Info("console listening", "addr", cfg.HTTPAddr)
	err = srv.Serve(ctx, cfg.HTTPAddr)
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return err
}

// TokenFile reads the tokens in path, creating the file (mode 0600) with one random token
// for name when it does not exist: what the single-process system uses when no tokens are
// configured. The token stays in the file; nothing prints it.
func TokenFile(path, name string) (*auth.Tokens, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		content := "# Patchfleet console sign-in tokens: name=token, one per line\n" + name + "=" + auth.NewToken() + "\n"
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("create console token file %s: %w", path, err)
		}
		b = []byte(content)
	} else if err != nil {
		return nil, fmt.Errorf("read console token file %s: %w", path, err)
	}
	t, err := auth.ParseTokens(string(b))
	if err != nil {
		return nil, fmt.Errorf("console token file %s: %w", path, err)
	}
	return t, nil
}
