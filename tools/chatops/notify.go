package chatops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/command"
	"github.com/patchfleet/patchfleet/tools/chatops/progress"
	"github.com/patchfleet/patchfleet/tools/chatops/slack"
)

// Register puts the bot's handlers on a consumer.
func (b *Bot) Register(c *events.Consumer) {
	events.On(c, b.onAdvisory)
	events.On(c, rolloutHandler(b, b.onPlanned))
	events.On(c, rolloutHandler(b, b.onApprovalRequested))
	events.On(c, rolloutHandler(b, decided[events.RolloutApproved](b, command.Approve)))
	events.On(c, rolloutHandler(b, decided[events.RolloutRejected](b, command.Reject)))
	events.On(c, rolloutHandler(b, decided[events.RolloutPaused](b, command.Pause)))
	events.On(c, rolloutHandler(b, decided[events.RolloutResumed](b, command.Resume)))
	events.On(c, rolloutHandler(b, decided[events.RolloutCancelled](b, command.Cancel)))
	events.On(c, rolloutHandler(b, progressOf[events.WaveStarted](b, true, nil)))
	events.On(c, rolloutHandler(b, progressOf[events.WaveCompleted](b, true, nil)))
	events.On(c, rolloutHandler(b, progressOf[events.UpgradeCompleted](b, false, nil)))
	events.On(c, rolloutHandler(b, progressOf(b, false, FailureMessage)))
	events.On(c, rolloutHandler(b, b.onHalted))
	events.On(c, rolloutHandler(b, b.onCompleted))
	events.On(c, b.onRebootRequired)
	events.On(c, rolloutHandler(b, b.onRebooted))
}

// once runs fn unless the event was announced already, and records it afterwards. Slack
// errors that no retry can fix become permanent (the event goes to the DLQ with the
// reason); all others are retried by the runner with backoff.
func (b *Bot) once(ctx context.Context, m events.Meta, fn func(context.Context) error) error {
	seen, err := b.Store.Seen(ctx, m.ID)
	if err != nil || seen {
		return err
	}
	if err := fn(ctx); err != nil {
		if slack.Permanent(err) {
			return events.Permanent(err)
		}
		return err
	}
	return b.Store.MarkSeen(ctx, m.ID)
}

type rolloutFunc[E events.Event] func(ctx context.Context, st *rolloutState, e E) error

// rolloutHandler loads the rollout's state, runs fn and saves the state, even when fn
// failed halfway: what was posted stays known, so a retry does not post it again.
func rolloutHandler[E events.Event](b *Bot, fn rolloutFunc[E]) events.HandlerFunc[E] {
	return func(ctx context.Context, m events.Meta, e E) error {
		id := progress.RolloutID(e)
		if id == "" {
			return nil // an upgrade outside any rollout
		}
		return b.once(ctx, m, func(ctx context.Context) error {
			st, rev, err := b.Store.load(ctx, id)
			if err != nil {
				return err
			}
			ferr := fn(ctx, st, e)
			if err := b.Store.save(ctx, id, st, rev); err != nil {
				return errors.Join(ferr, err)
			}
			return ferr
		})
	}
}

// post posts m into the rollout's thread (the channel, for webhooks).
func (b *Bot) post(ctx context.Context, st *rolloutState, m slack.Message) (slack.Ref, error) {
	m.Channel, m.ThreadTS = b.Channel, st.Thread.TS
	return b.Chat.Post(ctx, m)
}

// thread makes sure the rollout's thread exists: its first message is the plan when the
// plan is known, a placeholder otherwise (events of other streams can come first).
func (b *Bot) thread(ctx context.Context, st *rolloutState) error {
	hasPlan := st.Progress.Kind != ""
	switch {
	case !st.Rooted:
		ref, err := b.Chat.Post(ctx, withChannel(HeaderMessage(&st.Progress), b.Channel))
		if err != nil {
			return err
		}
		st.Rooted, st.Headed, st.Thread = true, hasPlan, ref
	case hasPlan && !st.Headed && st.Thread.TS != "":
		if err := b.Chat.Update(ctx, st.Thread, HeaderMessage(&st.Progress)); err != nil && !errors.Is(err, slack.ErrNoUpdate) {
			return err
		}
		st.Headed = true
	}
	return nil
}

