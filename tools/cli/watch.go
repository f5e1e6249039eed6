package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/progress"
)

// watch follows a rollout on ephemeral ordered consumers of ROLLOUTS and UPGRADES, from
// just before the rollout was created, and redraws its progress on every change. It returns
// when RolloutCompleted arrives: nil if the rollout completed without failures.
func (a *App) watch(ctx context.Context, d query.RolloutDetail) error {
	js, err := a.js()
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if !d.CreatedAt.IsZero() {
		start := d.CreatedAt.Add(-time.Minute) // clock skew between the planner and the server
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start}
	}
	envs := make(chan events.Envelope, 64)
	for _, stream := range []string{events.StreamRollouts, events.StreamUpgrades} {
		cons, err := js.OrderedConsumer(ctx, stream, cfg)
		if err != nil {
			return fmt.Errorf("watch %s on %s: %w", d.ID, stream, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			env, err := events.DecodeEnvelope(m.Data())
			if err != nil {
				return
			}
			select {
			case envs <- env:
			case <-ctx.Done():
			}
		})
		if err != nil {
			return fmt.Errorf("watch %s on %s: %w", d.ID, stream, err)
		}
		defer cc.Stop()
	}
	// The two streams interleave freely: a host's result can arrive before the plan it
	// belongs to, so nothing is printed until the plan is known (p.Known).
	p := &progress.Rollout{ID: d.ID}
	last := ""
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case env := <-envs:
			e, ok, err := progress.Decode(env)
			if err != nil || !ok || progress.RolloutID(e) != d.ID {
				continue
			}
			p.Apply(e)
			if a.opts.Output == "json" {
				if err := writeJSON(a.Out, env); err != nil {
					return err
				}
			} else if t := progress.Text(p); t != last && p.Known() {
				fmt.Fprintf(a.Out, "%s\n\n", t)
				last = t
			}
			if done, ok := e.(events.RolloutCompleted); ok {
				if done.Outcome != "completed" || done.Failed > 0 {
					return fmt.Errorf("rollout %s %s: %d succeeded, %d failed, %d skipped", d.ID, done.Outcome, done.Succeeded, done.Failed, done.Skipped)
				}
				return nil
			}
		}
	}
}
