// Command feedpub publishes advisory feeds to Patchfleet's FEEDS stream, one
// AdvisorySubmitted per advisory, for advisory-ingest to store and announce:
//
//	feedpub [flags] SOURCE...
//
// A SOURCE is an OSV JSON file, a directory of them, an OSV zip dump (all.zip), the Debian
// security tracker's JSON or DSA list, a page of Ubuntu's notices API, or an http(s) URL of
// any of these. See tools/feedpub/README.md.
//
// Exit status: 0 every record published, 1 some records bad (the others published), 2 failure.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/feed"
	"github.com/patchfleet/patchfleet/tools/feedpub"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		url      = flag.String("nats-url", envOr("PATCHFLEET_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL(s), comma-separated ($PATCHFLEET_NATS_URL)")
		creds    = flag.String("creds", os.Getenv("PATCHFLEET_NATS_CREDS"), "NATS credentials file ($PATCHFLEET_NATS_CREDS)")
		nkey     = flag.String("nkey", os.Getenv("PATCHFLEET_NATS_NKEY"), "NATS NKEY seed file ($PATCHFLEET_NATS_NKEY)")
		inbox    = flag.String("inbox", envOr("PATCHFLEET_NATS_INBOX", events.UserInbox("feedpub")), "NATS reply subject prefix, the user's own ($PATCHFLEET_NATS_INBOX)")
		ca       = flag.String("tls-ca", os.Getenv("PATCHFLEET_NATS_CA"), "CA file to trust for TLS")
		cert     = flag.String("tls-cert", os.Getenv("PATCHFLEET_NATS_CERT"), "client certificate for mutual TLS")
		key      = flag.String("tls-key", os.Getenv("PATCHFLEET_NATS_KEY"), "client key for mutual TLS")
		format   = flag.String("format", "", "force a format: "+strings.Join(feed.Formats, ", ")+" (default: detected per document)")
		producer = flag.String("producer", "feedpub", "producer named in the events")
		dryRun   = flag.Bool("dry-run", false, "print the events as JSON lines on stdout instead of publishing")
		quiet    = flag.Bool("quiet", false, "no progress on stderr")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: feedpub [flags] SOURCE...\n\nPublishes advisories to %s.\n\n", events.SpecOf[events.AdvisorySubmitted]().Subject)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		return feedpub.ExitFailure
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := feedpub.Config{Sources: flag.Args(), Format: *format, Producer: *producer, DryRun: *dryRun, Out: os.Stdout}
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	bus := events.BusConfig{URL: *url, CredsFile: *creds, NKeyFile: *nkey, CAFile: *ca, CertFile: *cert, KeyFile: *key, InboxPrefix: *inbox}
	bad := func(b feed.Bad) { logger.Warn("bad record", "record", b.Origin, "reason", b.Err) }
	if *dryRun {
		res, err := feedpub.Run(ctx, cfg, nil, bad)
		return report(logger, res, err)
	}
	if err := bus.Validate(); err != nil {
		logger.Error("bad bus settings", "err", err)
		return feedpub.ExitFailure
	}
	nc, js, err := events.Connect(ctx, bus, "patchfleet-feedpub", logger)
	if err != nil {
		logger.Error("connect to nats", "err", err)
		return feedpub.ExitFailure
	}
	defer nc.Close()
	res, err := feedpub.Run(ctx, cfg, js, bad)
	if derr := nc.Drain(); derr != nil && err == nil {
		err = derr
	}
	return report(logger, res, err)
}

func report(logger *slog.Logger, res feedpub.Result, err error) int {
	if err != nil {
		logger.Error("feedpub failed", "err", err, "published", res.Published)
	}
	return res.ExitCode(err)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
