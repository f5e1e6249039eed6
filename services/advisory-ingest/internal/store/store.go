// Package store is advisory-ingest's SQL: the stored state of advisories, their revisions,
// raw record digests, feed state, ingest errors, and the queries the API answers. It does
// no deciding; the pipeline calls it inside its transactions.
package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/revision"
)

// Store reads and writes the ingest schema.
type Store struct {
	Pool *pgxpool.Pool
}

// New returns a store on pool (connected with search_path = ingest).
func New(pool *pgxpool.Pool) *Store { return &Store{Pool: pool} }

// States returns the stored state of the given advisories (those that are stored).
func (s *Store) States(ctx context.Context, ids []string) (map[string]revision.Stored, error) {
	rows, err := ingestdb.New(s.Pool).AdvisoryStates(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read state of %d advisories: %w", len(ids), err)
	}
	out := make(map[string]revision.Stored, len(rows))
	for _, r := range rows {
		out[r.ID] = revision.Stored{Revision: int(r.Revision), Hash: r.ContentHash, Modified: r.Modified, Withdrawn: r.Withdrawn != nil}
	}
	return out, nil
}

// LockStates is States inside tx, locking the rows until it ends.
func LockStates(ctx context.Context, tx pgx.Tx, ids []string) (map[string]revision.Stored, error) {
	rows, err := ingestdb.New(tx).LockAdvisoryStates(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("lock state of %d advisories: %w", len(ids), err)
	}
	out := make(map[string]revision.Stored, len(rows))
	for _, r := range rows {
		out[r.ID] = revision.Stored{Revision: int(r.Revision), Hash: r.ContentHash, Modified: r.Modified, Withdrawn: r.Withdrawn != nil}
	}
	return out, nil
}

// Revision is one new revision of an advisory to store.
type Revision struct {
	ID        string
	Revision  int
	Hash      string
	Source    string
	Origin    string
	Aliases   []string // plain identifiers (advisory.Validate): no spaces
	Modified  time.Time
	Withdrawn time.Time // zero unless withdrawn
	Record    []byte    // the normalised advisory as JSON (events.SecurityAdvisoryPublished)
	EventID   string
	RawDigest []byte // of the raw record, if the source gave one
}

// SaveRevisions stores revs in tx: each is appended to its advisory's history and becomes
// its current revision (the highest, if an advisory appears more than once).
func SaveRevisions(ctx context.Context, tx pgx.Tx, revs []Revision) error {
	if len(revs) == 0 {
		return nil
	}
	n := len(revs)
	p := ingestdb.SetCurrentRevisionsParams{
		Ids: make([]string, n), Revisions: make([]int32, n), ContentHashes: make([]string, n),
		Sources: make([]string, n), Origins: make([]string, n), Aliases: make([]string, n),
		Modifieds: make([]time.Time, n), Withdrawns: make([]time.Time, n),
	}
	history := make([]ingestdb.InsertRevisionsParams, n)
	var raw ingestdb.UpsertRawRecordsParams
	for i, r := range revs {
		p.Ids[i], p.Revisions[i], p.ContentHashes[i] = r.ID, int32(r.Revision), r.Hash
		p.Sources[i], p.Origins[i], p.Aliases[i] = r.Source, r.Origin, strings.Join(r.Aliases, " ")
		p.Modifieds[i], p.Withdrawns[i] = r.Modified, r.Withdrawn
		history[i] = ingestdb.InsertRevisionsParams{
			AdvisoryID: r.ID, Revision: int32(r.Revision), ContentHash: r.Hash, Origin: r.Origin,
			Modified: r.Modified, Record: r.Record, EventID: r.EventID,
		}
		if !r.Withdrawn.IsZero() {
			history[i].Withdrawn = &revs[i].Withdrawn
		}
		if r.RawDigest != nil {
			raw.Origins = append(raw.Origins, r.Origin)
			raw.RawHashes = append(raw.RawHashes, r.RawDigest)
			raw.AdvisoryIds = append(raw.AdvisoryIds, r.ID)
		}
	}
	q := ingestdb.New(tx)
	// The advisories first: a revision refers to its advisory.
	if err := q.SetCurrentRevisions(ctx, p); err != nil {
		return fmt.Errorf("store %d revisions (%s…): %w", n, p.Ids[0], err)
	}
	if _, err := q.InsertRevisions(ctx, history); err != nil {
		return fmt.Errorf("store %d revisions (%s…): %w", n, p.Ids[0], err)
	}
	if len(raw.Origins) > 0 {
		if err := q.UpsertRawRecords(ctx, dedupRaw(raw)); err != nil {
			return fmt.Errorf("store %d raw digests: %w", len(raw.Origins), err)
		}
	}
	return nil
}

