// Package messaging holds the tables every service schema shares — the transactional outbox
// and the inbox — and their sqlc-generated queries. Use them through db/outbox and db/inbox.
package messaging

import "embed"

// Migrations creates the outbox and inbox tables; db.Migrate applies it to every schema
// before the service's own migrations.
//
//go:embed migrations/*.sql
var Migrations embed.FS
