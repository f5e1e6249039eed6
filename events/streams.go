package events

import (
	"context"
	"fmt"
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

// EnsureStreams creates the streams or brings their configuration up to date.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, cfg := range StreamConfigs(replicas) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
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
