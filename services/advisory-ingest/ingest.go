// Package ingest is the advisory-ingest service: it reads advisory feeds, normalises and stores them, and publishes SecurityAdvisoryPublished once per advisory revision.
package ingest

import (
	"context"
	"log/slog"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/service"
)

// Name is the service's name on the bus and in logs.
const Name = "advisory-ingest"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8081"

// Config configures the service.
type Config struct {
	service.Common
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error { return c.Common.Validate() }

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	svc, err := service.Start(ctx, service.Config{Common: cfg.Common, Name: Name, Schema: ingestdb.Schema, Migrations: ingestdb.Migrations}, logger)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
