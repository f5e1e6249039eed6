package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/console/auth"
	"github.com/patchfleet/patchfleet/tools/console/view"
)

// sse writes Server-Sent Events.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func startSSE(w http.ResponseWriter) (*sse, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &sse{w: w, f: f}, true
}

// send writes one event whose data is v as JSON (one line, so no framing issues).
func (s *sse) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", event, err)
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

func (s *sse) ping() error {
	if _, err := io.WriteString(s.w, ": ping\n\n"); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

const pingEvery = 15 * time.Second

// rolloutLive streams the rollout's view on every change: the planner's answer first, then
// every event of the rollout as it arrives. Falling behind reloads from the planner.
func (s *Server) rolloutLive(w http.ResponseWriter, r *http.Request, _ auth.Session) {
	ctx, id := r.Context(), r.PathValue("id")
	sub, stop := s.Feed.Subscribe() // before the query, so nothing falls between
	defer stop()
	load := func() (*view.LiveRollout, error) {
		qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		defer cancel()
		d, err := s.q.Rollout(qctx, query.RolloutRequest{ID: id})
		if err != nil {
			return nil, err
		}
		return view.NewLiveRollout(d, s.budget(qctx, d)), nil
	}
	live, err := load()
	if err != nil {
		http.Error(w, "rollout "+id+": "+err.Error(), http.StatusBadGateway)
		return
	}
	out, ok := startSSE(w)
	if !ok {
		return
	}
	if out.send("state", live.View()) != nil {
		return
	}
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-sub.C:
			if !live.Apply(it.Event) {
				continue
			}
			if out.send("state", live.View()) != nil {
				return
			}
		case <-sub.Lagged:
			if l, err := load(); err == nil {
				live = l
				if out.send("state", live.View()) != nil {
					return
				}
			}
		case <-tick.C:
			if out.ping() != nil {
				return
			}
		}
	}
}

// logSubject is the executor's live-log subject of a host (pf.logs.<host>, with the
// characters NATS gives a meaning to replaced by '_'), as the executor documents it.
func logSubject(hostID string) string {
	return "pf.logs." + strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f {
			return '_'
		}
		return r
	}, hostID)
}

// logChunk is one piece of live output.
type logChunk struct {
	JobID string `json:"job_id,omitempty"`
	Text  string `json:"text"`
}

// tail streams a host's live job output from core NATS. Output is best effort: it shows
// what is printed while the page watches.
func (s *Server) tail(w http.ResponseWriter, r *http.Request, sess auth.Session) {
	host := r.PathValue("id")
	ch := make(chan *nats.Msg, 256)
	sub, err := s.nc.ChanSubscribe(logSubject(host), ch)
	if err != nil {
		http.Error(w, "follow output: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.FlushTimeout(s.cfg.QueryTimeout); err != nil { // the server knows the interest before "open"
		http.Error(w, "follow output: "+err.Error(), http.StatusBadGateway)
		return
	}
	out, ok := startSSE(w)
	if !ok {
		return
	}
	s.log.Debug("console following output", "host_id", host, "user", sess.Name)
	if out.send("open", map[string]string{"host_id": host}) != nil {
		return
	}
	tick := time.NewTicker(pingEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case m := <-ch:
			c := logChunk{Text: strings.ToValidUTF8(string(m.Data), "\uFFFD")}
			if m.Header != nil {
				c.JobID = m.Header.Get("Patchfleet-Job-Id")
			}
			if out.send("chunk", c) != nil {
				return
			}
		case <-tick.C:
			if out.ping() != nil {
				return
			}
		}
	}
}

// maxJobLog bounds a stored log the console relays.
const maxJobLog = 16 << 20

// jobLog relays a job's stored log from the executor's HTTP server, as plain text.
func (s *Server) jobLog(w http.ResponseWriter, r *http.Request, _ auth.Session) {
	if s.cfg.ExecutorURL == "" {
		http.Error(w, "stored job logs are not configured (PATCHFLEET_CONSOLE_EXECUTOR_URL)", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.QueryTimeout)
	defer cancel()
	u := strings.TrimRight(s.cfg.ExecutorURL, "/") + "/jobs/" + pathEscape(r.PathValue("id")) + "/log"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		http.Error(w, "bad job id", http.StatusBadRequest)
		return
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.log.Warn("job log", "job_id", r.PathValue("id"), "err", err)
		http.Error(w, "the executor did not answer", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, fmt.Sprintf("the executor answered %s", resp.Status), resp.StatusCode)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, io.LimitReader(resp.Body, maxJobLog))
}
