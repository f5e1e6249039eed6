// Command bench measures every performance goal of Patchfleet and prints one table: figure,
// value, goal, met or not. It runs the Go benchmarks listed in bench.Table and the
// comparison with Ansible and parallel-ssh on real test hosts (root).
//
//	go run ./cmd/bench [-short] [-only REGEXP] [-peers=false] [-go=false] [-out FILE]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/patchfleet/patchfleet/tools/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	short := flag.Bool("short", false, "fewer iterations, no 10,000-host rollout, one run per peer tool on 20 hosts (under 10 minutes)")
	only := flag.String("only", "", "run only the figures matching this regular expression")
	peers := flag.Bool("peers", true, "compare with Ansible and parallel-ssh on test hosts (root)")
	goBench := flag.Bool("go", true, "run the Go benchmarks")
	sizes := flag.String("sizes", "", "host counts of the peer comparison; default 20 with -short, else 20,50")
	runs := flag.Int("runs", 0, "runs per peer tool and operation (median kept); default 1 with -short, else 3")
	out := flag.String("out", "", "also write the table to this file")
	logDir := flag.String("logs", "", "directory for the benchmarks' output (default <repo>/.cache/bench)")
	tools := flag.String("tools", "", "compare only the peer tools matching this regular expression")
	ops := flag.String("ops", "", "compare only these operations: scan, upgrade (comma-separated); default both")
	debs := flag.String("debs", "/var/cache/patchfleet/bench/debs", "python3-apt .debs for the test hosts (tools/scripts/bench-deps)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if *logDir == "" {
		*logDir = filepath.Join(root, ".cache", "bench")
	}
	if err := os.MkdirAll(*logDir, 0o755); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	var filter *regexp.Regexp
	if *only != "" {
		if filter, err = regexp.Compile(*only); err != nil {
			return fmt.Errorf("-only: %w", err)
		}
	}
	if *runs == 0 {
		*runs = 3
		if *short {
			*runs = 1
		}
	}
	if *sizes == "" {
		*sizes = "20,50"
		if *short {
			*sizes = "20"
		}
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-sizes: %q is not a host count", s)
		}
		ns = append(ns, n)
	}

	started := time.Now()
	loadBefore := loadAvg()
	var rows []bench.Row
	if *goBench {
		g := &bench.GoRunner{Root: root, LogDir: *logDir, Short: *short, Log: os.Stderr}
		for _, s := range bench.Table {
			if filter != nil && !filter.MatchString(s.Figure) {
				continue
			}
			rows = append(rows, g.Measure(ctx, s))
		}
	}
	if *peers && (filter == nil || filter.MatchString("peers")) {
		o := bench.PeerOptions{Sizes: ns, Runs: *runs, WorkDir: filepath.Join(*logDir, "peers"), DebDir: *debs, Log: os.Stderr}
		if o.Tools, err = peerTools(*tools); err != nil {
			return err
		}
		if *ops != "" {
			for _, op := range strings.Split(*ops, ",") {
				if op != bench.OpScan && op != bench.OpUpgrade {
					return fmt.Errorf("-ops: %q is neither %s nor %s", op, bench.OpScan, bench.OpUpgrade)
				}
				o.Ops = append(o.Ops, op)
			}
		}
		ms, err := bench.RunPeers(ctx, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: peers:", err)
			rows = append(rows, bench.Row{Figure: "peer comparison", Note: err.Error()})
		}
		rows = append(rows, bench.PeerRows(ms, ns)...)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}

	var b bytes.Buffer
	mode := "full"
	if *short {
		mode = "short"
	}
	fmt.Fprintf(&b, "make bench (%s mode), %s, took %s\n", mode, started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "machine: %d cores, %s memory, kernel %s, %s; load average %s before, %s after\n\n",
		runtime.NumCPU(), memTotal(), kernel(), goVersion(), loadBefore, loadAvg())
	bench.Render(&b, rows)
	os.Stdout.Write(b.Bytes())
	if *out != "" {
		if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
	}
	return nil
}

// peerTools returns the tools a -tools expression selects, in table order; nil for all.
func peerTools(expr string) ([]string, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("-tools: %w", err)
	}
	var tools []string
	for _, t := range bench.Tools {
		if re.MatchString(t) {
			tools = append(tools, t)
		}
	}
	if tools == nil {
		return nil, fmt.Errorf("-tools: %q matches none of %s", expr, strings.Join(bench.Tools, ", "))
	}
	return tools, nil
}

// repoRoot is the directory holding go.work, found from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory: run from the repository")
		}
		dir = parent
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func goVersion() string { return runtime.Version() }
