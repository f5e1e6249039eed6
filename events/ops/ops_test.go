package ops_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events/ops"
)

func env(vars map[string]string) *ops.Env {
	return &ops.Env{Lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}

func TestEnvReportsEveryBadVariableByName(t *testing.T) {
	e := env(map[string]string{"A_INT": "12x", "A_DUR": "soon", "A_BOOL": "maybe", "PATCHFLEET_LOG_FORMAT": "xml"})
	e.Int("A_INT", 1)
	e.Duration("A_DUR", time.Second)
	e.Bool("A_BOOL", false)
	e.Required("A_MISSING")
	e.Logger(io.Discard, "json")
	err := e.Err()
	if err == nil {
		t.Fatal("no error for bad variables")
	}
	for _, name := range []string{"A_INT", "A_DUR", "A_BOOL", "A_MISSING", "PATCHFLEET_LOG_FORMAT"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestEnvDefaultsAndValues(t *testing.T) {
	e := env(map[string]string{"N": "7", "D": "90s", "B": "true", "S": "x"})
	if e.Int("N", 1) != 7 || e.Duration("D", 0) != 90*time.Second || !e.Bool("B", false) || e.String("S", "d") != "x" || e.String("U", "d") != "d" {
		t.Fatal("values not read")
	}
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSecretFromFileIsNeverInErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{"PW_FILE": path})
	if got := e.Secret("PW"); got != "s3cret" {
		t.Fatalf("secret = %q", got)
	}
	e = env(map[string]string{"PW_FILE": path + ".missing"})
	e.Secret("PW")
	if err := e.Err(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadyzFollowsChecks(t *testing.T) {
	s := ops.New(slog.New(slog.DiscardHandler))
	var failing error
	s.Check("db", func(context.Context) error { return failing })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, "127.0.0.1:0") }()
	addr, err := s.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *http.Response {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get("/readyz"); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz = %d with passing checks", r.StatusCode)
	}
	failing = errors.New("down")
	if r := get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz = %d with a failing check", r.StatusCode)
	}
	if r := get("/healthz"); r.StatusCode != http.StatusOK || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("healthz = %d %v", r.StatusCode, r.Header)
	}
	if r := get("/metrics"); r.StatusCode != http.StatusOK {
		t.Fatalf("metrics = %d", r.StatusCode)
	}
}
