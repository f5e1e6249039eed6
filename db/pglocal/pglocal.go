// Package pglocal runs a PostgreSQL cluster from the server binaries installed on this
// machine: a throwaway one for tests (fast and unsafe: no fsync) or a persistent one for
// running Patchfleet on a laptop (`make run`), which keeps its state across restarts.
//
// As root (normal on CI) the server runs as the "postgres" OS user, which PostgreSQL
// requires. When no server binaries are found and we are root on Debian or Ubuntu, the
// "postgresql" package is installed with apt-get.
package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options describe a cluster.
type Options struct {
	// DataDir is the cluster's directory. Empty: a new temporary directory, removed by Stop
	// (only for a throwaway cluster).
	DataDir string
	// Persistent keeps data safe (fsync on), listens on loopback only and puts the unix
	// socket inside DataDir; the cluster is created on first use and reused afterwards.
	// Otherwise the cluster is a throwaway: fsync off, trust authentication on loopback.
	Persistent bool
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres; empty: found (see FindBinDir), installed if need be.
	BinDir string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// Settings are extra server settings (name → value), passed as -c name=value.
	Settings map[string]string
}

// Cluster is a running PostgreSQL server started by this process.
type Cluster struct {
	dataDir    string
	removeDir  bool
	port       int
	socketDir  string // non-empty: URLs connect through this unix socket directory
	persistent bool
	logger     *slog.Logger

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the server process has exited
	waitErr  error
	log      *logBuffer
	stopOnce sync.Once
	stopErr  error
}

// Superuser is the cluster's superuser role.
const Superuser = "postgres"

// Open starts the persistent cluster in dataDir on port, creating it on first use.
func Open(ctx context.Context, dataDir string, port int, logger *slog.Logger) (*Cluster, error) {
	return Start(ctx, Options{DataDir: dataDir, Persistent: true, Port: port, Logger: logger})
}

// Start initialises the cluster if its data directory is empty, starts the server and waits
// until it accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Persistent && opts.DataDir == "" {
		return nil, errors.New("start postgresql: a persistent cluster needs a data directory")
	}
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = EnsureBinDir(ctx, logger); err != nil {
			return nil, err
		}
	}
	runAs, err := serverUser()
	if err != nil {
		return nil, err
	}

	c := &Cluster{persistent: opts.Persistent, logger: logger, exited: make(chan struct{})}
	if opts.DataDir == "" {
		dir, err := os.MkdirTemp("", "patchfleet-pg-")
		if err != nil {
			return nil, fmt.Errorf("start postgresql: create data directory: %w", err)
		}
		c.dataDir, c.removeDir = dir, true
	} else {
		abs, err := filepath.Abs(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("start postgresql: data directory %s: %w", opts.DataDir, err)
		}
		c.dataDir = abs
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("start postgresql: create data directory %s: %w", abs, err)
		}
	}
	fail := func(err error) (*Cluster, error) {
		if c.removeDir {
			os.RemoveAll(c.dataDir)
		}
		return nil, err
	}
	if err := runAs.own(c.dataDir, logger); err != nil {
		return fail(err)
	}

	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx, binDir, runAs); err != nil {
			return fail(err)
		}
	} else if err != nil {
		return fail(fmt.Errorf("start postgresql: inspect %s: %w", c.dataDir, err))
	}
	if err := removeStalePID(c.dataDir, logger); err != nil {
		return fail(err)
	}

	if c.persistent {
		c.socketDir = c.dataDir
		if n := len(filepath.Join(c.socketDir, ".s.PGSQL.65535")); n > 107 {
			return fail(fmt.Errorf("start postgresql: data directory %s is too long for a unix socket path (%d > 107 bytes)", c.dataDir, n))
		}
	}
	// A port found free may be taken before the server binds it: retry with another.
	for attempt := 0; ; attempt++ {
		c.port = opts.Port
		if c.port == 0 {
			if c.port, err = freePort(); err != nil {
				return fail(err)
			}
		}
		err = c.start(ctx, binDir, runAs, opts.Settings)
		if err == nil {
			break
		}
		if opts.Port != 0 || attempt == 2 || ctx.Err() != nil {
			return fail(err)
		}
		logger.Warn("postgresql did not start, retrying on another port", "port", c.port, "err", err)
		c.exited = make(chan struct{})
	}
	logger.Info("postgresql started", "data_dir", c.dataDir, "port", c.port, "persistent", c.persistent)
	return c, nil
}

func (c *Cluster) initdb(ctx context.Context, binDir string, runAs *osUser) error {
	args := []string{"-D", c.dataDir, "-U", Superuser, "-E", "UTF8", "--locale=C", "--no-instructions"}
	if c.persistent {
		// Local (unix socket) connections are guarded by the data directory's permissions;
		// TCP needs a password, which an operator sets if they want TCP access.
		args = append(args, "--auth-local=trust", "--auth-host=scram-sha-256")
	} else {
		args = append(args, "-A", "trust", "--no-sync")
	}
	c.logger.Info("initialising postgresql cluster", "data_dir", c.dataDir)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	runAs.apply(cmd)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C") // C exists everywhere; C.UTF-8 and others may not
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w: %s", c.dataDir, err, bytes.TrimSpace(out))
	}
	return nil
}

