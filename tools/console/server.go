package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/console/auth"
	"github.com/patchfleet/patchfleet/tools/console/feed"
	"github.com/patchfleet/patchfleet/tools/console/view"
)

//go:embed web/templates/*.html web/static/*
var assets embed.FS

// cookieName holds the session id (and nothing else).
const cookieName = "pf_console_session"

// contentSecurityPolicy allows only the console's own embedded script and style sheet.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Server serves the console's pages. Feed must run for live updates and host histories.
type Server struct {
	Feed *feed.Feed

	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	q        query.Client
	sessions *auth.Sessions
	pages    map[string]*template.Template
	static   http.Handler
	now      func() time.Time
	client   *http.Client
}

// NewServer builds the console on a NATS connection.
func NewServer(cfg Config, nc *nats.Conn, js jetstream.JetStream, logger *slog.Logger) (*Server, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		Feed: feed.New(js, cfg.History, 50, logger), cfg: cfg, log: logger, nc: nc, js: js, q: query.Client{NC: nc},
		sessions: auth.NewSessions(cfg.SessionTTL), pages: map[string]*template.Template{}, now: time.Now,
		client: &http.Client{Timeout: 30 * time.Second},
	}
	names, err := fs.Glob(assets, "web/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "web/templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(s.funcs()).ParseFS(assets, "web/templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", base, err)
		}
		s.pages[base] = t
	}
	static, err := fs.Sub(assets, "web/static")
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	s.static = http.StripPrefix("/static/", http.FileServerFS(static))
	return s, nil
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"ago":   func(t time.Time) string { return view.Ago(t, s.now()) },
		"dur":   view.Duration,
		"short": view.Short,
		"clip":  view.Clip,
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2 Jan 2006")
		},
		"sev":        func(v any) string { return "sev-" + fmt.Sprint(v) },
		"stateClass": view.StateClass,
		"join":       strings.Join,
		"pct": func(n, total int) int {
			if total <= 0 {
				return 0
			}
			return n * 100 / total
		},
		"add": func(a, b int) int { return a + b },
	}
}

// Handler is the console with its security headers and cross-origin protection.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", s.static)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.action(s.logout))
	mux.HandleFunc("GET /{$}", s.page(s.overview))
	mux.HandleFunc("GET /rollouts", s.page(s.rollouts))
	mux.HandleFunc("GET /rollouts/{id}", s.page(s.rollout))
	mux.HandleFunc("GET /rollouts/{id}/live", s.stream(s.rolloutLive))
	mux.HandleFunc("POST /rollouts/{id}/{verb}", s.action(s.decide))
	mux.HandleFunc("GET /advisories", s.page(s.advisorySearch))
	mux.HandleFunc("GET /advisories/{id}", s.page(s.advisory))
	mux.HandleFunc("GET /hosts", s.page(s.hosts))
	mux.HandleFunc("GET /hosts/{id}", s.page(s.host))
	mux.HandleFunc("GET /hosts/{id}/tail", s.stream(s.tail))
	mux.HandleFunc("GET /jobs/{id}/log", s.stream(s.jobLog))
	mux.HandleFunc("GET /compliance", s.page(s.compliance))
	mux.HandleFunc("GET /compliance.csv", s.stream(s.complianceCSV))
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	return s.headers(cop.Handler(mux))
}

func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// session returns the caller's session, if signed in.
func (s *Server) session(r *http.Request) (auth.Session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return auth.Session{}, false
	}
	return s.sessions.Get(c.Value)
}

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string
	User  string
	CSRF  string
	Flash string
	Error string
	Data  any
}

type pageFunc func(w http.ResponseWriter, r *http.Request, sess auth.Session) (tmpl string, d pageData, err error)

// page serves a signed-in page: anyone else is sent to the sign-in page.
func (s *Server) page(f pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 4*s.cfg.QueryTimeout)
		defer cancel()
		tmpl, d, err := f(w, r.WithContext(ctx), sess)
		if errors.Is(err, errRedirected) {
			return
		}
		if err != nil {
			s.fail(w, r, sess, err)
			return
		}
		d.User, d.CSRF, d.Flash = sess.Name, sess.CSRF, s.sessions.TakeFlash(sess.ID)
		s.render(w, http.StatusOK, tmpl, d)
	}
}

// stream serves a signed-in endpoint that writes its own answer (SSE, CSV, logs).
func (s *Server) stream(f func(http.ResponseWriter, *http.Request, auth.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		f(w, r, sess)
	}
}

// action serves a state-changing request: signed in, and carrying the session's CSRF token
// (form field csrf or header X-CSRF-Token). Cross-origin requests never get here.
func (s *Server) action(f func(http.ResponseWriter, *http.Request, auth.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			s.log.Warn("console action refused: not signed in", "path", r.URL.Path, "remote", r.RemoteAddr)
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" {
			tok = r.PostFormValue("csrf")
		}
		if !auth.ValidCSRF(sess, tok) {
			s.log.Warn("console action refused: bad csrf token", "path", r.URL.Path, "user", sess.Name, "remote", r.RemoteAddr)
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		f(w, r, sess)
	}
}

// errRedirected says a page answered with a redirect itself.
var errRedirected = errors.New("redirected")

// httpError is an error with the status a person should see.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errStatus(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// fail renders an error page: a query error becomes "not found" or "unavailable".
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess auth.Session, err error) {
	code, msg := http.StatusBadGateway, "a Patchfleet service did not answer: "+err.Error()
	var he *httpError
	var re *query.RemoteError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	case errors.As(err, &re) && re.Code == http.StatusNotFound:
		code, msg = http.StatusNotFound, "not found: "+re.Message
	case errors.As(err, &re) && re.Code >= 400 && re.Code < 500:
		code, msg = http.StatusBadRequest, re.Message
	case errors.Is(err, nats.ErrNoResponders):
		code, msg = http.StatusServiceUnavailable, "a Patchfleet service is not running (no responders): "+err.Error()
	}
	if code >= 500 {
		s.log.Warn("console page failed", "path", r.URL.Path, "user", sess.Name, "err", err)
	}
	s.render(w, code, "error", pageData{Title: http.StatusText(code), User: sess.Name, CSRF: sess.CSRF, Error: msg})
}

func (s *Server) render(w http.ResponseWriter, code int, tmpl string, d pageData) {
	t, ok := s.pages[tmpl]
	if !ok {
		http.Error(w, "no template "+tmpl, http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", d); err != nil {
		s.log.Error("render page", "template", tmpl, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// publish wraps and publishes a decision event.
func (s *Server) publish(ctx context.Context, e events.Event, rollout string) (events.Message, error) {
	m, err := events.New(e, events.Origin{Producer: Producer, CorrelationID: rollout}, s.now())
	if err != nil {
		return m, err
	}
	return m, events.Publish(ctx, s.js, m)
}
