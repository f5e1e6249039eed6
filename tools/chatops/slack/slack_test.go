package slack_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/tools/chatops/slack"
	"github.com/patchfleet/patchfleet/tools/chatops/slack/slacktest"
)

func TestPostAndUpdate(t *testing.T) {
	srv := slacktest.Start(t)
	c := slack.NewClient(srv.APIURL(), slacktest.Token)
	ctx := context.Background()
	ref, err := c.PostMessage(ctx, slack.Message{Channel: "C1", Text: "hello", Blocks: []slack.Block{{Type: "section", Text: slack.Markdown("*hello*")}}})
	if err != nil {
		t.Fatal(err)
	}
	if ref.Channel != "C1" || ref.TS == "" {
		t.Fatalf("ref = %+v", ref)
	}
	reply, err := c.PostMessage(ctx, slack.Message{Channel: "C1", ThreadTS: ref.TS, Text: "in thread"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateMessage(ctx, ref, slack.Message{Text: "hello again"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || msgs[0].Text != "hello again" || msgs[0].Updates != 1 || len(msgs[0].Blocks) != 0 {
		t.Fatalf("messages = %+v", msgs)
	}
	if msgs[1].ThreadTS != ref.TS || msgs[1].TS != reply.TS {
		t.Fatalf("reply = %+v", msgs[1])
	}
	err = c.UpdateMessage(ctx, slack.Ref{Channel: "C1", TS: "1.2"}, slack.Message{Text: "x"})
	if !slack.Permanent(err) {
		t.Fatalf("update of an unknown message: %v, want a permanent error", err)
	}
}

func TestRateLimitIsWaitedOut(t *testing.T) {
	srv := slacktest.Start(t)
	c := slack.NewClient(srv.APIURL(), slacktest.Token)
	srv.RateLimitOnce("1")
	start := time.Now()
	if _, err := c.PostMessage(context.Background(), slack.Message{Channel: "C1", Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("retried after %v, before Retry-After", waited)
	}
	calls := srv.Calls()
	if len(calls) != 2 || calls[0].Status != http.StatusTooManyRequests || calls[1].Status != http.StatusOK {
		t.Fatalf("calls = %+v", calls)
	}
}

func TestLongRateLimitAndServerErrorsAreTemporary(t *testing.T) {
	srv := slacktest.Start(t)
	c := slack.NewClient(srv.APIURL(), slacktest.Token)
	c.MaxWait = time.Second
	srv.RateLimitOnce("120")
	_, err := c.PostMessage(context.Background(), slack.Message{Channel: "C1", Text: "x"})
	if err == nil || slack.Permanent(err) {
		t.Fatalf("long rate limit: %v, want a temporary error", err)
	}
	srv.FailNext(1)
	_, err = c.PostMessage(context.Background(), slack.Message{Channel: "C1", Text: "x"})
	if err == nil || slack.Permanent(err) {
		t.Fatalf("500: %v, want a temporary error", err)
	}
	bad := slack.NewClient(srv.APIURL(), "xoxb-wrong")
	_, err = bad.PostMessage(context.Background(), slack.Message{Channel: "C1", Text: "x"})
	if err == nil || slack.Permanent(err) {
		t.Fatalf("invalid_auth: %v, want a temporary error (an operator fixes the token)", err)
	}
	if len(srv.Messages()) != 0 {
		t.Fatal("a failed call posted a message")
	}
}

func TestWebhook(t *testing.T) {
	srv := slacktest.Start(t)
	w := &slack.Webhook{URL: srv.WebhookURL()}
	if err := w.Post(context.Background(), slack.Message{Text: "plain"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Webhook(); len(got) != 1 || got[0].Text != "plain" {
		t.Fatalf("webhook got %+v", got)
	}
	srv.FailNext(1)
	if err := w.Post(context.Background(), slack.Message{Text: "plain"}); err == nil || slack.Permanent(err) {
		t.Fatalf("webhook 500: %v, want a temporary error", err)
	}
}
