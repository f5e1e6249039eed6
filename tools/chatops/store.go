package chatops

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/tools/chatops/progress"
	"github.com/patchfleet/patchfleet/tools/chatops/slack"
)

// KV buckets of the bot's state. The bot keeps no PostgreSQL schema: its state is a few
// small keyed records, JetStream is already its one dependency, and no transaction could
// span a Slack call anyway.
const (
	BucketSeen     = "chatops_seen"     // event ids already announced (expire after SeenFor)
	BucketRollouts = "chatops_rollouts" // per rollout: thread, progress and approval messages
	SeenFor        = 30 * 24 * time.Hour
)

// Store is the bot's durable state.
type Store struct {
	seen, rollouts jetstream.KeyValue
}

// OpenStore creates or opens the buckets.
func OpenStore(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	replicas = max(replicas, 1)
	seen, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketSeen, TTL: SeenFor, Replicas: replicas, Storage: jetstream.FileStorage,
		Description: "ChatOps bot: event ids already announced"})
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", BucketSeen, err)
	}
	rollouts, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketRollouts, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
		MaxValueSize: 1 << 20, Description: "ChatOps bot: Slack thread and messages per rollout"})
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", BucketRollouts, err)
	}
	return &Store{seen: seen, rollouts: rollouts}, nil
}

// key makes any id a valid KV key.
func key(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// Seen reports whether the event was announced already.
func (s *Store) Seen(ctx context.Context, eventID string) (bool, error) {
	_, err := s.seen.Get(ctx, key(eventID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("check event %s: %w", eventID, err)
	}
	return true, nil
}

// MarkSeen records an announced event.
func (s *Store) MarkSeen(ctx context.Context, eventID string) error {
	if _, err := s.seen.Put(ctx, key(eventID), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("record event %s: %w", eventID, err)
	}
	return nil
}

// rolloutState is what the bot remembers about a rollout.
type rolloutState struct {
	Progress     progress.Rollout `json:"progress"`
	Rooted       bool             `json:"rooted"`        // the thread's first message is posted
	Headed       bool             `json:"headed"`        // …and shows the plan
	Thread       slack.Ref        `json:"thread"`        // empty for webhooks
	ProgressMsg  slack.Ref        `json:"progress_msg"`  // the message updated in place
	Approval     slack.Ref        `json:"approval"`      // the message with the buttons
	LastProgress time.Time        `json:"last_progress"` // last progress update
}

// load returns a rollout's state and its revision (0: new).
func (s *Store) load(ctx context.Context, id string) (*rolloutState, uint64, error) {
	e, err := s.rollouts.Get(ctx, key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &rolloutState{Progress: progress.Rollout{ID: id}}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load rollout %s: %w", id, err)
	}
	var st rolloutState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("decode rollout %s: %w", id, err)
	}
	return &st, e.Revision(), nil
}

// save stores a rollout's state if nobody changed it since rev (another bot instance).
func (s *Store) save(ctx context.Context, id string, st *rolloutState, rev uint64) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode rollout %s: %w", id, err)
	}
	if rev == 0 {
		_, err = s.rollouts.Create(ctx, key(id), b)
	} else {
		_, err = s.rollouts.Update(ctx, key(id), b, rev)
	}
	if err != nil {
		return fmt.Errorf("save rollout %s: %w", id, err)
	}
	return nil
}
