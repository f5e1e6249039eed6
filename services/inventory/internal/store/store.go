// Package store keeps the inventory in PostgreSQL (schema inventory): the host register, the
// package sets hosts point to, the advisories seen, and what Patchfleet installed. Every
// change that announces itself commits with its event (outbox); every change made for a
// consumed event commits with the event's id (inbox).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/inbox"
	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// Producer is the producer name of the events the inventory publishes.
const Producer = "inventory"

// ErrNotFound means no host (or advisory) has the id asked for.
var ErrNotFound = errors.New("not found")

// ErrRetired refuses an observation of a decommissioned host: a scan or report that was
// under way when the host was decommissioned is dropped.
var ErrRetired = errors.New("decommissioned")

// Store is the inventory's database.
type Store struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	sets   setCache
	lists  listCache
	setIDs setIDCache
	hosts  hostCopy
	group  group // observations waiting to be stored
}

// New returns a store on a pool connected to the inventory schema.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool, now: time.Now} }

func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx, q *inventorydb.Queries) error) error {
	return db.InTx(ctx, s.pool, func(tx pgx.Tx) error { return fn(tx, inventorydb.New(tx)) })
}

// consume runs fn in a transaction that also records the event id, once per consumer: a
// redelivered event changes nothing.
func (s *Store) consume(ctx context.Context, consumer, eventID string, fn func(tx pgx.Tx, q *inventorydb.Queries) error) error {
	return s.inTx(ctx, func(tx pgx.Tx, q *inventorydb.Queries) error {
		already, err := inbox.Seen(ctx, tx, consumer, eventID)
		if err != nil || already {
			return err
		}
		return fn(tx, q)
	})
}

// ---- register ----

// Register adds or updates a host; actor says who (an API token's name, "event:<producer>",
// "file:<path>") and is recorded as the one who allowed trust on first use, if allowed.
// It reports whether the host is new to the register.
func (s *Store) Register(ctx context.Context, e events.HostRegistered, actor string) (created bool, err error) {
	err = s.inTx(ctx, func(_ pgx.Tx, q *inventorydb.Queries) error {
		created, err = upsertHost(ctx, q, e, actor)
		return err
	})
	return created, err
}

// Import registers every host of a hosts file in one transaction. Hosts are written in id
// order, the order in which every transaction locks several hosts (LockHosts): an import
// during a scan round cannot deadlock with it.
func (s *Store) Import(ctx context.Context, hosts []events.HostRegistered, actor string) (created int, err error) {
	hosts = slices.Clone(hosts)
	slices.SortStableFunc(hosts, func(a, b events.HostRegistered) int { return strings.Compare(a.HostID, b.HostID) })
	err = s.inTx(ctx, func(_ pgx.Tx, q *inventorydb.Queries) error {
		created = 0
		for _, h := range hosts {
			c, err := upsertHost(ctx, q, h, actor)
			if err != nil {
				return err
			}
			if c {
				created++
			}
		}
		return nil
	})
	return created, err
}

// RegisterEvent applies a consumed HostRegistered.
func (s *Store) RegisterEvent(ctx context.Context, consumer string, m events.Meta, e events.HostRegistered) error {
	return s.consume(ctx, consumer, m.ID, func(_ pgx.Tx, q *inventorydb.Queries) error {
		_, err := upsertHost(ctx, q, e, "event:"+m.Producer)
		return err
	})
}

func upsertHost(ctx context.Context, q *inventorydb.Queries, e events.HostRegistered, actor string) (bool, error) {
	tags, err := json.Marshal(e.Tags)
	if err != nil || e.Tags == nil {
		tags = []byte("{}")
	}
	port := e.SSH.Port
	if port == 0 {
		port = 22
	}
	allowedBy := ""
	if e.SSH.TOFU {
		allowedBy = actor
	}
	created, err := q.UpsertHost(ctx, inventorydb.UpsertHostParams{
		ID: e.HostID, Name: e.Name, Fleet: e.Fleet, Tags: tags, Address: e.SSH.Address, Port: int32(port),
		SshUser: e.SSH.User, Bastion: e.SSH.Bastion, Sudo: e.SSH.Sudo, HostKey: e.SSH.HostKey, Tofu: e.SSH.TOFU,
		// A replacement is new but waits for no full upgrade of its own: its replace job
		// gives it one (and the planner plans none).
		TofuAllowedBy: allowedBy, IsNew: e.New && e.Replaces == "", AppPath: e.AppPath, RegisteredBy: actor,
	})
	if err != nil {
		return false, fmt.Errorf("register host %s: %w", e.HostID, err)
	}
	return created, nil
}

// Decommission retires a host: it stays in the register (queries with include_retired see
// it) but is no longer scanned, exposed or planned. ErrNotFound for an unknown host.
func (s *Store) Decommission(ctx context.Context, id, reason string) error {
	return s.inTx(ctx, func(_ pgx.Tx, q *inventorydb.Queries) error { return retire(ctx, q, id, reason, s.now()) })
}