func withChannel(m slack.Message, ch string) slack.Message { m.Channel = ch; return m }

func (b *Bot) onPlanned(ctx context.Context, st *rolloutState, e events.RolloutPlanned) error {
	st.Progress.Apply(e)
	return b.thread(ctx, st)
}

func (b *Bot) onApprovalRequested(ctx context.Context, st *rolloutState, e events.RolloutApprovalRequested) error {
	st.Progress.Apply(e)
	if err := b.thread(ctx, st); err != nil {
		return err
	}
	m := ApprovalMessage(e)
	m.ReplyBroadcast = true // the question shows in the channel too
	ref, err := b.post(ctx, st, m)
	if err != nil {
		return err
	}
	st.Approval = ref
	return nil
}

// decided announces a decision and takes the buttons off the approval request. An approval
// the planner refuses (another plan, not an approver: one published from the CLI or by
// another tool) is announced as refused, and the request keeps its buttons.
func decided[E events.Event](b *Bot, verb string) rolloutFunc[E] {
	return func(ctx context.Context, st *rolloutState, e E) error {
		if a, ok := any(e).(events.RolloutApproved); ok {
			if why := st.Progress.ApprovalRefusal(a); why != "" {
				if err := b.thread(ctx, st); err != nil {
					return err
				}
				_, err := b.post(ctx, st, RefusedApprovalMessage(a, why))
				return err
			}
		}
		st.Progress.Apply(e)
		if err := b.thread(ctx, st); err != nil {
			return err
		}
		d, hash := decisionOf(e)
		m := DecisionMessage(verb, d.RolloutID, d.By, hash, d.Reason)
		if (verb == command.Approve || verb == command.Reject) && st.Approval.TS != "" {
			if err := b.Chat.Update(ctx, st.Approval, m); err == nil {
				st.Approval = slack.Ref{}
			} else if !slack.Permanent(err) && !errors.Is(err, slack.ErrNoUpdate) {
				return err
			}
		}
		if _, err := b.post(ctx, st, m); err != nil {
			return err
		}
		return b.refresh(ctx, st, true)
	}
}

func decisionOf(e events.Event) (events.Decision, string) {
	switch e := e.(type) {
	case events.RolloutApproved:
		return e.Decision, e.PlanHash
	case events.RolloutRejected:
		return e.Decision, e.PlanHash
	case events.RolloutPaused:
		return e.Decision, ""
	case events.RolloutResumed:
		return e.Decision, ""
	case events.RolloutCancelled:
		return e.Decision, ""
	}
	return events.Decision{}, ""
}

// progressOf applies a wave or host event and refreshes the progress message. Wave
// boundaries always refresh it; host results at most every ProgressEvery. extra, when set,
// is posted on its own first (a failure with its reason and output).
func progressOf[E events.Event](b *Bot, force bool, extra func(E) slack.Message) rolloutFunc[E] {
	return func(ctx context.Context, st *rolloutState, e E) error {
		st.Progress.Apply(e)
		if err := b.thread(ctx, st); err != nil {
			return err
		}
		if extra != nil {
			if _, err := b.post(ctx, st, extra(e)); err != nil {
				return err
			}
			// The failure is out; a failing progress refresh must not post it twice.
			if err := b.refresh(ctx, st, force); err != nil {
				b.Logger.Warn("refresh progress", "rollout_id", st.Progress.ID, "err", err)
			}
			return nil
		}
		return b.refresh(ctx, st, force)
	}
}

