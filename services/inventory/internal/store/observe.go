package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/db/outbox"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory/internal/drift"
)

// Observation is one scan or offline report of a host.
type Observation struct {
	HostID  string
	ScanID  string
	At      time.Time
	Offline bool
	Facts   hostfacts.Facts
	// AcceptedKey is the host key a trust-on-first-use contact accepted (authorized_keys
	// format); it is pinned with the observation.
	AcceptedKey string
	// Next, for a scan the scheduler claimed, is its next scan, set with the observation
	// (as Schedule would).
	Next *Next
}

// Next is the next scan of a host claimed until ClaimedUntil.
type Next struct{ ClaimedUntil, At time.Time }

// Packages returns the facts' packages in canonical order (name, architecture).
func Packages(f hostfacts.Facts) []query.Package {
	out := make([]query.Package, len(f.Packages))
	for i, p := range f.Packages {
		out[i] = query.Package{Name: p.Name, Version: p.Version, Arch: p.Arch, SourceName: p.SourceName,
			SourceVersion: p.SourceVersion, Status: p.Status}
	}
	slices.SortFunc(out, func(a, b query.Package) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Arch, b.Arch))
	})
	return slices.CompactFunc(out, func(a, b query.Package) bool { return a.Name == b.Name && a.Arch == b.Arch })
}

