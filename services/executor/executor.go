// Package executor is the executor service: it takes upgrade jobs from the JOBS work queue and
// performs them over SSH — one job per host at a time across every instance (a lease per
// host in PostgreSQL), every step recorded so that a job taken over after a crash resumes
// from the host's real state, reboots only where the job allows, and every outcome announced
// once through the outbox.
package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchfleet/patchfleet/db/executordb"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/events/sshx"
	"github.com/patchfleet/patchfleet/services/executor/internal/api"
	"github.com/patchfleet/patchfleet/services/executor/internal/job"
	"github.com/patchfleet/patchfleet/services/executor/internal/lease"
	"github.com/patchfleet/patchfleet/services/executor/internal/provider"
	"github.com/patchfleet/patchfleet/services/executor/internal/reboot"
	"github.com/patchfleet/patchfleet/services/executor/internal/remote"
	"github.com/patchfleet/patchfleet/services/executor/internal/store"
	"github.com/patchfleet/patchfleet/services/executor/internal/upgrade"
)

// Name is the service's name on the bus and in logs.
const Name = "executor"

// DefaultHTTPAddr is where the service listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8083"

// MaxConcurrency bounds Config.Concurrency.
const MaxConcurrency = 1000

// Config configures the service. Zero values take the defaults below.
type Config struct {
	service.Common

	InstanceID  string        // names the instance in events and leases; default: host name + random suffix
	Concurrency int           // jobs at once per instance; default 64, at most 1,000
	AckWait     time.Duration // JetStream redelivery after a silent (dead) executor; default 60s
	MaxDeliver  int           // deliveries before a job is dead-lettered (busy hosts retry); default 200
	LeaseTTL    time.Duration // a host lease expires this long after its last renewal; default 60s
	// ShutdownGrace is how long jobs in flight may go on after shutdown starts before they
	// are stopped and handed back (redelivered, resumed elsewhere); default 10s.
	ShutdownGrace time.Duration

	// SSH authentication: private key files (unencrypted) and/or an ssh-agent socket. With
	// neither, the service runs and fails every job with a reason saying so.
	SSHKeyFiles    []string
	SSHAgentSocket string
	// SSHKnownHosts is an OpenSSH known_hosts file pinning bastion host keys.
	SSHKnownHosts  string
	ConnectTimeout time.Duration // default 15s
	CommandTimeout time.Duration // state, repair, reboot, health overhead; default 2m
	AptTimeout     time.Duration // apt-get runs (plus LockTimeout); default 30m
	LockTimeout    time.Duration // how long apt waits for the dpkg lock; default 5m
	HealthTimeout  time.Duration // the health-check command; default 60s
	RebootTimeout  time.Duration // how long a rebooting host may stay away; default 10m
	RebootDelay    time.Duration // reboot this long after the reboot command returns; default 2s
	MinFreeKB      int64         // refuse upgrades below this free space on / or /var; default 512 MiB
	LogLimit       int64         // bytes of command log kept per job; default 8 MiB
	InventoryTTL   time.Duration // how long a host's SSH target is cached; default 30s
	// TransportRetries: dropped/refused ops retried within an attempt (default 3);
	// MaxAttempts: attempts that gave up that way before the job fails unreachable (default 3).
	TransportRetries int
	MaxAttempts      int

	// DBMaxConns bounds the PostgreSQL pool (pgxpool MaxConns). Every job in flight saves its
	// progress, renews its host lease and flushes its log, each briefly; the outbox relay
	// holds one connection for LISTEN. Default: Concurrency/4 + 4, between 8 and 32. A
	// pool_max_conns already in the database URL is kept unless this is set.
	DBMaxConns    int
	dbMaxConnsSet bool // DBMaxConns was given, not defaulted

	// Provider hooks of strategy replace, each a command as argv (see internal/provider):
	// all three or none; without them replace jobs fail replace_failed.
	ProviderProvision, ProviderSwitch, ProviderRetire []string
	ProviderTimeout                                   time.Duration // per hook run; default 15m
	// ProvidersFile names a YAML file of hooks per fleet (provider.ParseFleets); a fleet
	// not in it uses the hooks above.
	ProvidersFile string
}

// providers returns the replace strategy's hooks: the file's per fleet, the variables' for
// the rest.
func (c Config) providers() (provider.Set, error) {
	s := provider.Set{Default: provider.Hooks{Provision: c.ProviderProvision, Switch: c.ProviderSwitch, Retire: c.ProviderRetire, Timeout: c.ProviderTimeout}}
	if c.ProvidersFile == "" {
		return s, nil
	}
	data, err := os.ReadFile(c.ProvidersFile)
	if err != nil {
		return s, fmt.Errorf("PATCHFLEET_EXECUTOR_PROVIDERS_FILE: %w", err)
	}
	if s.Fleets, err = provider.ParseFleets(data, c.ProviderTimeout); err != nil {
		return s, fmt.Errorf("PATCHFLEET_EXECUTOR_PROVIDERS_FILE %s: %w", c.ProvidersFile, err)
	}
	return s, nil
}

