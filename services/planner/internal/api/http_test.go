package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/policy"
	"github.com/patchfleet/patchfleet/services/planner/internal/rollout"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const secret = "0123456789abcdef-ops"

// serve runs the API on a real ops server with a real database and returns its base URL.
func serve(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pool := pgtest.New(t, plannerdb.Schema, plannerdb.Migrations)
	logger := slog.New(slog.DiscardHandler)
	eng := &rollout.Engine{Pool: pool, Policy: policy.Default(), Logger: logger, Producer: "test"}
	a := &API{Engine: eng, Policy: eng.Policy, PolicySource: "built-in default", Logger: logger, Tokens: []Token{{Name: "ops", Secret: secret}}}
	srv := ops.New(logger)
	a.Mount(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, "127.0.0.1:0") }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	addr, err := srv.Addr(actx)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String()
}

func TestHTTP(t *testing.T) {
	base := serve(t)
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
		message                         string
	}{
		{"no token", "GET", "/v1/rollouts", "", "", http.StatusUnauthorized, "bearer token"},
		{"wrong token", "GET", "/v1/rollouts", "not-the-token-at-all", "", http.StatusUnauthorized, "bearer token"},
		{"token as a prefix", "GET", "/v1/rollouts", secret[:16], "", http.StatusUnauthorized, "bearer token"},
		{"unknown route needs a token too", "GET", "/v1/nope", "", "", http.StatusUnauthorized, "bearer token"},
		{"rollouts", "GET", "/v1/rollouts?fleet=web", secret, "", http.StatusOK, ""},
		{"policies", "GET", "/v1/policies", secret, "", http.StatusOK, ""},
		{"compliance", "GET", "/v1/compliance?open=true", secret, "", http.StatusOK, ""},
		{"bad cursor", "GET", "/v1/rollouts?cursor=garbage", secret, "", http.StatusBadRequest, "cursor"},
		{"bad preview body", "POST", "/v1/preview", secret, "{not json", http.StatusBadRequest, "decode preview request"},
		{"preview of nothing", "POST", "/v1/preview", secret, "{}", http.StatusBadRequest, "exactly one of advisory and request"},
		{"docker preview without a manifest", "POST", "/v1/preview", secret,
			`{"request":{"request_id":"r1","requested_by":"alice","kind":"docker","selector":{"fleet":"web"}}}`, http.StatusBadRequest, "no Docker manifest"},
		{"unknown rollout", "GET", "/v1/rollouts/nope", secret, "", http.StatusNotFound, "rollout nope"},
		{"unknown fleet policy", "GET", "/v1/policies?fleet=nope", secret, "", http.StatusNotFound, "fleet policy nope"},
		{"unknown route", "GET", "/v1/nope", secret, "", http.StatusNotFound, "no route"},
		{"healthz is open", "GET", "/healthz", "", "", http.StatusOK, ""},
		{"metrics are open", "GET", "/metrics", "", "", http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.code)
			}
			if tc.code == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.message != "" {
				var e query.Error
				if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code || !strings.Contains(e.Message, tc.message) {
					t.Errorf("body %s (%v), want code %d and a message with %q", body, err, tc.code, tc.message)
				}
			}
		})
	}
}

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []Token
		err        string
	}{
		{"named and bare", "ci:0123456789abcdef\n# comment\n\n  fedcba9876543210  \n", []Token{{"ci", "0123456789abcdef"}, {"token-2", "fedcba9876543210"}}, ""},
		{"too short", "ci:short", nil, `line 1: token "ci" is shorter than 16`},
		{"empty", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTokens(tc.text, "TOKENS")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "short\"") {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %+v, %v", got, err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("token %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}
