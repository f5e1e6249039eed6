// Package bench measures Patchfleet against its performance goals: it runs the Go benchmarks
// the services keep beside their code, a side-by-side comparison with the tools people use
// instead (Ansible, parallel-ssh) on real test hosts, and renders one table of figures.
package bench

import (
	"fmt"
	"math"
	"time"
)

// Direction says how a value compares with its goal.
type Direction int

const (
	Info    Direction = iota // reported, no goal
	AtLeast                  // met when value >= goal
	AtMost                   // met when value <= goal
)

// Spec is one figure taken from a Go benchmark: the benchmark in Pkg (a directory relative to
// the repository root) named Bench — "BenchmarkX" or "BenchmarkX/sub" — reports Unit; the value
// is multiplied by Scale and shown in Show.
type Spec struct {
	Figure    string
	Pkg       string
	Bench     string
	Unit      string
	Scale     float64 // 0 means 1
	Show      string  // unit shown in the table; Unit when empty
	Goal      float64
	Dir       Direction
	Short     int           // -benchtime Nx in short mode
	Full      int           // -benchtime Nx in full mode
	Timeout   time.Duration // go test -timeout; 20m when zero
	Tags      string        // build tags
	NotInPlan string        // why a benchmark is known to be absent (shown when it is)
	// Pattern, when set, takes the value from the benchmark's log instead of a metric: a
	// regular expression whose first group is the number (for figures a benchmark logs).
	Pattern string
}

