package store

import (
	"context"
	"fmt"
	"time"

	"github.com/patchfleet/patchfleet/db/inventorydb"
)

// Claim takes up to n hosts due for a scan and holds them until the returned lease end:
// another instance claiming meanwhile skips them, and a crashed instance's claims expire.
func (s *Store) Claim(ctx context.Context, n int, lease time.Duration) ([]Target, time.Time, error) {
	now := s.now()
	until := now.Add(lease).Truncate(time.Microsecond) // PostgreSQL's precision, compared later
	hosts, err := inventorydb.New(s.pool).ClaimDueHosts(ctx, inventorydb.ClaimDueHostsParams{Now: now, LeaseUntil: until, MaxRows: int32(n)})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("claim hosts due for a scan: %w", err)
	}
	out := make([]Target, len(hosts))
	for i, h := range hosts {
		out[i] = target(h)
	}
	return out, until, nil
}

// Schedule sets when a claimed host is next scanned, unless a scan was asked for meanwhile.
func (s *Store) Schedule(ctx context.Context, id string, claimedUntil, next time.Time) error {
	if err := inventorydb.New(s.pool).ScheduleScan(ctx, inventorydb.ScheduleScanParams{ID: id, NextScan: next, ClaimedUntil: claimedUntil}); err != nil {
		return fmt.Errorf("schedule scan of %s: %w", id, err)
	}
	return nil
}

// ScanNow makes hosts due now (all active hosts of a fleet, or the ids given) and says how
// many.
func (s *Store) ScanNow(ctx context.Context, ids []string, fleet string) (int, error) {
	if ids == nil {
		ids = []string{}
	}
	n, err := inventorydb.New(s.pool).ScanNow(ctx, inventorydb.ScanNowParams{Now: s.now(), Ids: ids, Fleet: fleet})
	if err != nil {
		return 0, fmt.Errorf("schedule scans: %w", err)
	}
	return int(n), nil
}
