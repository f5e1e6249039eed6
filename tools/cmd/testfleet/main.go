// Command testfleet runs disposable Debian 12 test hosts on this machine.
//
//	testfleet prepare      build (or find in the cache) the root filesystem
//	testfleet up N         start N hosts, print them, supervise until SIGINT/SIGTERM
//	testfleet down         tear down whatever the state file records
//
// It must run as root. $PATCHFLEET_TESTFLEET_CACHE overrides the cache
// directory, $PATCHFLEET_TESTFLEET_STATE the state file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/patchfleet/patchfleet/tools/testfleet"
)

const defaultStateFile = "/run/patchfleet-testfleet/state.json"

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	stateFile := os.Getenv("PATCHFLEET_TESTFLEET_STATE")
	if stateFile == "" {
		stateFile = defaultStateFile
	}
	cfg := config{cacheDir: testfleet.CacheDirFromEnv(), stateFile: stateFile}
	fs := flag.NewFlagSet("testfleet", flag.ExitOnError)
	fs.StringVar(&cfg.cacheDir, "cache", cfg.cacheDir, "cache directory for the root filesystem")
	fs.StringVar(&cfg.stateFile, "state", cfg.stateFile, "state file recording running hosts")
	fs.DurationVar(&cfg.rebootDelay, "reboot-delay", 300*time.Millisecond, "how long a rebooting host stays down")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: testfleet [flags] prepare | up N | down\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch fs.Arg(0) {
	case "prepare":
		err = testfleet.Prepare(ctx, testfleet.Options{CacheDir: cfg.cacheDir, Logger: logger})
	case "up":
		n, convErr := strconv.Atoi(fs.Arg(1))
		if convErr != nil || n < 1 {
			fs.Usage()
			os.Exit(2)
		}
		err = up(ctx, cfg, n, logger, os.Stdout)
	case "down":
		err = down(cfg, logger)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		logger.Error("testfleet failed", "err", err)
		os.Exit(1)
	}
}

type config struct {
	cacheDir    string
	stateFile   string
	rebootDelay time.Duration
}

func up(ctx context.Context, cfg config, n int, logger *slog.Logger, out io.Writer) error {
	if _, err := os.Stat(cfg.stateFile); err == nil {
		return fmt.Errorf("state file %s exists: run testfleet down first", cfg.stateFile)
	}
	start := time.Now()
	fleet, err := testfleet.Start(ctx, testfleet.Options{
		CacheDir: cfg.cacheDir, RebootDelay: cfg.rebootDelay, Logger: logger,
	}, n)
	if err != nil {
		return err
	}
	defer fleet.Close()
	logger.Info("fleet up", "hosts", n, "took", time.Since(start).Round(time.Millisecond))

	st := testfleet.StateOf(fleet, os.Getpid())
	if err := testfleet.WriteState(cfg.stateFile, st); err != nil {
		return err
	}
	defer os.Remove(cfg.stateFile)
	fmt.Fprintf(out, "%-12s %-16s %-6s %-52s %s\n", "NAME", "ADDRESS", "PORT", "HOST KEY", "ROOT KEY")
	for _, h := range st.Hosts {
		fmt.Fprintf(out, "%-12s %-16s %-6d %-52s %s\n", h.Name, "127.0.0.1", h.Port, h.HostKeyFingerprint, st.ClientKey)
	}
	fmt.Fprintf(out, "\nssh -i %s -o UserKnownHostsFile=%s -p %d root@127.0.0.1\n", st.ClientKey, st.KnownHosts, st.Hosts[0].Port)
	fmt.Fprintf(out, "state: %s; stop with Ctrl-C or testfleet down\n", cfg.stateFile)
	<-ctx.Done()
	logger.Info("stopping fleet")
	return fleet.Close()
}

func down(cfg config, logger *slog.Logger) error {
	data, err := os.ReadFile(cfg.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		logger.Info("nothing to tear down", "state", cfg.stateFile)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	var st testfleet.FleetState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("read state %s: %w", cfg.stateFile, err)
	}
	if err := testfleet.TearDown(st, logger); err != nil {
		return err
	}
	// The supervisor removes the state file itself when it stops cleanly.
	if err := os.Remove(cfg.stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}