// dedupRaw keeps the last digest per origin (two advisories cannot share a raw record, but
// one record can be read twice in a batch).
func dedupRaw(p ingestdb.UpsertRawRecordsParams) ingestdb.UpsertRawRecordsParams {
	last := map[string]int{}
	for i, o := range p.Origins {
		last[o] = i
	}
	if len(last) == len(p.Origins) {
		return p
	}
	var out ingestdb.UpsertRawRecordsParams
	for i, o := range p.Origins {
		if last[o] == i {
			out.Origins = append(out.Origins, o)
			out.RawHashes = append(out.RawHashes, p.RawHashes[i])
			out.AdvisoryIds = append(out.AdvisoryIds, p.AdvisoryIds[i])
		}
	}
	return out
}

// RawDigests returns the raw digests stored for records whose origin starts with prefix
// (a feed's path or URL), by origin.
func (s *Store) RawDigests(ctx context.Context, prefix string) (map[string][]byte, error) {
	rows, err := ingestdb.New(s.Pool).RawRecordsUnder(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("read raw digests under %s: %w", prefix, err)
	}
	out := make(map[string][]byte, len(rows))
	for _, r := range rows {
		out[r.Origin] = r.RawHash
	}
	return out, nil
}

// IngestError is a record that could not be used.
type IngestError struct {
	Source string // the feed: path, URL, or the FEEDS stream
	Origin string // the record
	Reason string
}

// SaveErrors records errs in tx.
func SaveErrors(ctx context.Context, tx pgx.Tx, errs []IngestError) error {
	q := ingestdb.New(tx)
	for _, e := range errs {
		if err := q.InsertIngestError(ctx, ingestdb.InsertIngestErrorParams{Source: e.Source, Origin: e.Origin, Reason: e.Reason}); err != nil {
			return fmt.Errorf("record ingest error of %s: %w", e.Origin, err)
		}
	}
	return nil
}

// FeedState is the conditional-request state of a polled feed.
type FeedState struct {
	ETag, LastModified string
}

// FeedState returns the stored state of a feed; the zero state if it was never polled.
func (s *Store) FeedState(ctx context.Context, url string) (FeedState, error) {
	r, err := ingestdb.New(s.Pool).FeedState(ctx, url)
	if errors.Is(err, pgx.ErrNoRows) {
		return FeedState{}, nil
	}
	if err != nil {
		return FeedState{}, fmt.Errorf("read feed state of %s: %w", url, err)
	}
	return FeedState{ETag: r.Etag, LastModified: r.LastModified}, nil
}

// FeedPolled records a successful poll (whose records are stored).
func (s *Store) FeedPolled(ctx context.Context, url string, st FeedState, at time.Time) error {
	err := ingestdb.New(s.Pool).SaveFeedSuccess(ctx, ingestdb.SaveFeedSuccessParams{Url: url, Etag: st.ETag, LastModified: st.LastModified, At: &at})
	if err != nil {
		return fmt.Errorf("save feed state of %s: %w", url, err)
	}
	return nil
}