// SetHash is the content hash of a canonical package list: hosts with the same packages at
// the same versions share one stored set.
func SetHash(pkgs []query.Package) string {
	h := sha256.New()
	var line []byte
	for _, p := range pkgs {
		line = line[:0]
		for i, f := range [...]string{p.Name, p.Arch, p.Version, p.SourceName, p.SourceVersion, p.Status} {
			if i > 0 {
				line = append(line, '\t')
			}
			line = append(line, f...)
		}
		h.Write(append(line, '\n'))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func installed(status string) bool {
	return len(status) >= 2 && strings.ContainsRune("itW", rune(status[1]))
}

// packageSet returns the id of the set holding exactly pkgs, storing it if it is new. The
// set may be one this transaction stored (for another host of its group), so it is known to
// exist only once the transaction commits: only then may the caller remember it
// (s.setIDs.put).
func (s *Store) packageSet(ctx context.Context, q *inventorydb.Queries, pkgs []query.Package) (id int64, hash string, err error) {
	hash = SetHash(pkgs)
	if id, ok := s.setIDs.get(hash); ok {
		return id, hash, nil
	}
	id, err = q.InsertPackageSet(ctx, inventorydb.InsertPackageSetParams{Hash: hash, PackageCount: int32(len(pkgs))})
	if errors.Is(err, pgx.ErrNoRows) {
		// Stored before, by this transaction or by a concurrent one the insert waited for.
		id, err = q.PackageSetByHash(ctx, hash)
		if err != nil {
			return 0, "", fmt.Errorf("package set %s: %w", hash, err)
		}
		return id, hash, nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("store package set %s: %w", hash, err)
	}
	rows := make([]inventorydb.InsertSetMembersParams, len(pkgs))
	for i, p := range pkgs {
		rows[i] = inventorydb.InsertSetMembersParams{SetID: id, Name: p.Name, Arch: p.Arch, Version: p.Version,
			SourceName: p.SourceName, SourceVersion: p.SourceVersion, Status: p.Status, Installed: installed(p.Status)}
	}
	if _, err := q.InsertSetMembers(ctx, rows); err != nil {
		return 0, "", fmt.Errorf("store package set %s members: %w", hash, err)
	}
	return id, hash, nil
}

// Observe stores an observation and, in the same transaction, the events it causes:
// HostInventoryReported always (with the package changes since the previous observation),
// HostDriftDetected when a change is not one Patchfleet installed, RebootRequired when a
// reboot newly became required. The first observation of a host is its baseline: no changes.
//
// Observations arriving while another group is being stored are stored together, in one
// transaction (a group commit): a scan round of a large fleet stores hundreds a second,
// and a transaction per host would cost more than the work in it.
func (s *Store) Observe(ctx context.Context, o Observation) (events.HostInventoryReported, error) {
	r := s.group.join(o)
	<-r.turn
	if r.lead {
		rs := s.group.take()
		// The group holds other callers' observations: this caller going away must not
		// cancel them.
		s.storeGroup(context.WithoutCancel(ctx), rs)
		s.group.done(rs)
	}
	return r.report, r.err
}

// maxGroup bounds the observations stored in one transaction.
const maxGroup = 64

// observing is one Observe waiting for its group to be stored.
type observing struct {
	o      Observation
	turn   chan struct{} // closed when stored, or when this caller is to store a group
	lead   bool          // set before turn is closed: store the group this observation heads
	report events.HostInventoryReported
	err    error
}

// group queues the observations waiting to be stored. One caller at a time stores a
// group: the one that found nobody storing, and then the first of those that waited.
type group struct {
	mu      sync.Mutex
	waiting []*observing
	leading bool
}

func (g *group) join(o Observation) *observing {
	r := &observing{o: o, turn: make(chan struct{})}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiting = append(g.waiting, r)
	if !g.leading {
		g.leading, r.lead = true, true
		close(r.turn)
	}
	return r
}

// take returns the next group: the leader's observation and those waiting after it.
func (g *group) take() []*observing {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(len(g.waiting), maxGroup)
	rs := slices.Clone(g.waiting[:n])
	clear(g.waiting[:n]) // the queue's array keeps no stored observation alive
	g.waiting = g.waiting[n:]
	return rs
}

// done releases a stored group and hands the lead to the first observation waiting.
func (g *group) done(rs []*observing) {
	for _, r := range rs {
		if !r.lead {
			close(r.turn)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		g.leading = false
		return
	}
	next := g.waiting[0]
	next.lead = true
	close(next.turn)
}

// storeGroup stores a group in one transaction. An observation that cannot be stored
// (unknown or decommissioned host) gets its error and the others are stored. If the
// transaction fails, each observation is stored on its own, so that one cannot fail the
// others. Two observations of one host are never in one transaction: the second waits for
// the first.
func (s *Store) storeGroup(ctx context.Context, rs []*observing) {
	seen := make(map[string]bool, len(rs))
	var now, later []*observing
	for _, r := range rs {
		if seen[r.o.HostID] {
			later = append(later, r)
			continue
		}
		seen[r.o.HostID] = true
		now = append(now, r)
	}
	if err := s.observeAll(ctx, now); err != nil && len(now) > 1 {
		for _, r := range now {
			_ = s.observeAll(ctx, []*observing{r})
		}
	}
	if len(later) > 0 {
		s.storeGroup(ctx, later)
	}
}

// observed is what storing one observation produced.
type observed struct {
	report events.HostInventoryReported
	save   inventorydb.SaveObservationParams
	msgs   []events.Message
	setID  int64
	hash   string
	pkgs   []query.Package // the canonical list, if it was built
}

// observeAll stores observations of distinct hosts in one transaction and sets their
// outcomes; the error is the transaction's, also set as every observation's outcome.
func (s *Store) observeAll(ctx context.Context, rs []*observing) error {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.o.HostID
	}
	for _, r := range rs {
		r.err = nil // a retry on its own after a failed group starts afresh
	}
	done := make([]*observed, len(rs))
	err := s.inTx(ctx, func(tx pgx.Tx, q *inventorydb.Queries) error {
		hosts, err := q.LockHosts(ctx, ids)
		if err != nil {
			return fmt.Errorf("lock %d hosts (%s…): %w", len(ids), ids[0], err)
		}
		byID := make(map[string]inventorydb.Host, len(hosts))
		for _, h := range hosts {
			byID[h.ID] = h
		}
		var saves []inventorydb.SaveObservationParams
		var msgs []events.Message
		for i, r := range rs {
			h, ok := byID[r.o.HostID]
			switch {
			case !ok:
				r.err = fmt.Errorf("host %s: %w", r.o.HostID, ErrNotFound)
			case h.Retired:
				r.err = fmt.Errorf("host %s: %w", r.o.HostID, ErrRetired)
			default:
				d, err := s.observe(ctx, q, h, r.o)
				if err != nil {
					return err
				}
				done[i] = d
				saves = append(saves, d.save)
				msgs = append(msgs, d.msgs...)
			}
		}
		if len(saves) == 0 {
			return nil
		}
		var saveErr error
		// One round trip for the group's rows.
		q.SaveObservation(ctx, saves).Exec(func(i int, err error) {
			if err != nil && saveErr == nil {
				saveErr = fmt.Errorf("save observation of %s: %w", saves[i].ID, err)
			}
		})
		if saveErr != nil {
			return saveErr
		}
		return outbox.Add(ctx, tx, msgs...)
	})
	for i, r := range rs {
		d := done[i]
		switch {
		case err != nil:
			r.err = err
		case d != nil:
			r.report = d.report
			// Committed: the set exists now, even if this transaction stored it.
			s.setIDs.put(d.hash, d.setID)
			if d.pkgs != nil {
				// The host's next scan compares its packages with this list.
				s.lists.put(d.setID, d.hash, d.pkgs)
			}
		}
	}
	return err
}

// observe works out what an observation of host h (locked) changes: the row to save and
// the events to announce, storing what it needs on the way (a pinned key, a new package
// set, installs it explains).
func (s *Store) observe(ctx context.Context, q *inventorydb.Queries, h inventorydb.Host, o Observation) (*observed, error) {
	if o.AcceptedKey != "" && h.HostKey == "" {
		if _, err := q.PinTOFUKey(ctx, inventorydb.PinTOFUKeyParams{ID: h.ID, HostKey: o.AcceptedKey, At: &o.At}); err != nil {
			return nil, fmt.Errorf("pin host key of %s: %w", h.ID, err)
		}
	}
	setID, hash, pkgs, err := s.observedSet(ctx, q, h, o.Facts)
	if err != nil {
		return nil, err
	}
	count := len(o.Facts.Packages)
	if pkgs != nil {
		count = len(pkgs)
	}
	var changes []events.PackageChange
	if h.PackageSetID.Valid && h.PackageSetID.Int64 != setID {
		_, prev, err := s.setPackages(ctx, q, h.PackageSetID.Int64)
		if err != nil {
			return nil, fmt.Errorf("previous packages of %s: %w", h.ID, err)
		}
		changes = drift.Changes(prev, pkgs)
	}
	var unexplained []events.PackageChange
	if len(changes) > 0 {
		rows, err := q.Installs(ctx, h.ID)
		if err != nil {
			return nil, fmt.Errorf("installs of %s: %w", h.ID, err)
		}
		ins := make([]drift.Install, len(rows))
		for i, r := range rows {
			ins[i] = drift.Install{Name: r.Name, Version: r.Version}
		}
		var used []drift.Install
		unexplained, used = drift.Unexplained(changes, ins)
		for _, u := range used {
			if err := q.DeleteInstall(ctx, inventorydb.DeleteInstallParams{HostID: h.ID, Name: u.Name, Version: u.Version}); err != nil {
				return nil, fmt.Errorf("forget install %s %s on %s: %w", u.Name, u.Version, h.ID, err)
			}
		}
	}

	f := o.Facts
	var components []events.Component
	for _, c := range f.Components {
		if c.Present {
			components = append(components, events.Component{Name: c.Name, Version: c.Version})
		}
	}
	compJSON, err := json.Marshal(components)
	if err != nil || components == nil {
		compJSON = []byte("[]")
	}
	var since *time.Time
	newlyRequired := f.RebootRequired && !h.RebootRequired
	switch {
	case newlyRequired:
		since = &o.At
	case f.RebootRequired:
		since = h.RebootSince
	}
	save := inventorydb.SaveObservationParams{
		ID: h.ID, OsID: f.OS.ID, OsVersionID: f.OS.VersionID, OsCodename: f.OS.VersionCodename,
		Kernel: f.Kernel, BootID: f.BootID, PackageSetID: pgtype.Int8{Int64: setID, Valid: true},
		PackageCount: int32(count), Held: nonNil(f.Held), RebootRequired: f.RebootRequired,
		RebootPackages: nonNil(f.RebootPackages), RebootSince: since, Components: compJSON,
		ScannedAt: &o.At, ScanID: o.ScanID, Problems: int32(len(f.Problems)),
	}
	if o.Next != nil {
		save.ClaimedUntil, save.NextScan = &o.Next.ClaimedUntil, &o.Next.At
	}
	report := events.HostInventoryReported{HostID: h.ID, ScanID: o.ScanID, ScannedAt: o.At, Offline: o.Offline,
		OS:     events.OSRelease{ID: f.OS.ID, VersionID: f.OS.VersionID, Codename: f.OS.VersionCodename},
		Kernel: f.Kernel, BootID: f.BootID, PackageSet: hash, PackageCount: count, Changes: changes,
		Held: f.Held, RebootRequired: f.RebootRequired, RebootPackages: f.RebootPackages, Components: components}
	if h.LastScan != nil {
		report.Previous = &events.PreviousObservation{ScanID: h.LastScanID, ScannedAt: h.LastScan.UTC(),
			OS: events.OSRelease{ID: h.OsID, VersionID: h.OsVersionID, Codename: h.OsCodename}, Kernel: h.Kernel,
			BootID: h.BootID, RebootRequired: h.RebootRequired}
		switch prev := h.PackageSetID; {
		case prev.Valid && prev.Int64 == setID:
			report.Previous.PackageSet = hash
		case prev.Valid:
			if report.Previous.PackageSet, err = s.setHash(ctx, q, prev.Int64); err != nil {
				return nil, fmt.Errorf("previous package set of %s: %w", h.ID, err)
			}
		}
	}
	origin := events.Origin{Producer: Producer, CorrelationID: h.ID}
	var msgs []events.Message
	add := func(e events.Event) error {
		m, err := events.NewDerived(e, origin, o.At, o.ScanID)
		if err != nil {
			return fmt.Errorf("host %s scan %s: %w", h.ID, o.ScanID, err)
		}
		msgs = append(msgs, m)
		return nil
	}
	if err := add(report); err != nil {
		return nil, err
	}
	if len(unexplained) > 0 {
		if err := add(events.HostDriftDetected{HostID: h.ID, ScanID: o.ScanID, Changes: unexplained}); err != nil {
			return nil, err
		}
	}
	if newlyRequired {
		if err := add(events.RebootRequired{HostID: h.ID, Packages: f.RebootPackages, Since: o.At}); err != nil {
			return nil, err
		}
	}
	return &observed{report: report, save: save, msgs: msgs, setID: setID, hash: hash, pkgs: pkgs}, nil
}

// observedSet returns the package set of a host's facts: its id and hash. The canonical list
// (pkgs) is built unless the facts are exactly the cached list of the set the host has
// (h.PackageSetID): then pkgs is nil.
func (s *Store) observedSet(ctx context.Context, q *inventorydb.Queries, h inventorydb.Host, f hostfacts.Facts) (id int64, hash string, pkgs []query.Package, err error) {
	if h.PackageSetID.Valid {
		if hash, ok := s.lists.matching(h.PackageSetID.Int64, f.Packages); ok {
			return h.PackageSetID.Int64, hash, nil, nil
		}
	}
	pkgs = Packages(f)
	id, hash, err = s.packageSet(ctx, q, pkgs)
	return id, hash, pkgs, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ScanFailed records why a host could not be scanned.
func (s *Store) ScanFailed(ctx context.Context, id, message string) error {
	if err := inventorydb.New(s.pool).SaveScanError(ctx, inventorydb.SaveScanErrorParams{ID: id, Message: message}); err != nil {
		return fmt.Errorf("record scan error of %s: %w", id, err)
	}
	return nil
}

// KeyMismatch marks a host that presented a key other than the one pinned for its scan (t)
// and announces it with HostKeyMismatch, once per presented key: later refusals of the same
// key only record the error. A host re-pinned since its scan began is left as it is.
func (s *Store) KeyMismatch(ctx context.Context, t Target, expected, presented, message string) error {
	id := t.ID
	return s.inTx(ctx, func(tx pgx.Tx, q *inventorydb.Queries) error {
		n, err := q.MarkKeyMismatch(ctx, inventorydb.MarkKeyMismatchParams{ID: id, Pinned: t.SSH.HostKey, Presented: presented, Message: message})
		if err != nil {
			return fmt.Errorf("mark key mismatch of %s: %w", id, err)
		}
		if n == 0 {
			return nil
		}
		m, err := events.New(events.HostKeyMismatch{HostID: id, Expected: expected, Presented: presented,
			DetectedBy: Producer, Description: message}, events.Origin{Producer: Producer, CorrelationID: id}, s.now())
		if err != nil {
			return fmt.Errorf("host key mismatch of %s: %w", id, err)
		}
		return outbox.Add(ctx, tx, m)
	})
}
