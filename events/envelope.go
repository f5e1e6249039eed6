// Package events is Patchfleet's event contract: the typed, versioned events the services
// exchange, the subjects and streams they travel on, the envelope every event is wrapped in,
// and the one consumer runner every service uses.
//
// Names are the contract. Within a schema version changes are additive; a breaking change is a
// new version published alongside the old one.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Envelope wraps every event on the bus. Its ID is also the JetStream Nats-Msg-Id, so a
// publisher that retries is deduplicated by the server.
type Envelope struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Time          time.Time       `json:"time"`
	Producer      string          `json:"producer"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// Event is implemented by every event struct of the catalog.
type Event interface {
	EventType() string
	SchemaVersion() int
	Validate() error
}

// Origin says who produces an event and why: the producing service, the correlation id (the
// rollout or the advisory the event belongs to) and the id of the event that caused it.
type Origin struct {
	Producer      string
	CorrelationID string
	CausationID   string
}

// Caused returns the origin of an event caused by the one described by m, keeping its
// correlation id so a rollout can be followed end to end.
func (m Meta) Caused(producer string) Origin {
	return Origin{Producer: producer, CorrelationID: m.CorrelationID, CausationID: m.ID}
}

// idSpace is the UUID namespace of derived event ids.
var idSpace = uuid.MustParse("6c1d3e0a-5b0f-4f6e-9a61-2f1c9d8e7b40")

// NewID returns a fresh, time-ordered event id.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// DerivedID returns an event id that is a pure function of its parts, for events that must be
// announced once however often they are produced (an advisory revision, a job's result).
func DerivedID(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%d:%s;", len(p), p) // length-prefixed: ("a","bc") and ("ab","c") differ
	}
	return uuid.NewSHA1(idSpace, []byte(b.String())).String()
}

// Wrap validates e and wraps it in an envelope with the given id (NewID or DerivedID).
func Wrap(id string, e Event, o Origin, now time.Time) (Envelope, error) {
	if err := e.Validate(); err != nil {
		return Envelope{}, fmt.Errorf("validate %s: %w", e.EventType(), err)
	}
	if o.Producer == "" {
		return Envelope{}, fmt.Errorf("wrap %s: producer is required", e.EventType())
	}
	if o.CorrelationID == "" {
		return Envelope{}, fmt.Errorf("wrap %s: correlation id is required", e.EventType())
	}
	data, err := json.Marshal(e)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return Envelope{
		ID:            id,
		Type:          e.EventType(),
		SchemaVersion: e.SchemaVersion(),
		Time:          now.UTC(),
		Producer:      o.Producer,
		CorrelationID: o.CorrelationID,
		CausationID:   o.CausationID,
		Data:          data,
	}, nil
}

// Message is an envelope ready for the bus: its subject, its id and its encoded bytes. The
// transactional outbox stores exactly this.
type Message struct {
	Subject string
	ID      string
	Data    []byte
}

// Encode returns the message that carries env.
func Encode(env Envelope) (Message, error) {
	// The data is appended as it is rather than through json.Marshal, which would validate
	// and compact it once more: for large events (advisories) that doubled the cost of
	// encoding. It is still checked to be one JSON value.
	if !json.Valid(env.Data) {
		return Message{}, fmt.Errorf("encode event %s: data is not valid JSON", env.ID)
	}
	return encode(env)
}

// WrapEncode is Wrap followed by Encode, for a producer that needs the envelope too (its
// data). The data is json.Marshal's own, so it is not checked again.
func WrapEncode(id string, e Event, o Origin, now time.Time) (Envelope, Message, error) {
	env, err := Wrap(id, e, o, now)
	if err != nil {
		return Envelope{}, Message{}, err
	}
	msg, err := encode(env)
	return env, msg, err
}

// encode is Encode without the check of the data.
func encode(env Envelope) (Message, error) {
	spec, ok := specs[specKey{env.Type, env.SchemaVersion}]
	if !ok {
		return Message{}, fmt.Errorf("encode event %s: unknown type %s v%d", env.ID, env.Type, env.SchemaVersion)
	}
	head, err := json.Marshal(envelopeHead{ID: env.ID, Type: env.Type, SchemaVersion: env.SchemaVersion, Time: env.Time,
		Producer: env.Producer, CorrelationID: env.CorrelationID, CausationID: env.CausationID})
	if err != nil {
		return Message{}, fmt.Errorf("encode event %s: %w", env.ID, err)
	}
	data := make([]byte, 0, len(head)+len(`,"data":`)+len(env.Data))
	data = append(data, head[:len(head)-1]...) // without its closing brace
	data = append(data, `,"data":`...)
	data = append(data, env.Data...)
	data = append(data, '}')
	return Message{Subject: spec.Subject, ID: env.ID, Data: data}, nil
}

// envelopeHead is an Envelope without its data, in the same field order.
type envelopeHead struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	SchemaVersion int       `json:"schema_version"`
	Time          time.Time `json:"time"`
	Producer      string    `json:"producer"`
	CorrelationID string    `json:"correlation_id"`
	CausationID   string    `json:"causation_id,omitempty"`
}

// New wraps e with a fresh id and encodes it: the usual way to produce an event.
func New(e Event, o Origin, now time.Time) (Message, error) {
	_, msg, err := WrapEncode(NewID(), e, o, now)
	return msg, err
}

// NewDerived is New with an id derived from parts (see DerivedID).
func NewDerived(e Event, o Origin, now time.Time, parts ...string) (Message, error) {
	_, msg, err := WrapEncode(DerivedID(append([]string{e.EventType()}, parts...)...), e, o, now)
	return msg, err
}

// ErrInvalid marks an event that cannot be decoded or does not validate. Handlers never see
// such events: the runner dead-letters them.
var ErrInvalid = errors.New("invalid event")

// DecodeEnvelope parses and checks an envelope.
func DecodeEnvelope(data []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, fmt.Errorf("%w: decode envelope: %v", ErrInvalid, err)
	}
	switch {
	case env.ID == "":
		return env, fmt.Errorf("%w: envelope has no id", ErrInvalid)
	case env.Type == "":
		return env, fmt.Errorf("%w: envelope %s has no type", ErrInvalid, env.ID)
	case env.SchemaVersion < 1:
		return env, fmt.Errorf("%w: envelope %s has no schema version", ErrInvalid, env.ID)
	case env.Time.IsZero():
		return env, fmt.Errorf("%w: envelope %s has no time", ErrInvalid, env.ID)
	case env.Producer == "":
		return env, fmt.Errorf("%w: envelope %s has no producer", ErrInvalid, env.ID)
	case len(env.Data) == 0:
		return env, fmt.Errorf("%w: envelope %s has no data", ErrInvalid, env.ID)
	}
	return env, nil
}

// DecodeData decodes and validates the payload of env into e.
func DecodeData(env Envelope, e Event) error {
	if env.Type != e.EventType() || env.SchemaVersion != e.SchemaVersion() {
		return fmt.Errorf("%w: event %s is %s v%d, want %s v%d", ErrInvalid, env.ID, env.Type, env.SchemaVersion, e.EventType(), e.SchemaVersion())
	}
	if err := json.Unmarshal(env.Data, e); err != nil {
		return fmt.Errorf("%w: decode %s %s: %v", ErrInvalid, env.Type, env.ID, err)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrInvalid, env.Type, env.ID, err)
	}
	return nil
}
