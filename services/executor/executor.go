// Package executor is the executor service: it takes upgrade jobs from the work queue and performs them over SSH.
package executor

import (
	"context"
	"log/slog"

	"github.com/patchfleet/patchfleet/db/executordb"
	"github.com/patchfleet/patchfleet/db/service"
)

// Name is the service's name on the bus and in logs.
const Name = "executor"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8083"

// Config configures the service.
type Config struct {
	service.Common
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error { return c.Common.Validate() }

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	svc, err := service.Start(ctx, service.Config{Common: cfg.Common, Name: Name, Schema: executordb.Schema, Migrations: executordb.Migrations}, logger)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
