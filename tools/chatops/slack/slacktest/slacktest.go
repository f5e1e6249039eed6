// Package slacktest is a local stand-in for the parts of Slack the ChatOps bot talks to:
// chat.postMessage and chat.update (answering ts and channel), an incoming webhook, and
// response_url callbacks. It records what it receives and can answer 429 with Retry-After
// or 500 on demand, so tests check the bot's messages and its behaviour when Slack is not
// well.
package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/patchfleet/patchfleet/tools/chatops/slack"
)

// Token is the bot token the server accepts.
const Token = "xoxb-test-token"

// Message is a message as the server holds it, after every update.
type Message struct {
	slack.Message
	TS      string
	Updates int
}

// Call is one API request received.
type Call struct {
	Method string
	Status int
	Body   map[string]any
}

// Server is the stand-in.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	seq       int
	messages  []*Message // in posting order
	calls     []Call
	webhook   []slack.Message
	responses []map[string]any
	faults    []fault
}

type fault struct {
	status     int
	retryAfter string
}

// Start starts a server that stops when the test ends.
func Start(t testing.TB) *Server {
	s := &Server{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat.postMessage", s.api("chat.postMessage", s.post))
	mux.HandleFunc("POST /api/chat.update", s.api("chat.update", s.update))
	mux.HandleFunc("POST /webhook", s.hook)
	mux.HandleFunc("POST /response/", s.response)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// APIURL is the base URL of the Web API.
func (s *Server) APIURL() string { return s.URL + "/api" }

// WebhookURL is the incoming webhook's URL.
func (s *Server) WebhookURL() string { return s.URL + "/webhook" }

// ResponseURL is a response_url for an interaction.
func (s *Server) ResponseURL() string { return s.URL + "/response/1" }

// RateLimitOnce makes the next API call answer 429 with Retry-After.
func (s *Server) RateLimitOnce(retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{http.StatusTooManyRequests, retryAfter})
}

// FailNext makes the next n API calls answer 500.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status: http.StatusInternalServerError})
	}
}

func (s *Server) api(method string, h func(body map[string]any) map[string]any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.faults) > 0 {
			f := s.faults[0]
			s.faults = s.faults[1:]
			s.calls = append(s.calls, Call{Method: method, Status: f.status, Body: body})
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			w.WriteHeader(f.status)
			return
		}
		s.calls = append(s.calls, Call{Method: method, Status: http.StatusOK, Body: body})
		var out map[string]any
		if r.Header.Get("Authorization") != "Bearer "+Token {
			out = map[string]any{"ok": false, "error": "invalid_auth"}
		} else {
			out = h(body)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

func decode(body map[string]any) slack.Message {
	var m slack.Message
	b, _ := json.Marshal(body)
	_ = json.Unmarshal(b, &m)
	return m
}

func (s *Server) post(body map[string]any) map[string]any {
	m := decode(body)
	if m.Channel == "" || m.Text == "" && len(m.Blocks) == 0 {
		return map[string]any{"ok": false, "error": "no_text"}
	}
	if m.ThreadTS != "" && s.find(m.Channel, m.ThreadTS) == nil {
		return map[string]any{"ok": false, "error": "thread_not_found"}
	}
	s.seq++
	ts := fmt.Sprintf("1700000000.%06d", s.seq)
	s.messages = append(s.messages, &Message{Message: m, TS: ts})
	return map[string]any{"ok": true, "channel": m.Channel, "ts": ts}
}

func (s *Server) update(body map[string]any) map[string]any {
	m := decode(body)
	ts, _ := body["ts"].(string)
	old := s.find(m.Channel, ts)
	if old == nil {
		return map[string]any{"ok": false, "error": "message_not_found"}
	}
	old.Text, old.Blocks = m.Text, m.Blocks
	old.Updates++
	return map[string]any{"ok": true, "channel": m.Channel, "ts": ts}
}

func (s *Server) find(channel, ts string) *Message {
	for _, m := range s.messages {
		if m.Channel == channel && m.TS == ts {
			return m
		}
	}
	return nil
}

func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	var m slack.Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Text == "" {
		http.Error(w, "no_text", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		w.WriteHeader(f.status)
		return
	}
	s.webhook = append(s.webhook, m)
	_, _ = w.Write([]byte("ok"))
}

func (s *Server) response(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responses = append(s.responses, body)
	_, _ = w.Write([]byte("ok"))
}

// Messages returns copies of the messages posted so far, in order, as last updated.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = *m
	}
	return out
}

// Find returns the messages whose fallback text contains sub.
func (s *Server) Find(sub string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if strings.Contains(m.Text, sub) {
			out = append(out, m)
		}
	}
	return out
}

// Calls returns the API calls received, faults included.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Webhook returns what the incoming webhook received.
func (s *Server) Webhook() []slack.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]slack.Message(nil), s.webhook...)
}

// Responses returns what was posted to response URLs.
func (s *Server) Responses() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.responses...)
}