// FeedFailed records a failed poll.
func (s *Store) FeedFailed(ctx context.Context, url string, failure error, at time.Time) error {
	err := ingestdb.New(s.Pool).SaveFeedError(ctx, ingestdb.SaveFeedErrorParams{Url: url, LastError: failure.Error(), At: &at})
	if err != nil {
		return fmt.Errorf("save feed error of %s: %w", url, err)
	}
	return nil
}

// ErrNotFound is returned for an unknown advisory.
var ErrNotFound = errors.New("advisory not found")

func advisory(record []byte, hash, origin string, withdrawn *time.Time) (query.Advisory, error) {
	a := query.Advisory{ContentHash: hash, Origin: origin, Withdrawn: withdrawn}
	if err := json.Unmarshal(record, &a.SecurityAdvisoryPublished); err != nil {
		return query.Advisory{}, fmt.Errorf("decode stored advisory: %w", err)
	}
	return a, nil
}

// Advisory returns one advisory's current revision.
func (s *Store) Advisory(ctx context.Context, id string) (query.Advisory, error) {
	r, err := ingestdb.New(s.Pool).GetAdvisory(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return query.Advisory{}, fmt.Errorf("advisory %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return query.Advisory{}, fmt.Errorf("read advisory %s: %w", id, err)
	}
	return advisory(r.Record, r.ContentHash, r.Origin, r.Withdrawn)
}

// ByCVE returns the advisories naming cve as an alias, or whose id it is.
func (s *Store) ByCVE(ctx context.Context, cve string, limit int) ([]query.Advisory, error) {
	rows, err := ingestdb.New(s.Pool).AdvisoriesByAlias(ctx, ingestdb.AdvisoriesByAliasParams{Alias: cve, MaxRows: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("advisories about %s: %w", cve, err)
	}
	out := []query.Advisory{}
	for _, r := range rows {
		a, err := advisory(r.Record, r.ContentHash, r.Origin, r.Withdrawn)
		if err != nil {
			return nil, fmt.Errorf("advisory %s: %w", r.ID, err)
		}
		out = append(out, a)
	}
	if len(out) < limit {
		// A CVE can be an advisory of its own (OSV's CVE-… records, the tracker's).
		if a, err := s.Advisory(ctx, cve); err == nil {
			out = append(out, a)
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return out, nil
}

// Since returns a page of advisories modified at or after since, and the cursor of the next
// page ("" after the last).
func (s *Store) Since(ctx context.Context, since time.Time, cursor string, limit int) ([]query.Advisory, string, error) {
	after, afterID, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	rows, err := ingestdb.New(s.Pool).AdvisoriesModifiedSince(ctx, ingestdb.AdvisoriesModifiedSinceParams{
		Since: since, AfterModified: after, AfterID: afterID, MaxRows: int32(limit)})
	if err != nil {
		return nil, "", fmt.Errorf("advisories modified since %s: %w", since.Format(time.RFC3339), err)
	}
	out := []query.Advisory{}
	for _, r := range rows {
		a, err := advisory(r.Record, r.ContentHash, r.Origin, r.Withdrawn)
		if err != nil {
			return nil, "", fmt.Errorf("advisory %s: %w", r.ID, err)
		}
		out = append(out, a)
	}
	next := ""
	if len(rows) == limit && limit > 0 {
		last := rows[len(rows)-1]
		next = encodeCursor(last.Modified, last.ID)
	}
	return out, next, nil
}

// ErrBadCursor is returned for a cursor this store did not make.
var ErrBadCursor = errors.New("bad cursor")

func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(t.UTC().Format(time.RFC3339Nano) + " " + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	if c == "" {
		return time.Time{}, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	ts, id, ok := strings.Cut(string(b), " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	return t, id, nil
}

// Record encodes an advisory revision as stored and as queried.
func Record(e events.SecurityAdvisoryPublished) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode advisory %s: %w", e.AdvisoryID, err)
	}
	return b, nil
}
