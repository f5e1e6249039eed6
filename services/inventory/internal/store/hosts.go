package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/query"
)

// HostFilter selects hosts; zero fields do not filter. After is the last host id of the
// previous page.
type HostFilter struct {
	Fleet          string
	Tags           map[string]string
	IDs            []string
	Package        string
	MinVersion     string // Package's installed version >= MinVersion (Debian ordering)
	BelowVersion   string // and < BelowVersion
	RebootRequired *bool
	NotScannedFor  time.Duration
	IncludeRetired bool
	After          string
	Limit          int
}

// Hosts returns one page of hosts ordered by id, and the id to continue after ("" on the
// last page).
func (s *Store) Hosts(ctx context.Context, f HostFilter) ([]query.Host, string, error) {
	q := inventorydb.New(s.pool)
	tags, err := json.Marshal(f.Tags)
	if err != nil || f.Tags == nil {
		tags = []byte("{}")
	}
	p := inventorydb.ListHostsParams{After: f.After, IncludeRetired: f.IncludeRetired, Fleet: f.Fleet, Tags: tags,
		Ids: f.IDs, MaxRows: int32(f.Limit + 1)}
	if p.Ids == nil {
		p.Ids = []string{}
	}
	if f.Package != "" {
		// The package filter is an index lookup on set members; versions compare in Go.
		p.BySet = true
		if p.SetIds, err = s.setsWithPackage(ctx, q, f.Package, f.MinVersion, f.BelowVersion); err != nil {
			return nil, "", err
		}
		if len(p.SetIds) == 0 {
			return []query.Host{}, "", nil
		}
	}
	if f.RebootRequired != nil {
		p.RebootRequired = pgtype.Bool{Bool: *f.RebootRequired, Valid: true}
	}
	if f.NotScannedFor > 0 {
		before := s.now().Add(-f.NotScannedFor)
		p.ScannedBefore = &before
	}
	rows, err := q.ListHosts(ctx, p)
	if err != nil {
		return nil, "", fmt.Errorf("list hosts: %w", err)
	}
	out := make([]query.Host, 0, min(len(rows), f.Limit))
	for i, r := range rows {
		if i == f.Limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, ToHost(r))
	}
	return out, "", nil
}

func (s *Store) setsWithPackage(ctx context.Context, q *inventorydb.Queries, name, minV, belowV string) ([]int64, error) {
	rows, err := q.MembersByName(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("sets with package %s: %w", name, err)
	}
	seen := map[int64]bool{}
	var out []int64
	for _, r := range rows {
		if seen[r.SetID] {
			continue
		}
		if minV != "" {
			if c, err := deb.Compare(r.Version, minV); err != nil || c < 0 {
				continue
			}
		}
		if belowV != "" {
			if c, err := deb.Compare(r.Version, belowV); err != nil || c >= 0 {
				continue
			}
		}
		seen[r.SetID] = true
		out = append(out, r.SetID)
	}
	return out, nil
}
