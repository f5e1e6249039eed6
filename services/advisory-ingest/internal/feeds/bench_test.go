package feeds_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/feeds"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/pipeline"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/source"
)

// dumpRecords is the size of the benchmarks' dump (named for the default); smaller for a
// quick profile.
var dumpRecords = flag.Int("dump-records", 50_000, "records in the synthetic dump of the ingest benchmarks")

func syntheticDump(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "all.zip")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := source.WriteSyntheticDump(f, *dumpRecords); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// peakHeap samples the heap in use until stop is called, and returns the peak in MiB.
func peakHeap() (stop func() float64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(done)
		<-finished
		return float64(peak.Load()) / (1 << 20)
	}
}

// cpuTime is the CPU time this process has used (user and system), PostgreSQL's excluded:
// on a shared machine it says what a record costs here whatever the wall clock says.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func streamCount(b *testing.B, e *env) uint64 {
	b.Helper()
	s, err := e.bus.JS.Stream(e.ctx, events.StreamAdvisories)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(e.ctx)
	if err != nil {
		b.Fatal(err)
	}
	return info.State.Msgs
}

// machineCPU is the CPU time every core of the machine has spent busy since boot
// (/proc/stat: user, nice, system, irq, softirq, steal; USER_HZ ticks of 10 ms): this
// process, PostgreSQL and everything else. What a record costs the machine is what the
// goal's budget is about: 20,000 records/s on 2 cores is 100 µs of CPU a record.
func machineCPU(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %v", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// runRelay publishes the outbox as the service does, until the benchmark ends.
func runRelay(b *testing.B, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.relay.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
}

// BenchmarkIngestDump50k ingests a fresh 50,000-record OSV zip dump: read, parse,
// normalise, store and publish, until the last event is on the ADVISORIES stream.
func BenchmarkIngestDump50k(b *testing.B) { benchmarkIngest(b, pipeline.Config{}) }

// BenchmarkIngestDump50kBulkOutbox is BenchmarkIngestDump50k with the outbox rows of a batch
// inserted by one statement instead of one each (what outbox.Add does): the outbox's share
// of a write.
func BenchmarkIngestDump50kBulkOutbox(b *testing.B) {
	benchmarkIngest(b, pipeline.Config{AddOutbox: bulkAddOutbox})
}

// bulkAddOutbox is outbox.Add as a single insert.
func bulkAddOutbox(ctx context.Context, tx pgx.Tx, msgs ...events.Message) error {
	ids := make([]string, len(msgs))
	subjects := make([]string, len(msgs))
	data := make([][]byte, len(msgs))
	for i, m := range msgs {
		ids[i], subjects[i], data[i] = m.ID, m.Subject, m.Data
	}
	if _, err := tx.Exec(ctx, `insert into outbox (event_id, subject, data)
		select * from unnest($1::text[], $2::text[], $3::bytea[]) on conflict (event_id) do nothing`, ids, subjects, data); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "select pg_notify('patchfleet_outbox.' || current_schema(), '')")
	return err
}

func benchmarkIngest(b *testing.B, cfg pipeline.Config) {
	path := syntheticDump(b)
	var total int
	var elapsed, stored, cpu, machine time.Duration
	var peak float64
	for range b.N {
		b.StopTimer()
		e := setupWith(b, cfg)
		runRelay(b, e)
		runtime.GC()
		b.StartTimer()
		start, cpu0, machine0 := time.Now(), cpuTime(b), machineCPU(b)
		stop := peakHeap()
		st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path})
		if err != nil {
			b.Fatal(err)
		}
		if st.Published != *dumpRecords {
			b.Fatalf("published %d, want %d (%+v)", st.Published, *dumpRecords, st)
		}
		stored += time.Since(start)
		for streamCount(b, e) < uint64(*dumpRecords) {
			time.Sleep(5 * time.Millisecond)
		}
		elapsed += time.Since(start)
		cpu += cpuTime(b) - cpu0
		machine += machineCPU(b) - machine0
		peak = max(peak, stop())
		total += st.Read
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
	// Stored: read, parsed and committed (with the outbox rows); the rest of the time is
	// the relay catching up.
	b.ReportMetric(float64(total)/stored.Seconds(), "stored-records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/record")
	b.ReportMetric(float64(machine.Microseconds())/float64(total), "machine-cpu-µs/record")
	b.ReportMetric(peak, "peak-heap-MiB")
}

// BenchmarkReingestUnchangedDump50k reads the same dump again: nothing is parsed, written
// or published.
func BenchmarkReingestUnchangedDump50k(b *testing.B) {
	path := syntheticDump(b)
	e := setup(b)
	if st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path}); err != nil || st.Published != *dumpRecords {
		b.Fatalf("first ingest: %+v, %v", st, err)
	}
	if err := e.relay.Flush(e.ctx); err != nil {
		b.Fatal(err)
	}
	before := streamCount(b, e)
	runtime.GC()
	stop := peakHeap()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	for range b.N {
		st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path})
		if err != nil {
			b.Fatal(err)
		}
		if st.Published != 0 || st.Withdrawn != 0 {
			b.Fatalf("re-ingest published: %+v", st)
		}
	}
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
	b.StopTimer()
	if err := e.relay.Flush(e.ctx); err != nil {
		b.Fatal(err)
	}
	if after := streamCount(b, e); after != before {
		b.Fatalf("%d events after re-ingest, want %d", after, before)
	}
	b.ReportMetric(float64(*dumpRecords*b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(*dumpRecords*b.N), "cpu-µs/record")
	b.ReportMetric(stop(), "peak-heap-MiB")
}

// BenchmarkOutboxDrain50k measures the outbox relay alone: the 50,000 events of a dump's
// first ingest, committed with no relay running, then published by one Flush.
func BenchmarkOutboxDrain50k(b *testing.B) {
	path := syntheticDump(b)
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		e := setup(b)
		if st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path}); err != nil || st.Published != *dumpRecords {
			b.Fatalf("ingest: %+v, %v", st, err)
		}
		b.StartTimer()
		start := time.Now()
		if err := e.relay.Flush(e.ctx); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		if n := streamCount(b, e); n != uint64(*dumpRecords) {
			b.Fatalf("%d events on the stream, want %d", n, *dumpRecords)
		}
	}
	b.ReportMetric(float64(*dumpRecords*b.N)/elapsed.Seconds(), "events/s")
}
