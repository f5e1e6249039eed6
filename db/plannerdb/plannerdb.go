// Package plannerdb holds the planner service's schema (planner): its migrations and its sqlc-generated
// queries. Open it with db.Connect(ctx, url, Schema) and migrate it with
// db.Migrate(ctx, pool, Schema, Migrations).
package plannerdb

import (
	"embed"

	"github.com/patchfleet/patchfleet/db"
)

// Schema is the PostgreSQL schema this package's tables live in.
const Schema = db.SchemaPlanner

// Migrations are the schema's migrations, in migrations/NNNN_description.sql.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// ExposureBuckets is how many buckets exposure sets split hosts into: enough that a set of a
// 100,000-host advisory holds a few dozen hosts (a short array, stored inline), few enough
// that recording it writes a few thousand rows, not a row per host.
const ExposureBuckets = 4096

// ExposureBucket is the bucket of exposure_sets that holds a host's exposures in sets: the
// 32-bit FNV-1a hash of its id, modulo ExposureBuckets. Stored sets depend on it: it never
// changes.
func ExposureBucket(hostID string) int32 {
	h := uint32(2166136261)
	for i := 0; i < len(hostID); i++ {
		h ^= uint32(hostID[i])
		h *= 16777619
	}
	return int32(h % ExposureBuckets)
}