func (c *Config) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 200
	}
	set(&c.AckWait, 60*time.Second)
	set(&c.LeaseTTL, 60*time.Second)
	set(&c.ShutdownGrace, 10*time.Second)
	set(&c.ConnectTimeout, 15*time.Second)
	set(&c.CommandTimeout, 2*time.Minute)
	set(&c.AptTimeout, 30*time.Minute)
	set(&c.LockTimeout, 5*time.Minute)
	set(&c.HealthTimeout, 60*time.Second)
	set(&c.RebootTimeout, 10*time.Minute)
	set(&c.RebootDelay, 2*time.Second)
	set(&c.InventoryTTL, 30*time.Second)
	set(&c.ProviderTimeout, 15*time.Minute)
	if c.MinFreeKB == 0 {
		c.MinFreeKB = 512 << 10
	}
	if c.LogLimit == 0 {
		c.LogLimit = 8 << 20
	}
	if c.TransportRetries == 0 {
		c.TransportRetries = 3
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	c.dbMaxConnsSet = c.DBMaxConns != 0
	if c.DBMaxConns == 0 {
		c.DBMaxConns = DefaultDBMaxConns(c.Concurrency)
	}
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		rand.Read(b)
		c.InstanceID = fmt.Sprintf("%s-%s-%s", Name, host, hex.EncodeToString(b))
	}
}

// leaseHolder names this process as a lease holder: the instance id and a suffix of its
// own. An instance restarted after a crash must wait out its predecessor's leases like any
// other executor, because the commands the dead process started may still run on the hosts.
func leaseHolder(instance string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return instance + "/" + hex.EncodeToString(b)
}

// Validate names each missing or wrong setting.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 0 || c.Concurrency > MaxConcurrency {
		errs = append(errs, fmt.Errorf("PATCHFLEET_EXECUTOR_CONCURRENCY %d: want 1 to %d", c.Concurrency, MaxConcurrency))
	}
	for name, d := range map[string]time.Duration{"PATCHFLEET_EXECUTOR_ACK_WAIT": c.AckWait, "PATCHFLEET_EXECUTOR_LEASE_TTL": c.LeaseTTL,
		"PATCHFLEET_EXECUTOR_LOCK_TIMEOUT": c.LockTimeout, "PATCHFLEET_EXECUTOR_REBOOT_TIMEOUT": c.RebootTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.AckWait != 0 && c.AckWait < 3*time.Second {
		errs = append(errs, errors.New("PATCHFLEET_EXECUTOR_ACK_WAIT must be at least 3s (heartbeats go every third of it)"))
	}
	if n := countSet(c.ProviderProvision, c.ProviderSwitch, c.ProviderRetire); n != 0 && n != 3 {
		errs = append(errs, errors.New("PATCHFLEET_EXECUTOR_PROVIDER_PROVISION, _SWITCH and _RETIRE: set all three or none"))
	}
	if c.DBMaxConns < 0 || c.DBMaxConns > 1000 {
		errs = append(errs, fmt.Errorf("PATCHFLEET_EXECUTOR_DB_MAX_CONNS %d: want 1 to 1000", c.DBMaxConns))
	}
	if c.MinFreeKB < 0 {
		errs = append(errs, errors.New("PATCHFLEET_EXECUTOR_MIN_FREE_KB must not be negative"))
	}
	return errors.Join(append(errs, c.Common.Validate())...)
}

func countSet(cmds ...[]string) int {
	n := 0
	for _, c := range cmds {
		if len(c) > 0 {
			n++
		}
	}
	return n
}

// DefaultDBMaxConns is the pool size for a concurrency: a quarter of the jobs holding a
// connection at once is far more than they do (their queries take milliseconds between
// SSH commands that take seconds), plus room for the outbox relay, consumer and API.
func DefaultDBMaxConns(concurrency int) int {
	return min(32, max(8, concurrency/4+4))
}

// withPoolMaxConns sets pgxpool's pool_max_conns in a database URL or keyword/value
// connection string (service.Start hands it to pgxpool.ParseConfig). An existing setting is
// kept unless override.
func withPoolMaxConns(dsn string, n int, override bool) (string, error) {
	if n <= 0 {
		return dsn, nil
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("database URL does not parse") // the URL may hold a password: not quoted
		}
		q := u.Query()
		if q.Has("pool_max_conns") && !override {
			return dsn, nil
		}
		q.Set("pool_max_conns", strconv.Itoa(n))
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if strings.TrimSpace(dsn) == "" || strings.Contains(dsn, "pool_max_conns=") && !override {
		return dsn, nil
	}
	// In a keyword/value string the last setting wins.
	return dsn + " pool_max_conns=" + strconv.Itoa(n), nil
}

