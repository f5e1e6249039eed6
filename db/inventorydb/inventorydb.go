// Package inventorydb holds the inventory service's schema (inventory): its migrations and its sqlc-generated
// queries. Open it with db.Connect(ctx, url, Schema) and migrate it with
// db.Migrate(ctx, pool, Schema, Migrations).
package inventorydb

import (
	"embed"

	"github.com/patchfleet/patchfleet/db"
)

// Schema is the PostgreSQL schema this package's tables live in.
const Schema = db.SchemaInventory

// Migrations are the schema's migrations, in migrations/NNNN_description.sql.
//
//go:embed migrations/*.sql
var Migrations embed.FS
