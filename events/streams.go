package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DuplicateWindow is how long JetStream remembers event ids: a publisher that retries (an
// outbox relay restarted after a crash, say) within it is deduplicated by the server.
const DuplicateWindow = 24 * time.Hour

// SubjectDLQ is where the runner puts what a consumer could not process, by consumer name.
const SubjectDLQ = "pf.dlq"

// StreamConfigs returns the streams of the contract, each with the given number of replicas
// (1 on one machine, 3 on a cluster).
func StreamConfigs(replicas int) []jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	log := func(name, subject string, maxAge time.Duration, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			MaxAge:      maxAge,
			Duplicates:  DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		}
	}
	const day = 24 * time.Hour
	jobs := log(StreamJobs, "pf.jobs.>", 30*day, "upgrade jobs: the executor's work queue")
	jobs.Retention = jetstream.WorkQueuePolicy
	jobs.Discard = jetstream.DiscardNew // a full queue refuses new jobs rather than dropping old ones
	return []jetstream.StreamConfig{
		log(StreamFeeds, "pf.feeds.>", 7*day, "advisories submitted by external feed publishers, for advisory-ingest"),
		log(StreamAdvisories, "pf.advisories.>", 10*365*day, "security advisories, one event per revision"),
		log(StreamHosts, "pf.hosts.>", 180*day, "host register, inventory, drift and reboots"),
		log(StreamRollouts, "pf.rollouts.>", 365*day, "rollout plans, decisions and progress"),
		log(StreamUpgrades, "pf.upgrades.>", 365*day, "upgrade job outcomes"),
		jobs,
		log(StreamDLQ, SubjectDLQ+".>", 30*day, "events a consumer could not process, with the reason"),
	}
}

// EnsureStreams creates the streams or brings their configuration up to date. A stream that
// already has the contract's configuration is only read, never updated, so a service whose
// NATS user may read but not manage streams starts once an administrator has created them.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, want := range StreamConfigs(replicas) {
		s, err := js.Stream(ctx, want.Name)
		if err == nil && sameStream(s.CachedInfo().Config, want) {
			continue
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("ensure stream %s: %w", want.Name, err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, want); err != nil {
			return fmt.Errorf("ensure stream %s: %w", want.Name, err)
		}
	}
	return nil
}

// sameStream compares the fields the contract sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Replicas == want.Replicas && have.MaxAge == want.MaxAge &&
		have.Duplicates == want.Duplicates && have.Discard == want.Discard && have.Description == want.Description
}

// Publish puts a message on its stream, with its event id as Nats-Msg-Id so that a retried
// publish is stored once.
func Publish(ctx context.Context, js jetstream.JetStream, m Message) error {
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Data
	msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s %s: %w", m.Subject, m.ID, err)
	}
	return nil
}