// Run runs the service until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("executor config: %w", err)
	}
	hooks, err := cfg.providers()
	if err != nil {
		return fmt.Errorf("executor config: %w", err)
	}
	common := cfg.Common
	if common.DatabaseURL, err = withPoolMaxConns(common.DatabaseURL, cfg.DBMaxConns, cfg.dbMaxConnsSet); err != nil {
		return fmt.Errorf("executor config: %w", err)
	}
	svc, err := service.Start(ctx, service.Config{Common: common, Name: Name, Schema: executordb.Schema, Migrations: executordb.Migrations}, logger)
	if err != nil {
		return err
	}
	sshCfg, noAuth, err := sshConfig(cfg, svc.Logger)
	if err != nil {
		return err
	}
	if noAuth != "" {
		svc.Logger.Warn("no SSH credentials configured: every job will fail", "reason", noAuth)
	}
	pool := sshx.NewPool(sshCfg)
	defer pool.Close()

	r := &upgrade.Runner{
		Cfg: upgrade.Config{
			Executor: cfg.InstanceID, Producer: Name,
			Rules:       job.Rules{MinFreeKB: cfg.MinFreeKB, RebootTimeout: cfg.RebootTimeout},
			Timeouts:    remote.Timeouts{Command: cfg.CommandTimeout, Apt: cfg.AptTimeout, Lock: cfg.LockTimeout, Health: cfg.HealthTimeout},
			RebootDelay: cfg.RebootDelay, RebootBackoff: reboot.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second},
			TransportRetries: cfg.TransportRetries, MaxAttempts: cfg.MaxAttempts, LogLimit: cfg.LogLimit,
			NoAuth: noAuth,
		},
		Store:   &store.Store{Pool: svc.Pool},
		Leases:  &lease.Leases{Pool: svc.Pool, Holder: leaseHolder(cfg.InstanceID), TTL: cfg.LeaseTTL},
		Targets: &remote.Targets{Inventory: query.Client{NC: svc.NC}, TTL: cfg.InventoryTTL},
		Pool:    pool, DB: svc.Pool, NC: svc.NC, Logger: svc.Logger,
	}
	if hooks.Any() {
		r.Replace = &upgrade.Replace{Hooks: hooks}
	}
	c := svc.Consumer("", events.ConsumerConfig{
		Concurrency: cfg.Concurrency, AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver,
		// A busy host is retried at up to the lease's pace, not faster.
		Backoff:       events.ExponentialBackoff(time.Second, min(cfg.LeaseTTL, 30*time.Second)),
		ShutdownGrace: cfg.ShutdownGrace,
	})
	events.On(c, r.Handle)
	svc.Go("dead-letters", func(ctx context.Context) error { return deadLetters(ctx, svc.JS, r) })
	(&api.API{Store: r.Store, DB: svc.Pool}).Mount(svc.Ops)
	svc.Logger.Info("executor ready", "instance", cfg.InstanceID, "concurrency", cfg.Concurrency, "db_max_conns", svc.Pool.Config().MaxConns)
	return svc.Run(ctx)
}

// sshConfig builds the pool's configuration. noAuth explains why jobs cannot authenticate.
func sshConfig(cfg Config, logger *slog.Logger) (sshx.Config, string, error) {
	c := sshx.Config{ConnectTimeout: cfg.ConnectTimeout, CommandTimeout: cfg.CommandTimeout,
		MaxConns: cfg.Concurrency + 16, AgentSocket: cfg.SSHAgentSocket, Logger: logger}
	if len(cfg.SSHKeyFiles) > 0 {
		signers, err := sshx.LoadSigners(cfg.SSHKeyFiles...)
		if err != nil {
			return c, "", fmt.Errorf("executor ssh keys: %w", err)
		}
		c.Signers = signers
	}
	if cfg.SSHKnownHosts != "" {
		kh, err := sshx.KnownHosts(cfg.SSHKnownHosts)
		if err != nil {
			return c, "", fmt.Errorf("executor ssh known hosts: %w", err)
		}
		c.KnownHosts = kh
	}
	noAuth := ""
	if len(c.Signers) == 0 && c.AgentSocket == "" {
		noAuth = "no SSH key (PATCHFLEET_EXECUTOR_SSH_KEY) and no ssh-agent (SSH_AUTH_SOCK) configured"
	}
	return c, noAuth, nil
}

// deadLetters gives every job the runner dead-lettered an outcome (see Runner.DeadLettered).
func deadLetters(ctx context.Context, js jetstream.JetStream, r *upgrade.Runner) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamDLQ, jetstream.ConsumerConfig{
		Durable: Name + "-dead-letters", FilterSubject: events.SubjectDLQ + "." + Name,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 20,
	})
	if err != nil {
		return fmt.Errorf("dead-letter consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var dl events.DeadLetter
		if err := json.Unmarshal(msg.Data(), &dl); err != nil {
			_ = msg.Term()
			return
		}
		if err := r.DeadLettered(ctx, dl); err != nil {
			r.Logger.Warn("outcome of dead-lettered job", "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			return
		}
		_ = msg.Ack()
	})
	if err != nil {
		return fmt.Errorf("dead-letter consumer: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}
