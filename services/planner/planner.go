// Package planner is the planner service: it computes exposure, applies fleet policy and drives rollouts wave by wave.
package planner

import (
	"context"
	"log/slog"

	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/db/service"
)

// Name is the service's name on the bus and in logs.
const Name = "planner"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8082"

// Config configures the service.
type Config struct {
	service.Common
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error { return c.Common.Validate() }

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	svc, err := service.Start(ctx, service.Config{Common: cfg.Common, Name: Name, Schema: plannerdb.Schema, Migrations: plannerdb.Migrations}, logger)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
