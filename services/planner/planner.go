// Package planner is the planner service: it computes exposure, applies fleet policy and drives rollouts wave by wave.
package planner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/api"
	"github.com/patchfleet/patchfleet/services/planner/internal/manifest"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
	"github.com/patchfleet/patchfleet/services/planner/internal/rollout"
)

// Name is the service's name on the bus and in logs.
const Name = "planner"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8082"

// DefaultTick is how often due rollouts are re-evaluated (windows opening, approval delays
// and bake times running out, fleets with room again).
const DefaultTick = time.Second

// Config configures the service.
type Config struct {
	service.Common
	// PolicyFile is the fleet policy YAML; empty means the built-in default policy (every
	// host, security fixes automatically, reboots never, no windows).
	PolicyFile string
	// Tick is the re-evaluation interval; zero means DefaultTick.
	Tick time.Duration
	// Now is the clock; nil means time.Now. Tests move it to open and close windows.
	Now func() time.Time
	// DockerManifest is the YAML of pinned Docker and Weave versions docker rollouts upgrade
	// to; empty refuses docker requests.
	DockerManifest string
	// Tokens are the HTTP API's bearer tokens, each "name:secret" (or a bare secret). With
	// none, from here or TokensFile, every /v1 request is refused.
	Tokens []string
	// TokensFile holds more tokens, one per line; blank lines and # comments are skipped.
	TokensFile string
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error {
	var errs []error
	if c.Tick < 0 {
		errs = append(errs, errors.New("PATCHFLEET_PLANNER_TICK must not be negative"))
	}
	if c.PolicyFile != "" {
		if _, _, err := LoadPolicy(c.PolicyFile); err != nil {
			errs = append(errs, fmt.Errorf("PATCHFLEET_POLICY_FILE: %w", err))
		}
	}
	if _, err := LoadManifest(c.DockerManifest); err != nil {
		errs = append(errs, fmt.Errorf("PATCHFLEET_DOCKER_MANIFEST: %w", err))
	}
	if _, err := c.tokens(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, c.Common.Validate())...)
}

// LoadManifest reads the Docker manifest, or returns nil for an empty name.
func LoadManifest(file string) (*manifest.Manifest, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read docker manifest: %w", err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("docker manifest %s: %w", file, err)
	}
	return m, nil
}

func (c Config) tokens() ([]api.Token, error) {
	toks, err := api.ParseTokens(strings.Join(c.Tokens, "\n"), "PATCHFLEET_PLANNER_TOKENS")
	if err != nil || c.TokensFile == "" {
		return toks, err
	}
	b, err := os.ReadFile(c.TokensFile)
	if err != nil {
		return nil, fmt.Errorf("PATCHFLEET_PLANNER_TOKENS_FILE: read tokens file: %w", err)
	}
	more, err := api.ParseTokens(string(b), c.TokensFile)
	return append(toks, more...), err
}

// LoadPolicy reads the policy file, or returns the built-in default for an empty name.
func LoadPolicy(file string) (*policy.Policy, string, error) {
	if file == "" {
		return policy.Default(), "built-in default", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("read policy: %w", err)
	}
	p, err := policy.Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("policy %s: %w", file, err)
	}
	return p, file, nil
}

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	pol, source, err := LoadPolicy(cfg.PolicyFile)
	if err != nil {
		return err
	}
	docker, err := LoadManifest(cfg.DockerManifest)
	if err != nil {
		return err
	}
	tokens, err := cfg.tokens()
	if err != nil {
		return err
	}
	tick := cfg.Tick
	if tick == 0 {
		tick = DefaultTick
	}
	svc, err := service.Start(ctx, service.Config{Common: cfg.Common, Name: Name, Schema: plannerdb.Schema, Migrations: plannerdb.Migrations}, logger)
	if err != nil {
		return err
	}
	svc.Logger.Info("fleet policy loaded", "source", source, "fleets", len(pol.Fleets), "docker_manifest", cfg.DockerManifest != "")
	if len(tokens) == 0 {
		svc.Logger.Warn("no API tokens configured: the HTTP API refuses every request (NATS queries still work)")
	}
	eng := &rollout.Engine{
		Pool: svc.Pool, Policy: pol, Inventory: query.Client{NC: svc.NC}, Now: cfg.Now,
		Logger: svc.Logger, Producer: Name, Docker: docker,
	}
	// Handlers lock the rollout they touch, so events of different rollouts run in parallel.
	eng.Register(svc.Consumer("", events.ConsumerConfig{Concurrency: 4}))
	svc.Go("ticker", func(ctx context.Context) error { return eng.RunTicker(ctx, tick) })
	queries := &api.API{Engine: eng, Policy: pol, PolicySource: source, Logger: svc.Logger, Tokens: tokens}
	queries.Mount(svc.Ops)
	svc.Go("queries", func(ctx context.Context) error { return queries.ServeNATS(ctx, svc.NC) })
	return svc.Run(ctx)
}
