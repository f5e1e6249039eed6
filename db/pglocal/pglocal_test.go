package pglocal_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db/pglocal"
)

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func query(t *testing.T, ctx context.Context, url, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var out string
	if err := conn.QueryRow(ctx, sql).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestThrowawayCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, pglocal.Options{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got := query(t, ctx, c.URL("postgres"), "show fsync"); got != "off" {
		t.Errorf("fsync = %s, want off", got)
	}
	if err := c.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(ctx, "app"); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := query(t, ctx, c.URL("app"), "select current_database()"); got != "app" {
		t.Errorf("connected to %s, want app", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.DataDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory %s still there after Stop: %v", c.DataDir(), err)
	}
	if _, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		t.Error("server still accepts connections after Stop")
	}
}

func TestPersistentClusterKeepsStateAndSurvivesAStalePIDFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Not t.TempDir directly: its parents are 0700 as root, which is what own() must fix
	// for the postgres user — the test exercises that too.
	dir := filepath.Join(t.TempDir(), "pg")

	c, err := pglocal.Open(ctx, dir, 0, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := query(t, ctx, c.URL("postgres"), "show fsync"); got != "on" {
		t.Errorf("fsync = %s, want on", got)
	}
	if err := c.CreateDatabase(ctx, "patchfleet"); err != nil {
		t.Fatal(err)
	}
	url := c.URL("patchfleet")
	if got := query(t, ctx, url, "select coalesce(inet_server_addr()::text, 'unix socket')"); got != "unix socket" {
		t.Errorf("persistent cluster URL connects over %s, want the unix socket", got)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "create table kept (v text); insert into kept values ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	// A crash leaves postmaster.pid behind, and its PID may belong to another process by
	// the next start: PostgreSQL alone would refuse to start.
	other := exec.Command("sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	pidFile := filepath.Join(dir, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)+"\n"+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err = pglocal.Open(ctx, dir, 0, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got := query(t, ctx, c.URL("patchfleet"), "select v from kept"); got != "still here" {
		t.Fatalf("kept = %q after restart", got)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("persistent data directory: %v", err)
	}

	// A second Open while it runs is refused rather than corrupting the cluster.
	if _, err := pglocal.Open(ctx, dir, 0, logger(t)); err == nil {
		t.Fatal("a second server started on a running cluster's data directory")
	}
}
