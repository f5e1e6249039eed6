package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is one benchmark line of go test output: its name without the GOMAXPROCS suffix and
// every "value unit" pair (ns/op and the b.ReportMetric units).
type Result struct {
	Name    string
	N       int
	Metrics map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// ParseOutput reads the benchmark lines of go test -bench output.
func ParseOutput(out []byte) []Result {
	var rs []Result
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		r := Result{Name: procsSuffix.ReplaceAllString(f[0], ""), N: n, Metrics: map[string]float64{}}
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			r.Metrics[f[i+1]] = v
		}
		if ok {
			rs = append(rs, r)
		}
	}
	return rs
}

// GoRunner runs Go benchmarks in the repository at Root, writing each run's output under LogDir.
type GoRunner struct {
	Root   string
	LogDir string
	Short  bool
	Log    io.Writer // progress lines

	listed map[string][]string // package -> benchmark names (top level)
	runs   map[string]runOutcome
}

type runOutcome struct {
	results []Result
	output  []byte
	err     error
}

// shortPattern is the -bench pattern of top in short mode: only the sub-benchmarks some row of
// Table measures in short mode, so a full-mode-only one (the 10,000-host rollout) does not run
// with its siblings.
func shortPattern(pkg, top string) string {
	subs := map[string]bool{}
	skipped := false
	for _, t := range Table {
		if t.Pkg != pkg || topLevel(t.Bench) != top {
			continue
		}
		_, sub, ok := strings.Cut(t.Bench, "/")
		switch {
		case t.Short == 0:
			skipped = true
		case !ok:
			return "^" + top + "$" // a row measures the benchmark whole
		default:
			first, _, _ := strings.Cut(sub, "/")
			subs[regexp.QuoteMeta(first)] = true
		}
	}
	if !skipped || len(subs) == 0 {
		return "^" + top + "$"
	}
	return "^" + top + "$/^(" + strings.Join(slices.Sorted(maps.Keys(subs)), "|") + ")$"
}

func topLevel(bench string) string {
	name, _, _ := strings.Cut(bench, "/")
	return name
}

// list returns the top-level benchmarks of pkg, compiling its tests.
func (g *GoRunner) list(ctx context.Context, s Spec) ([]string, error) {
	key := s.Pkg + "|" + s.Tags
	if names, ok := g.listed[key]; ok {
		return names, nil
	}
	args := []string{"test", "-list", "^Benchmark"}
	if s.Tags != "" {
		args = append(args, "-tags", s.Tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = filepath.Join(g.Root, s.Pkg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("list benchmarks in %s: %w: %s", s.Pkg, err, lastLines(out, 5))
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			names = append(names, strings.TrimSpace(l))
		}
	}
	if g.listed == nil {
		g.listed = map[string][]string{}
	}
	g.listed[key] = names
	return names, nil
}

// Measure returns the figure of s: run (once per package, benchmark and -benchtime) and parsed.
func (g *GoRunner) Measure(ctx context.Context, s Spec) Row {
	show := s.Show
	if show == "" {
		show = s.Unit
	}
	row := Row{Figure: s.Figure, Unit: show, Goal: s.Goal, Dir: s.Dir}
	n := s.Full
	if g.Short {
		n = s.Short
	}
	if n == 0 {
		row.Note = "full mode only"
		return row
	}
	if _, err := os.Stat(filepath.Join(g.Root, s.Pkg)); err != nil {
		row.Note = "package " + s.Pkg + " does not exist"
		return row
	}
	names, err := g.list(ctx, s)
	if err != nil {
		row.Note = "does not build: " + firstLine(err.Error())
		return row
	}
	top := topLevel(s.Bench)
	found := false
	for _, name := range names {
		found = found || name == top
	}
	if !found {
		row.Note = top + " not found in " + s.Pkg
		if s.NotInPlan != "" {
			row.Note = s.NotInPlan
		}
		return row
	}
	key := fmt.Sprintf("%s|%s|%s|%d", s.Pkg, s.Tags, top, n)
	o, ok := g.runs[key]
	if !ok {
		o = g.run(ctx, s, top, n)
		if g.runs == nil {
			g.runs = map[string]runOutcome{}
		}
		g.runs[key] = o
	}
	if o.err != nil {
		row.Note = o.err.Error()
		return row
	}
	scale := s.Scale
	if scale == 0 {
		scale = 1
	}
	if s.Pattern != "" {
		m := regexp.MustCompile(s.Pattern).FindSubmatch(o.output)
		if m == nil {
			row.Note = fmt.Sprintf("%s logged nothing matching %q", top, s.Pattern)
			return row
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			row.Note = fmt.Sprintf("%s logged %q: %v", top, m[1], err)
			return row
		}
		row.Value, row.Has = v*scale, true
		return row
	}
	for _, r := range o.results {
		if r.Name != s.Bench {
			continue
		}
		v, ok := r.Metrics[s.Unit]
		if !ok {
			row.Note = fmt.Sprintf("%s reports no %s", s.Bench, s.Unit)
			return row
		}
		row.Value, row.Has = v*scale, true
		return row
	}
	row.Note = s.Bench + " printed no result"
	return row
}

func (g *GoRunner) run(ctx context.Context, s Spec, top string, n int) runOutcome {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 20 * time.Minute
	}
	// -v: benchmarks' logs are printed too (figures some benchmarks log, see Spec.Pattern).
	pattern := "^" + top + "$"
	if g.Short {
		pattern = shortPattern(s.Pkg, top)
	}
	args := []string{"test", "-v", "-run", "^$", "-bench", pattern, "-benchtime", fmt.Sprintf("%dx", n),
		"-count", "1", "-timeout", timeout.String()}
	if s.Tags != "" {
		args = append(args, "-tags", s.Tags)
	}
	args = append(args, ".")
	fmt.Fprintf(g.Log, "bench: %s: go %s\n", s.Pkg, strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join(g.Root, s.Pkg)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(time.Second)
	if g.LogDir != "" {
		name := strings.NewReplacer("/", "_").Replace(s.Pkg) + "." + top + ".log"
		if werr := os.WriteFile(filepath.Join(g.LogDir, name), out, 0o644); werr != nil {
			fmt.Fprintf(g.Log, "bench: write log: %v\n", werr)
		}
	}
	rs := ParseOutput(out)
	fmt.Fprintf(g.Log, "bench: %s %s: %d results in %s\n", s.Pkg, top, len(rs), took)
	if err != nil && len(rs) == 0 {
		return runOutcome{err: fmt.Errorf("failed after %s: %s", took, firstFailure(out, err))}
	}
	return runOutcome{results: rs, output: out}
}

// firstFailure picks the line that explains a failed run.
func firstFailure(out []byte, err error) string {
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.Contains(l, ".go:") || strings.HasPrefix(l, "panic:") {
			return truncate(l, 160)
		}
	}
	return truncate(err.Error()+": "+lastLines(out, 1), 160)
}

func lastLines(b []byte, n int) string {
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return truncate(l, 160)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