func (c *Cluster) start(ctx context.Context, binDir string, runAs *osUser, extra map[string]string) error {
	settings := map[string]string{
		"listen_addresses":           "127.0.0.1",
		"port":                       strconv.Itoa(c.port),
		"unix_socket_directories":    c.socketDir,
		"logging_collector":          "off",
		"log_min_messages":           "warning",
		"dynamic_shared_memory_type": "posix",
	}
	if !c.persistent {
		// Durability is pointless for a cluster that is thrown away; speed is not.
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
		settings["max_connections"] = "300"
		settings["shared_buffers"] = "64MB"
	}
	for k, v := range extra {
		settings[k] = v
	}
	args := []string{"-D", c.dataDir}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	// Not CommandContext: ctx bounds the start, not the server's life.
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	runAs.apply(cmd)
	// A throwaway server may stop at once (SIGQUIT, immediate); a persistent one shuts down
	// properly (SIGINT, fast).
	if c.persistent {
		setParentDeath(cmd, syscall.SIGINT)
	} else {
		setParentDeath(cmd, syscall.SIGQUIT)
	}
	c.log = &logBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres on port %d: %w", c.port, err)
	}
	c.cmd = cmd
	exited := c.exited
	go func() {
		c.waitErr = cmd.Wait()
		close(exited)
	}()
	if err := c.waitReady(ctx); err != nil {
		c.kill()
		return fmt.Errorf("start postgres on port %d: %w\n%s", c.port, err, c.log.String())
	}
	return nil
}

// waitReady polls until the server accepts a connection, it exits, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, c.URL("postgres"))
		cancelAttempt()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		last = err
		select {
		case <-c.exited:
			return fmt.Errorf("server exited: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// URL returns a connection URL for database db as the superuser.
func (c *Cluster) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + db}
	q := url.Values{}
	if c.socketDir != "" {
		q.Set("host", c.socketDir)
		q.Set("port", strconv.Itoa(c.port))
	} else {
		u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// CreateDatabase creates database name if it does not exist yet.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("create database %s: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "select exists(select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr interface{ SQLState() string }
		if errors.As(err, &pgErr) && pgErr.SQLState() == "42P04" { // created meanwhile
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: sessions are ended, data is flushed) and, for
// a throwaway cluster in a temporary directory, removes it. Stop is idempotent.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.stopErr = c.stop()
		if c.removeDir {
			if err := os.RemoveAll(c.dataDir); err != nil && c.stopErr == nil {
				c.stopErr = fmt.Errorf("remove data directory %s: %w", c.dataDir, err)
			}
		}
	})
	return c.stopErr
}

func (c *Cluster) stop() error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil { // SIGINT = fast shutdown
		return fmt.Errorf("stop postgres %s: %w", c.dataDir, err)
	}
	select {
	case <-c.exited:
		c.logger.Info("postgresql stopped", "data_dir", c.dataDir)
		return nil
	case <-time.After(60 * time.Second):
		c.kill()
		return fmt.Errorf("stop postgres %s: no fast shutdown within 60s; killed", c.dataDir)
	}
}

// kill ends the server at once (SIGQUIT: immediate shutdown, crash recovery on next start).
func (c *Cluster) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// removeStalePID removes a postmaster.pid left by a server that is gone (a crash, a killed
// container), which would otherwise stop the server from starting if its PID is reused. A
// pid file naming a live postgres process is an error: the cluster is already running.
func removeStalePID(dataDir string, logger *slog.Logger) error {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err == nil && pid > 0 && isPostgres(pid, dataDir) {
		return fmt.Errorf("postgresql is already running on %s (pid %d)", dataDir, pid)
	}
	logger.Warn("removing stale postmaster.pid", "path", path, "pid", pid)
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// isPostgres reports whether pid is a live postgres server for dataDir.
func isPostgres(pid int, dataDir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		// No /proc (not Linux): trust a live process.
		p, err := os.FindProcess(pid)
		return err == nil && p.Signal(syscall.Signal(0)) == nil
	}
	args := strings.Split(string(cmdline), "\x00")
	if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "postgres") {
		return false
	}
	for i, a := range args {
		if a == "-D" && i+1 < len(args) {
			return filepath.Clean(args[i+1]) == filepath.Clean(dataDir)
		}
	}
	// A postgres whose data directory we cannot tell (PGDATA): be conservative.
	return true
}

// logBuffer keeps the last max bytes the server wrote, to explain a failure to start.
type logBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

var _ io.Writer = (*logBuffer)(nil)