// Table is every figure the issues name, in the order shown. Add a row to measure more.
var Table = []Spec{
	// advisory-ingest
	{Figure: "ingest of a 50,000-record OSV dump", Pkg: "services/advisory-ingest/internal/feeds", Bench: "BenchmarkIngestDump50k",
		Unit: "records/s", Goal: 20000, Dir: AtLeast, Short: 1, Full: 3},
	{Figure: "ingest 50k: peak heap", Pkg: "services/advisory-ingest/internal/feeds", Bench: "BenchmarkIngestDump50k",
		Unit: "peak-heap-MiB", Show: "MiB", Short: 1, Full: 3},
	{Figure: "ingest 50k: machine CPU per record (PostgreSQL included)", Pkg: "services/advisory-ingest/internal/feeds", Bench: "BenchmarkIngestDump50k",
		Unit: "machine-cpu-µs/record", Show: "µs", Short: 1, Full: 3},
	{Figure: "ingest 50k: CPU per record, ingest process (embedded JetStream included)", Pkg: "services/advisory-ingest/internal/feeds", Bench: "BenchmarkIngestDump50k",
		Unit: "cpu-µs/record", Show: "µs", Short: 1, Full: 3},
	{Figure: "re-ingest of the unchanged dump (0 events, asserted)", Pkg: "services/advisory-ingest/internal/feeds", Bench: "BenchmarkReingestUnchangedDump50k",
		Unit: "records/s", Goal: 100000, Dir: AtLeast, Short: 2, Full: 5},
	{Figure: "re-ingest 50k: peak heap", Pkg: "services/advisory-ingest/internal/feeds", Bench: "BenchmarkReingestUnchangedDump50k",
		Unit: "peak-heap-MiB", Show: "MiB", Short: 2, Full: 5},
	{Figure: "OSV dump parse only (50k)", Pkg: "services/advisory-ingest/internal/source", Bench: "BenchmarkReadDump50k",
		Unit: "records/s", Short: 1, Full: 3},
	{Figure: "OSV dump parse only: peak heap", Pkg: "services/advisory-ingest/internal/source", Bench: "BenchmarkReadDump50k",
		Unit: "peak-heap-MiB", Show: "MiB", Short: 1, Full: 3},
	{Figure: "OSV dump parse only: CPU per record", Pkg: "services/advisory-ingest/internal/source", Bench: "BenchmarkReadDump50k",
		Unit: "cpu-µs/record", Show: "µs", Short: 1, Full: 3},

	// inventory
	{Figure: "exposure at 100,000 hosts, HTTP, median", Pkg: "services/inventory", Bench: "BenchmarkExposure100k/http/advisory",
		Unit: "ms-median", Show: "ms", Goal: 20, Dir: AtMost, Short: 20, Full: 200},
	{Figure: "exposure at 100,000 hosts, HTTP CVE+fleet, median", Pkg: "services/inventory", Bench: "BenchmarkExposure100k/http/cve-fleet",
		Unit: "ms-median", Show: "ms", Goal: 20, Dir: AtMost, Short: 20, Full: 200},
	{Figure: "exposure at 100,000 hosts, NATS, median", Pkg: "services/inventory", Bench: "BenchmarkExposure100k/micro/advisory",
		Unit: "ms-median", Show: "ms", Goal: 20, Dir: AtMost, Short: 20, Full: 200},
	{Figure: "exposure of 100,000 hosts, every page, grouped (the planner's read)", Pkg: "services/inventory", Bench: "BenchmarkExposureWalk100k/grouped",
		Unit: "ns/op", Scale: 1e-6, Show: "ms", Short: 1, Full: 3},
	{Figure: "exposure of 100,000 hosts, every page of 1,000 hosts", Pkg: "services/inventory", Bench: "BenchmarkExposureWalk100k/hosts",
		Unit: "ns/op", Scale: 1e-6, Show: "ms", Short: 1, Full: 3},
	{Figure: "inventory storage at 100,000 hosts", Pkg: "services/inventory", Bench: "BenchmarkExposure100k/http/advisory",
		Unit: "MB-stored", Show: "MiB", Short: 20, Full: 200, Pattern: `storage for 100000 hosts.*total ([0-9.]+) MB`},
	{Figure: "scan round of 1,000 fleetsim hosts (service)", Pkg: "services/inventory", Bench: "BenchmarkScanRound1000",
		Unit: "hosts/s", Goal: 500, Dir: AtLeast, Short: 1, Full: 3, Timeout: 30 * time.Minute},
	{Figure: "fleetsim: scans at 10,000 hosts", Pkg: "tools/fleetsim", Bench: "BenchmarkScan10k",
		Unit: "scans/s", Short: 2000, Full: 5000},
	{Figure: "fleetsim: memory per simulated host", Pkg: "tools/fleetsim", Bench: "BenchmarkScan10k",
		Unit: "bytes/host", Show: "B", Short: 2000, Full: 5000},

	// planner
	{Figure: "planning one advisory at 100,000 hosts", Pkg: "services/planner", Bench: "BenchmarkPlanAdvisory100k",
		Unit: "ns/op", Scale: 1e-6, Show: "ms", Goal: 200, Dir: AtMost, Short: 1, Full: 5, Timeout: 30 * time.Minute},
	{Figure: "planning one advisory at 100,000 hosts, real inventory (event -> RolloutPlanned)", Pkg: "tools/bench", Bench: "BenchmarkPlanWithInventory100k",
		Unit: "ns/op", Scale: 1e-6, Show: "ms", Goal: 200, Dir: AtMost, Short: 2, Full: 5, Timeout: 30 * time.Minute},
	{Figure: "advisory -> first canary UpgradeRequested", Pkg: "services/planner", Bench: "BenchmarkAdvisoryToFirstJob",
		Unit: "ns/op", Scale: 1e-6, Show: "ms", Goal: 100, Dir: AtMost, Short: 10, Full: 50},

	// executor
	{Figure: "executor peak RSS, 1,000 concurrent SSH sessions", Pkg: "services/executor", Bench: "BenchmarkExecutor1000Hosts/apt-5s",
		Unit: "peak-RSS-MiB", Show: "MiB", Goal: 300, Dir: AtMost, Short: 1, Full: 1, Timeout: 30 * time.Minute},
	{Figure: "executor: sessions open at once in that run", Pkg: "services/executor", Bench: "BenchmarkExecutor1000Hosts/apt-5s",
		Unit: "peak-sessions", Show: "sessions", Short: 1, Full: 1, Timeout: 30 * time.Minute},
	{Figure: "executor: jobs/s, 1,000 hosts, apt instant", Pkg: "services/executor", Bench: "BenchmarkExecutor1000Hosts/apt-0s",
		Unit: "jobs/s", Short: 1, Full: 1, Timeout: 30 * time.Minute},

	// whole system (short mode runs only the 1,000-host rollout: see shortPattern)
	{Figure: "rollout, 1,000 fleetsim hosts, advisory -> RolloutCompleted", Pkg: "tools/bench", Bench: "BenchmarkRollout/hosts-1000",
		Unit: "s", Show: "s", Goal: 30, Dir: AtMost, Short: 1, Full: 1, Timeout: 45 * time.Minute},
	{Figure: "rollout, 10,000 fleetsim hosts, advisory -> RolloutCompleted", Pkg: "tools/bench", Bench: "BenchmarkRollout/hosts-10000",
		Unit: "s", Show: "s", Goal: 120, Dir: AtMost, Short: 0, Full: 1, Timeout: 45 * time.Minute},

	// event plumbing
	{Figure: "JetStream consumer throughput, events.Consumer, trivial handler, concurrency 1", Pkg: "tools/bench", Bench: "BenchmarkConsumerThroughput/concurrency-1",
		Unit: "events/s", Short: 2000, Full: 10000},
	{Figure: "JetStream consumer throughput, events.Consumer, trivial handler, concurrency 16", Pkg: "tools/bench", Bench: "BenchmarkConsumerThroughput/concurrency-16",
		Unit: "events/s", Short: 2000, Full: 10000},
	{Figure: "outbox: transaction commit -> event on the bus", Pkg: "db/outbox", Bench: "BenchmarkCommitToBus",
		Unit: "tx-to-bus-ms", Show: "ms", Short: 200, Full: 2000},
}

// Row is one line of the result table.
type Row struct {
	Figure string
	Value  float64
	Unit   string
	Goal   float64
	Dir    Direction
	Note   string // why there is no value, or a remark
	Has    bool   // Value was measured
}

// Status is "met", "NOT met", "info" or "not measured".
func (r Row) Status() string {
	switch {
	case !r.Has:
		return "not measured"
	case r.Dir == AtLeast && r.Value >= r.Goal, r.Dir == AtMost && r.Value <= r.Goal:
		return "met"
	case r.Dir == Info:
		return "info"
	default:
		return "NOT met"
	}
}

// GoalText renders the goal: "≥ 20000 records/s".
func (r Row) GoalText() string {
	switch r.Dir {
	case AtLeast:
		return "≥ " + Format(r.Goal) + " " + r.Unit
	case AtMost:
		return "≤ " + Format(r.Goal) + " " + r.Unit
	}
	return "—"
}

// ValueText renders the value with its unit.
func (r Row) ValueText() string {
	if !r.Has {
		return "—"
	}
	return Format(r.Value) + " " + r.Unit
}

// Format prints a number with about three significant digits.
func Format(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
