// Package rollout is the planner's durable state machine. It turns advisories, inventory
// changes and people's requests into rollouts persisted in PostgreSQL, and drives each
// rollout wave by wave from the executor's results and a ticker:
//
//	awaiting_approval ──RolloutApproved(plan hash)──► scheduled ──time, window──► running
//	awaiting_approval ──RolloutRejected──► rejected
//	scheduled|running ──RolloutPaused──► paused ──RolloutResumed──► scheduled|running
//	running ──failure budget spent / canary failed──► halted ──RolloutResumed──► running
//	running ──last wave done──► completed
//	any open state ──RolloutCancelled──► cancelled
//
// Every transition and the events announcing it commit in one transaction (outbox.Add); every
// consumed event is recorded in the same transaction (inbox.Seen), except a job's success,
// whose one statement is a no-op when delivered again. Event ids are derived
// from the rollout, host and attempt, so a transaction replayed after a crash, or a second
// planner instance doing the same work, produces the same ids and JetStream stores each
// event once.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/manifest"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
	"github.com/patchfleet/patchfleet/services/planner/internal/window"
)

// Inventory is what the planner asks the inventory (query.Client answers it over NATS).
type Inventory interface {
	Exposure(ctx context.Context, req query.ExposureRequest) (query.ExposureResponse, error)
	Hosts(ctx context.Context, req query.HostsRequest) (query.HostsResponse, error)
	Host(ctx context.Context, req query.HostRequest) (query.HostDetail, error)
}

// Engine runs the state machine.
type Engine struct {
	Pool      *pgxpool.Pool
	Policy    *policy.Policy
	Inventory Inventory
	Now       func() time.Time
	Logger    *slog.Logger
	Producer  string // the producer of the events it emits
	PageSize  int    // inventory page size; default 1000
	// Docker is the Docker manifest docker rollouts upgrade to; nil refuses them.
	Docker *manifest.Manifest

	lists packageLists // package lists by set, for re-evaluations

	kickMu sync.Mutex
	kicked map[string]string // rollouts to advance (see kick) → the event that asked
	wake   chan struct{}     // the ticker's: something was kicked
}

// Consumer names recorded in the inbox, one per kind of input.
const (
	inboxAdvisories = "planner.advisories"
	inboxHosts      = "planner.hosts"
	inboxUpgrades   = "planner.upgrades"
	inboxDecisions  = "planner.decisions"
	inboxRequests   = "planner.requests"
)

var openStates = []string{query.RolloutAwaitingApproval, query.RolloutScheduled, query.RolloutRunning, query.RolloutPaused, query.RolloutHalted}

func isOpen(state string) bool {
	for _, s := range openStates {
		if s == state {
			return true
		}
	}
	return false
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) pageSize() int {
	if e.PageSize > 0 {
		return e.PageSize
	}
	return 1000
}

// inTx runs fn in a transaction with the planner's queries.
func (e *Engine) inTx(ctx context.Context, fn func(tx pgx.Tx, q *plannerdb.Queries) error) error {
	return db.InTx(ctx, e.Pool, func(tx pgx.Tx) error { return fn(tx, plannerdb.New(tx)) })
}

func (e *Engine) origin(rolloutID, causation string) events.Origin {
	return events.Origin{Producer: e.Producer, CorrelationID: rolloutID, CausationID: causation}
}

func (e *Engine) log(rolloutID string) *slog.Logger {
	return e.Logger.With("rollout_id", rolloutID, "correlation_id", rolloutID)
}

// windows parses a rollout's stored windows; they were validated when the policy was read.
func windows(r plannerdb.Rollout) window.Set {
	set, err := window.ParseSet(r.Windows)
	if err != nil {
		return nil
	}
	return set
}

func (e *Engine) windowOpen(r plannerdb.Rollout, now time.Time) bool {
	return r.IgnoreWindows || windows(r).Open(now)
}

func ptr[T any](v T) *T { return &v }

var errNotFound = errors.New("not found")

func notFound(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

func wrapRollout(op, id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s rollout %s: %w", op, id, err)
}