// refresh updates the progress message in place, or posts it the first time. Posters that
// cannot update (webhooks) get a new progress message at wave boundaries only.
func (b *Bot) refresh(ctx context.Context, st *rolloutState, force bool) error {
	now := b.now()
	if !st.Progress.Known() || !force && now.Sub(st.LastProgress) < b.ProgressEvery {
		return nil
	}
	m := ProgressMessage(&st.Progress)
	if st.ProgressMsg.TS != "" {
		err := b.Chat.Update(ctx, st.ProgressMsg, m)
		if err == nil {
			st.LastProgress = now
			return nil
		}
		if !slack.Permanent(err) {
			return err
		}
		// the message is gone (deleted, too old to edit): post a new one
	} else if st.Rooted && st.Thread.TS == "" && !force {
		return nil // a webhook: no updates, so no per-host messages either
	}
	ref, err := b.post(ctx, st, m)
	if err != nil {
		return err
	}
	st.ProgressMsg, st.LastProgress = ref, now
	return nil
}

func (b *Bot) onHalted(ctx context.Context, st *rolloutState, e events.RolloutHalted) error {
	st.Progress.Apply(e)
	if err := b.thread(ctx, st); err != nil {
		return err
	}
	m := HaltedMessage(e)
	m.ReplyBroadcast = true
	if _, err := b.post(ctx, st, m); err != nil {
		return err
	}
	return b.refresh(ctx, st, true)
}

func (b *Bot) onCompleted(ctx context.Context, st *rolloutState, e events.RolloutCompleted) error {
	st.Progress.Apply(e)
	if err := b.thread(ctx, st); err != nil {
		return err
	}
	if err := b.refresh(ctx, st, true); err != nil {
		return err
	}
	m := CompletedMessage(e)
	m.ReplyBroadcast = true
	_, err := b.post(ctx, st, m)
	return err
}

func (b *Bot) onRebooted(ctx context.Context, st *rolloutState, e events.HostRebooted) error {
	if err := b.thread(ctx, st); err != nil {
		return err
	}
	_, err := b.post(ctx, st, RebootedMessage(e))
	return err
}

// onRebootRequired posts into the rollout's thread, or the channel for a reboot found by a
// scan.
func (b *Bot) onRebootRequired(ctx context.Context, m events.Meta, e events.RebootRequired) error {
	if e.RolloutID != "" {
		return rolloutHandler(b, func(ctx context.Context, st *rolloutState, e events.RebootRequired) error {
			if err := b.thread(ctx, st); err != nil {
				return err
			}
			_, err := b.post(ctx, st, RebootMessage(e))
			return err
		})(ctx, m, e)
	}
	return b.once(ctx, m, func(ctx context.Context) error {
		_, err := b.Chat.Post(ctx, withChannel(RebootMessage(e), b.Channel))
		return err
	})
}

// onAdvisory announces an advisory that exposes hosts, with counts per fleet from the
// inventory's exposure query. An advisory that exposes nothing is not announced.
func (b *Bot) onAdvisory(ctx context.Context, m events.Meta, e events.SecurityAdvisoryPublished) error {
	return b.once(ctx, m, func(ctx context.Context) error {
		perFleet := map[string]int{}
		req := query.ExposureRequest{Affected: e.Affected, Limit: 1000}
		for {
			qctx, cancel := context.WithTimeout(ctx, b.QueryTimeout)
			page, err := b.Queries.Exposure(qctx, req)
			cancel()
			if err != nil {
				return fmt.Errorf("exposure of %s: %w", e.AdvisoryID, err)
			}
			for _, h := range page.Hosts {
				perFleet[h.Fleet]++
			}
			if page.NextCursor == "" {
				break
			}
			req.Cursor = page.NextCursor
		}
		if len(perFleet) == 0 {
			return nil
		}
		_, err := b.Chat.Post(ctx, withChannel(AdvisoryMessage(e, perFleet), b.Channel))
		return err
	})
}

func (b *Bot) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}
