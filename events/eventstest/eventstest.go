// Package eventstest gives a test its own in-process JetStream server with the contract's
// streams, and helpers to wait for events.
package eventstest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
)

// Bus is a test's JetStream.
type Bus struct {
	Server *embedded.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// Start starts a server without sockets, creates the streams and stops it when the test ends.
func Start(t testing.TB) *Bus {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	return &Bus{Server: srv, Conn: nc, JS: js}
}

// Publish publishes e with a fresh id and fails the test on error.
func (b *Bus) Publish(t testing.TB, e events.Event, correlation string) events.Message {
	t.Helper()
	m, err := events.New(e, events.Origin{Producer: "test", CorrelationID: correlation}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Publish(context.Background(), b.JS, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Envelopes returns every envelope stored on stream, in order.
func (b *Bus) Envelopes(t testing.TB, stream string) []events.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Envelope
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted (work queue) or purged
		}
		var env events.Envelope
		if err := json.Unmarshal(raw.Data, &env); err != nil {
			t.Fatalf("stream %s seq %d: %v", stream, seq, err)
		}
		out = append(out, env)
	}
	return out
}

// WaitFor polls until cond holds or the deadline passes, failing the test then.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