// DecommissionEvent applies a consumed HostDecommissioned. An unknown host is permanent: no
// retry can make it known.
func (s *Store) DecommissionEvent(ctx context.Context, consumer string, m events.Meta, e events.HostDecommissioned) error {
	return s.consume(ctx, consumer, m.ID, func(_ pgx.Tx, q *inventorydb.Queries) error {
		err := retire(ctx, q, e.HostID, e.Reason, s.now())
		if errors.Is(err, ErrNotFound) {
			return events.Permanent(err)
		}
		return err
	})
}

func retire(ctx context.Context, q *inventorydb.Queries, id, reason string, now time.Time) error {
	n, err := q.RetireHost(ctx, inventorydb.RetireHostParams{ID: id, Reason: reason, At: &now})
	if err != nil {
		return fmt.Errorf("retire host %s: %w", id, err)
	}
	if n == 0 {
		exists, err := q.HostExists(ctx, id)
		if err != nil {
			return fmt.Errorf("retire host %s: %w", id, err)
		}
		if !exists {
			return fmt.Errorf("retire host %s: %w", id, ErrNotFound)
		}
	}
	return nil
}

// ---- reads ----

// Host returns one host by id (or name), with its packages if asked.
func (s *Store) Host(ctx context.Context, id string, withPackages bool) (query.HostDetail, error) {
	q := inventorydb.New(s.pool)
	h, err := q.GetHost(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return query.HostDetail{}, fmt.Errorf("host %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return query.HostDetail{}, fmt.Errorf("get host %s: %w", id, err)
	}
	out := query.HostDetail{Host: ToHost(h)}
	if !h.PackageSetID.Valid {
		return out, nil
	}
	if withPackages {
		out.PackageSet, out.Packages, err = s.setPackages(ctx, q, h.PackageSetID.Int64)
	} else {
		out.PackageSet, err = s.setHash(ctx, q, h.PackageSetID.Int64)
	}
	if err != nil {
		return query.HostDetail{}, fmt.Errorf("host %s packages: %w", id, err)
	}
	return out, nil
}

// setPackages returns a package set's hash and its members in canonical order.
func (s *Store) setPackages(ctx context.Context, q *inventorydb.Queries, setID int64) (string, []query.Package, error) {
	if hash, out, ok := s.lists.get(setID); ok {
		return hash, out, nil
	}
	hash, err := q.PackageSetHash(ctx, setID)
	if err != nil {
		return "", nil, err
	}
	rows, err := q.SetMembers(ctx, setID)
	if err != nil {
		return "", nil, err
	}
	out := make([]query.Package, len(rows))
	for i, r := range rows {
		out[i] = query.Package{Name: r.Name, Version: r.Version, Arch: r.Arch, SourceName: r.SourceName,
			SourceVersion: r.SourceVersion, Status: r.Status}
	}
	s.lists.put(setID, hash, out)
	return hash, out, nil
}

func (s *Store) setHash(ctx context.Context, q *inventorydb.Queries, setID int64) (string, error) {
	if hash, ok := s.lists.hash(setID); ok {
		return hash, nil
	}
	return q.PackageSetHash(ctx, setID)
}

// Target is what the scanner needs of a host.
type Target struct {
	ID      string
	Name    string
	SSH     events.SSHTarget
	AppPath string
}

func target(h inventorydb.Host) Target {
	return Target{ID: h.ID, Name: h.Name, SSH: sshTarget(h), AppPath: h.AppPath}
}

func sshTarget(h inventorydb.Host) events.SSHTarget {
	return events.SSHTarget{Address: h.Address, Port: int(h.Port), User: h.SshUser, Bastion: h.Bastion,
		Sudo: h.Sudo, HostKey: h.HostKey, TOFU: h.Tofu}
}

// ToHost converts a register row.
func ToHost(h inventorydb.Host) query.Host {
	out := query.Host{
		ID: h.ID, Name: h.Name, Fleet: h.Fleet, SSH: sshTarget(h), New: h.IsNew, AppPath: h.AppPath, Retired: h.Retired,
		KeyMismatch: h.KeyMismatch, OS: events.OSRelease{ID: h.OsID, VersionID: h.OsVersionID, Codename: h.OsCodename},
		Kernel: h.Kernel, BootID: h.BootID, LastScanError: h.LastScanError, PackageCount: int(h.PackageCount),
		Held: h.Held, RebootRequired: h.RebootRequired, RebootPackages: h.RebootPackages,
	}
	if h.LastScan != nil {
		out.LastScan = h.LastScan.UTC()
	}
	_ = json.Unmarshal(h.Tags, &out.Tags)
	_ = json.Unmarshal(h.Components, &out.Components)
	if len(out.Tags) == 0 {
		out.Tags = nil
	}
	if len(out.Held) == 0 {
		out.Held = nil
	}
	if len(out.RebootPackages) == 0 {
		out.RebootPackages = nil
	}
	if len(out.Components) == 0 {
		out.Components = nil
	}
	return out
}
