// Package slack speaks the parts of Slack's Web API the ChatOps bot uses — chat.postMessage
// and chat.update with Block Kit — and plain incoming webhooks (Slack, Mattermost and others
// accept them; they cannot thread or update, so the bot degrades to posting).
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Text is a Block Kit text object.
type Text struct {
	Type string `json:"type"` // mrkdwn | plain_text
	Text string `json:"text"`
}

// Markdown returns an mrkdwn text object.
func Markdown(s string) *Text { return &Text{Type: "mrkdwn", Text: s} }

// Plain returns a plain_text object.
func Plain(s string) *Text { return &Text{Type: "plain_text", Text: s} }

// Block is a Block Kit layout block (section, header, context, actions, divider).
type Block struct {
	Type     string    `json:"type"`
	BlockID  string    `json:"block_id,omitempty"`
	Text     *Text     `json:"text,omitempty"`
	Fields   []*Text   `json:"fields,omitempty"`
	Elements []Element `json:"elements,omitempty"`
}

// Element is a context element (a text object) or an interactive element (a button).
type Element struct {
	Type     string   `json:"type"`           // button | mrkdwn | plain_text
	Text     any      `json:"text,omitempty"` // *Text for a button, a string for a context text
	ActionID string   `json:"action_id,omitempty"`
	Value    string   `json:"value,omitempty"`
	Style    string   `json:"style,omitempty"` // primary | danger
	Confirm  *Confirm `json:"confirm,omitempty"`
}

// Confirm is a confirmation dialog shown before a button acts.
type Confirm struct {
	Title   *Text `json:"title"`
	Text    *Text `json:"text"`
	Confirm *Text `json:"confirm"`
	Deny    *Text `json:"deny"`
}

// Message is a message to post or the new content of one to update. Text is the fallback
// shown in notifications and by clients (and webhooks) that do not render blocks.
type Message struct {
	Channel        string  `json:"channel,omitempty"`
	ThreadTS       string  `json:"thread_ts,omitempty"`
	ReplyBroadcast bool    `json:"reply_broadcast,omitempty"`
	Text           string  `json:"text"`
	Blocks         []Block `json:"blocks,omitempty"`
}

// Ref names a posted message: its channel and timestamp. A thread is named by its first
// message's Ref.
type Ref struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// ErrNoUpdate is returned by posters that cannot edit a message.
var ErrNoUpdate = errors.New("updating messages is not supported")

// Error is a failed call. Temporary errors (rate limits, 5xx, Slack's own transient
// errors, a broken token that an operator will fix) are worth retrying later; the others
// concern the message and never succeed.
type Error struct {
	Method     string
	Status     int    // HTTP status
	Code       string // Slack's "error" field
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("slack %s: %s", e.Method, e.Code)
	}
	return fmt.Sprintf("slack %s: http %d", e.Method, e.Status)
}

// Temporary reports whether retrying later may succeed.
func (e *Error) Temporary() bool {
	if e.Status == http.StatusTooManyRequests || e.Status >= 500 || e.Status == 0 && e.Code == "" {
		return true
	}
	switch e.Code {
	case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
		"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
		"not_in_channel", "channel_not_found", "missing_scope":
		return true
	}
	return false
}

// Permanent reports whether err is a Slack error that no retry can fix.
func Permanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && !e.Temporary()
}

// Client calls Slack's Web API with a bot token.
type Client struct {
	BaseURL string // https://slack.com/api
	Token   string
	HTTP    *http.Client
	// Retries is how many times a rate-limited call is retried after waiting Retry-After;
	// MaxWait bounds one wait (a longer one is returned as an error, for a later retry).
	Retries int
	MaxWait time.Duration
}

// NewClient returns a client with sensible limits.
func NewClient(baseURL, token string) *Client {
	if baseURL == "" {
		baseURL = "https://slack.com/api"
	}
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token,
		HTTP: &http.Client{Timeout: 15 * time.Second}, Retries: 3, MaxWait: 30 * time.Second}
}

type apiResponse struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// PostMessage posts m and returns where it went.
func (c *Client) PostMessage(ctx context.Context, m Message) (Ref, error) {
	var out apiResponse
	if err := c.call(ctx, "chat.postMessage", postBody{Message: m, UnfurlLinks: false, UnfurlMedia: false}, &out); err != nil {
		return Ref{}, err
	}
	return Ref{Channel: out.Channel, TS: out.TS}, nil
}

type postBody struct {
	Message
	UnfurlLinks bool `json:"unfurl_links"`
	UnfurlMedia bool `json:"unfurl_media"`
}

type updateBody struct {
	Channel string  `json:"channel"`
	TS      string  `json:"ts"`
	Text    string  `json:"text"`
	Blocks  []Block `json:"blocks"`
}

// UpdateMessage replaces the text and blocks of the message at ref.
func (c *Client) UpdateMessage(ctx context.Context, ref Ref, m Message) error {
	blocks := m.Blocks
	if blocks == nil {
		blocks = []Block{} // clears the old blocks rather than keeping them
	}
	var out apiResponse
	return c.call(ctx, "chat.update", updateBody{Channel: ref.Channel, TS: ref.TS, Text: m.Text, Blocks: blocks}, &out)
}

func (c *Client) call(ctx context.Context, method string, in any, out *apiResponse) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("slack %s: encode: %w", method, err)
	}
	for attempt := 0; ; attempt++ {
		err := c.once(ctx, method, body, out)
		var se *Error
		if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || attempt >= c.Retries || se.RetryAfter > c.MaxWait {
			return err
		}
		t := time.NewTimer(se.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("slack %s: waiting out a rate limit: %w", method, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) once(ctx context.Context, method string, body []byte, out *apiResponse) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/"+method, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err) // transport: temporary (not an *Error)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("slack %s: read answer: %w", method, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return &Error{Method: method, Status: resp.StatusCode, Code: "ratelimited", RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	if resp.StatusCode != http.StatusOK {
		return &Error{Method: method, Status: resp.StatusCode}
	}
	*out = apiResponse{}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Method: method, Status: resp.StatusCode, Code: "invalid_response"}
	}
	if !out.OK {
		return &Error{Method: method, Status: resp.StatusCode, Code: out.Error}
	}
	return nil
}

// retryAfter parses Retry-After seconds; one second when absent or unreadable.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return time.Second
	}
	return time.Duration(n) * time.Second
}

// Webhook posts to an incoming webhook URL. It cannot thread or update messages.
type Webhook struct {
	URL  string
	HTTP *http.Client
}

// Post sends the message's text (and blocks, which Slack renders and others ignore).
func (w *Webhook) Post(ctx context.Context, m Message) error {
	body, err := json.Marshal(struct {
		Text   string  `json:"text"`
		Blocks []Block `json:"blocks,omitempty"`
	}{m.Text, m.Blocks})
	if err != nil {
		return fmt.Errorf("webhook: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := w.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is a secret: keep it out of the error
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &Error{Method: "webhook", Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return nil
}
