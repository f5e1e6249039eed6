package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/events"
)

// SaveAdvisory stores a consumed advisory revision; the latest revision wins.
func (s *Store) SaveAdvisory(ctx context.Context, consumer string, m events.Meta, e events.SecurityAdvisoryPublished) error {
	affected, err := json.Marshal(e.Affected)
	if err != nil {
		return events.Permanent(fmt.Errorf("encode affected of %s: %w", e.AdvisoryID, err))
	}
	return s.consume(ctx, consumer, m.ID, func(_ pgx.Tx, q *inventorydb.Queries) error {
		aliases := e.Aliases
		if aliases == nil {
			aliases = []string{}
		}
		if err := q.UpsertAdvisory(ctx, inventorydb.UpsertAdvisoryParams{ID: e.AdvisoryID, Revision: int32(e.Revision),
			Aliases: aliases, Affected: affected}); err != nil {
			return fmt.Errorf("store advisory %s revision %d: %w", e.AdvisoryID, e.Revision, err)
		}
		return nil
	})
}

// WithdrawAdvisory marks an advisory withdrawn: exposure by its id or aliases answers nothing.
func (s *Store) WithdrawAdvisory(ctx context.Context, consumer string, m events.Meta, e events.AdvisoryWithdrawn) error {
	return s.consume(ctx, consumer, m.ID, func(_ pgx.Tx, q *inventorydb.Queries) error {
		if err := q.WithdrawAdvisory(ctx, inventorydb.WithdrawAdvisoryParams{ID: e.AdvisoryID, Revision: int32(e.Revision)}); err != nil {
			return fmt.Errorf("withdraw advisory %s: %w", e.AdvisoryID, err)
		}
		return nil
	})
}

// Advisory is a stored advisory.
type Advisory struct {
	ID        string
	Revision  int
	Affected  []events.Affected
	Withdrawn bool
}

// Advisories returns the advisories whose id or alias (a CVE) is key; ErrNotFound if none.
func (s *Store) Advisories(ctx context.Context, key string) ([]Advisory, error) {
	rows, err := inventorydb.New(s.pool).FindAdvisories(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("find advisory %s: %w", key, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("advisory %s: %w", key, ErrNotFound)
	}
	out := make([]Advisory, len(rows))
	for i, r := range rows {
		out[i] = Advisory{ID: r.ID, Revision: int(r.Revision), Withdrawn: r.Withdrawn}
		if err := json.Unmarshal(r.Affected, &out[i].Affected); err != nil {
			return nil, fmt.Errorf("advisory %s affected: %w", r.ID, err)
		}
	}
	return out, nil
}

// UpgradeCompleted remembers the versions an upgrade installed on a host (so the next scan
// does not call them drift), that a new host has had its full upgrade, and makes the host due
// for a scan now.
func (s *Store) UpgradeCompleted(ctx context.Context, consumer string, m events.Meta, e events.UpgradeCompleted) error {
	return s.consume(ctx, consumer, m.ID, func(_ pgx.Tx, q *inventorydb.Queries) error {
		add := inventorydb.AddInstallsParams{HostID: e.HostID, JobID: e.JobID, InstalledAt: m.Time}
		seen := map[[2]string]bool{} // one statement may not touch a row twice
		for _, p := range e.Packages {
			if k := [2]string{p.Name, p.After}; !seen[k] {
				seen[k] = true
				add.Names, add.Versions = append(add.Names, p.Name), append(add.Versions, p.After)
			}
		}
		if len(add.Names) > 0 {
			if err := q.AddInstalls(ctx, add); err != nil {
				return fmt.Errorf("remember the installs of job %s on %s: %w", e.JobID, e.HostID, err)
			}
		}
		if e.Kind == events.KindFull {
			if err := q.FullyUpgraded(ctx, e.HostID); err != nil {
				return fmt.Errorf("record the full upgrade of %s: %w", e.HostID, err)
			}
		}
		if _, err := q.ScanNow(ctx, inventorydb.ScanNowParams{Now: s.now(), Ids: []string{e.HostID}}); err != nil {
			return fmt.Errorf("schedule scan of %s: %w", e.HostID, err)
		}
		return nil
	})
}
