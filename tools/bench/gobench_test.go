package bench

import (
	"testing"
)

func TestParseOutput(t *testing.T) {
	out := []byte(`goos: linux
goarch: amd64
pkg: github.com/patchfleet/patchfleet/services/inventory
cpu: AMD EPYC 7B13
BenchmarkExposure100k/http/advisory-2         	      20	   3100000 ns/op	       112.5 MB-stored	         2.950 ms-median
BenchmarkPlanAdvisory100k-2   	       1	181234567 ns/op
BenchmarkBroken-2 	 FAIL
--- FAIL: BenchmarkOther
    bench_test.go:10: boom
BenchmarkIngestDump50k-16     	       1	2000000000 ns/op	     25000 records/s	        88.00 peak-heap-MiB
PASS
`)
	rs := ParseOutput(out)
	if len(rs) != 3 {
		t.Fatalf("%d results, want 3: %+v", len(rs), rs)
	}
	if rs[0].Name != "BenchmarkExposure100k/http/advisory" || rs[0].N != 20 || rs[0].Metrics["ms-median"] != 2.95 || rs[0].Metrics["MB-stored"] != 112.5 {
		t.Errorf("exposure: %+v", rs[0])
	}
	if rs[1].Name != "BenchmarkPlanAdvisory100k" || rs[1].Metrics["ns/op"] != 181234567 {
		t.Errorf("plan: %+v", rs[1])
	}
	if rs[2].Name != "BenchmarkIngestDump50k" || rs[2].Metrics["records/s"] != 25000 {
		t.Errorf("ingest: %+v", rs[2])
	}
}

func TestRowStatus(t *testing.T) {
	for _, c := range []struct {
		row  Row
		want string
	}{
		{Row{Value: 25000, Goal: 20000, Dir: AtLeast, Has: true}, "met"},
		{Row{Value: 15000, Goal: 20000, Dir: AtLeast, Has: true}, "NOT met"},
		{Row{Value: 21, Goal: 20, Dir: AtMost, Has: true}, "NOT met"},
		{Row{Value: 20, Goal: 20, Dir: AtMost, Has: true}, "met"},
		{Row{Value: 3, Dir: Info, Has: true}, "info"},
		{Row{Goal: 20, Dir: AtMost}, "not measured"},
	} {
		if got := c.row.Status(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.row, got, c.want)
		}
	}
}

func TestPeerRowsRatios(t *testing.T) {
	ms := []Measurement{
		{Tool: ToolPatchfleet, Op: OpScan, Hosts: 20, Wall: 500e6, CPU: 100e6},
		{Tool: ToolAnsible, Op: OpScan, Hosts: 20, Wall: 10e9, CPU: 5e9},
		{Tool: ToolPatchfleet, Op: OpUpgrade, Hosts: 20, Wall: 10e9, CPU: 200e6},
		{Tool: ToolPSSH, Op: OpUpgrade, Hosts: 20, Wall: 9e9, CPU: 2e9},
		{Tool: ToolPSSHCurve, Op: OpUpgrade, Hosts: 20, Wall: 8e9, CPU: 1e9},
	}
	rows := map[string]Row{}
	for _, r := range PeerRows(ms, []int{20}) {
		rows[r.Figure] = r
	}
	for fig, want := range map[string]struct {
		value  float64
		status string
	}{
		"scan, 20 hosts: Ansible playbook (stock) / Patchfleet (faster)": {20, "met"},
		"upgrade, 20 hosts: parallel-ssh / Patchfleet (faster)":          {0.9, "NOT met"},
		// Reported beside the goals, not one of them.
		"upgrade, 20 hosts: parallel-ssh (curve25519) / Patchfleet (faster)": {0.8, "info"},
	} {
		r := rows[fig]
		if !r.Has || r.Value != want.value || r.Status() != want.status {
			t.Errorf("%s: %+v (%s), want %v %s", fig, r, r.Status(), want.value, want.status)
		}
	}
}

// In short mode a benchmark whose sub-benchmarks are partly full-mode only runs just the
// others; one measured whole, or with every sub-benchmark in short mode, runs whole.
func TestShortPattern(t *testing.T) {
	for _, c := range []struct{ pkg, top, want string }{
		{"tools/bench", "BenchmarkRollout", "^BenchmarkRollout$/^(hosts-1000)$"},
		{"services/inventory", "BenchmarkExposure100k", "^BenchmarkExposure100k$"},
		{"services/advisory-ingest/internal/feeds", "BenchmarkIngestDump50k", "^BenchmarkIngestDump50k$"},
	} {
		if got := shortPattern(c.pkg, c.top); got != c.want {
			t.Errorf("shortPattern(%s, %s) = %q, want %q", c.pkg, c.top, got, c.want)
		}
	}
}

// Each figure's median is its own: the run with the median wall time need not be the one
// with the median CPU.
func TestMedianTakesEachFigureSeparately(t *testing.T) {
	got := median([]sample{{wall: 3, cpu: 10, machine: 200}, {wall: 1, cpu: 30, machine: 100}, {wall: 2, cpu: 20, machine: 300}})
	if want := (sample{wall: 2, cpu: 20, machine: 200}); got != want {
		t.Errorf("median = %+v, want %+v", got, want)
	}
}
