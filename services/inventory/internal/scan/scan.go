// Package scan scans hosts over SSH: it runs the hostfacts script through a Runner (the
// sshx pool in production), parses the output and hands it to the store, which records the
// observation with the events it causes. A scheduler scans every host on an interval with
// jitter, at once when asked, and shares the work with other instances through claims.
package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/services/inventory/internal/store"
)

// Target is a host to run the scan on.
type Target struct {
	ID   string
	Name string
	SSH  events.SSHTarget
}

// Result is what a script run produced. A non-zero exit status is data, not an error.
type Result struct {
	Stdout     []byte
	Stderr     []byte
	ExitStatus int
	// AcceptedKey is the host key accepted by trust on first use (authorized_keys format),
	// empty when the key was pinned already.
	AcceptedKey string
}

// Runner runs a script on a host. Transport failures are errors; a host that presented a key
// other than the pinned one is a *KeyMismatchError.
type Runner interface {
	Run(ctx context.Context, t Target, script string) (Result, error)
}

// KeyMismatchError is a connection refused because the host presented another key.
type KeyMismatchError struct {
	Expected  string // SHA256 fingerprint of the pinned key
	Presented string // SHA256 fingerprint of the key offered
	Err       error
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch: presented %s, pinned %s", e.Presented, e.Expected)
}

func (e *KeyMismatchError) Unwrap() error { return e.Err }

// ErrNoHostKey refuses a first contact with a host that has no pinned key and does not allow
// trust on first use.
var ErrNoHostKey = errors.New("no pinned host key and trust on first use not allowed")

// Config tunes scanning.
type Config struct {
	Interval    time.Duration // between two scans of a host
	Jitter      time.Duration // added at random to each interval, so scans spread out
	Concurrency int           // scans at once
	Timeout     time.Duration // one scan: connect, run, read
	Poll        time.Duration // how often the scheduler looks for due hosts unless woken
}

// rememberedLists is how many distinct package lists the scanner's parser keeps (about
// 150 KiB each): a fleet built from a few images scans a few lists over and over.
const rememberedLists = 32

// Scanner scans hosts.
type Scanner struct {
	store  *store.Store
	runner Runner
	cfg    Config
	logger *slog.Logger
	wake   chan struct{}
	parser *hostfacts.Parser
	scans  *prometheus.CounterVec
	now    func() time.Time
}

// New returns a scanner; reg (optional) gets its metrics.
func New(st *store.Store, runner Runner, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Scanner {
	s := &Scanner{store: st, runner: runner, cfg: cfg, logger: logger, wake: make(chan struct{}, 1), now: time.Now,
		parser: hostfacts.NewParser(rememberedLists),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "patchfleet_inventory_scans_total",
			Help: "Host scans by outcome."}, []string{"outcome"})}
	if reg != nil {
		reg.MustRegister(s.scans)
	}
	return s
}

// Wake makes the scheduler look for due hosts now.
func (s *Scanner) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run schedules scans until ctx ends, then lets the scans in flight finish.
func (s *Scanner) Run(ctx context.Context) error {
	type job struct {
		host  store.Target
		until time.Time
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range s.cfg.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				// A scan started finishes even during shutdown, within its timeout.
				next := s.now().Add(s.cfg.Interval)
				if s.cfg.Jitter > 0 {
					next = next.Add(rand.N(s.cfg.Jitter))
				}
				_ = s.Scan(context.WithoutCancel(ctx), j.host, store.Next{ClaimedUntil: j.until, At: next})
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)
	lease := 2*s.cfg.Timeout + time.Minute
	for {
		hosts, until, err := s.store.Claim(ctx, s.cfg.Concurrency, lease)
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("claim hosts to scan", "err", err)
		}
		for _, h := range hosts {
			select {
			case jobs <- job{h, until}:
			case <-ctx.Done():
				return nil // unstarted claims expire with their lease
			}
		}
		if len(hosts) == s.cfg.Concurrency && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-time.After(s.cfg.Poll):
		}
	}
}

// Scan scans one host, claimed by the scheduler (t as the claim read it), now and records
// the outcome: the observation and its events, a key mismatch (marked and announced), or the
// error. It returns the error too. The next scan is stored with the observation, or on its
// own whatever else happened.
func (s *Scanner) Scan(ctx context.Context, t store.Target, next store.Next) error {
	id := t.ID
	outcome := "ok"
	scheduled := false
	defer func() {
		s.scans.WithLabelValues(outcome).Inc()
		if scheduled {
			return
		}
		if err := s.store.Schedule(ctx, id, next.ClaimedUntil, next.At); err != nil {
			s.logger.Warn("schedule next scan", "host", id, "err", err)
		}
	}()
	fail := func(kind string, err error) error {
		outcome = kind
		s.logger.Warn("scan failed", "host", id, "err", err)
		if rerr := s.store.ScanFailed(context.WithoutCancel(ctx), id, truncate(err.Error(), 500)); rerr != nil {
			s.logger.Error("record scan failure", "host", id, "err", rerr)
		}
		return err
	}
	if t.SSH.HostKey == "" && !t.SSH.TOFU {
		return fail("refused", fmt.Errorf("scan %s: %w", id, ErrNoHostKey))
	}
	var apps []string
	if t.AppPath != "" {
		apps = append(apps, t.AppPath)
	}
	script, err := hostfacts.ScanScript(apps...)
	if err != nil {
		// A bad application path loses the Rails probe, not the scan.
		s.logger.Warn("scan without application path", "host", id, "err", err)
		if script, err = hostfacts.ScanScript(); err != nil {
			return fail("error", fmt.Errorf("scan script: %w", err))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	start := s.now()
	res, err := s.runner.Run(rctx, Target{ID: t.ID, Name: t.Name, SSH: t.SSH}, script)
	var km *KeyMismatchError
	switch {
	case errors.As(err, &km):
		outcome = "key_mismatch"
		s.logger.Error("host key mismatch; host refused until re-pinned", "host", id, "presented", km.Presented, "pinned", km.Expected)
		return s.store.KeyMismatch(context.WithoutCancel(ctx), t, km.Expected, km.Presented, truncate(err.Error(), 500))
	case err != nil:
		return fail("unreachable", fmt.Errorf("scan %s: %w", id, err))
	}
	facts, err := s.parser.Parse(res.Stdout)
	if err != nil {
		return fail("bad_output", fmt.Errorf("scan %s (exit status %d, stderr %q): %w", id, res.ExitStatus,
			truncate(string(res.Stderr), 200), err))
	}
	rep, err := s.store.Observe(ctx, store.Observation{HostID: id, ScanID: events.NewID(), At: s.now(), Facts: facts,
		AcceptedKey: res.AcceptedKey, Next: &next})
	if errors.Is(err, store.ErrRetired) {
		outcome = "skipped" // decommissioned since the claim
		return nil
	}
	if err != nil {
		outcome = "error"
		return fmt.Errorf("store scan of %s: %w", id, err)
	}
	scheduled = true
	s.logger.Debug("host scanned", "host", id, "packages", rep.PackageCount, "changes", len(rep.Changes),
		"problems", len(facts.Problems), "took", s.now().Sub(start))
	return nil
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
