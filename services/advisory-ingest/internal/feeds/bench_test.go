package feeds_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/feeds"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/source"
)

const dumpRecords = 50_000

func syntheticDump(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "all.zip")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := source.WriteSyntheticDump(f, dumpRecords); err != nil {
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

// runRelay publishes the outbox as the service does, until the benchmark ends.
func runRelay(b *testing.B, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.relay.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
}

// BenchmarkIngestDump50k ingests a fresh 50,000-record OSV zip dump: read, parse,
// normalise, store and publish, until the last event is on the ADVISORIES stream.
func BenchmarkIngestDump50k(b *testing.B) {
	path := syntheticDump(b)
	var total int
	var elapsed, stored time.Duration
	var peak float64
	for range b.N {
		b.StopTimer()
		e := setup(b)
		runRelay(b, e)
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		stop := peakHeap()
		st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path})
		if err != nil {
			b.Fatal(err)
		}
		if st.Published != dumpRecords {
			b.Fatalf("published %d, want %d (%+v)", st.Published, dumpRecords, st)
		}
		stored += time.Since(start)
		for streamCount(b, e) < dumpRecords {
			time.Sleep(5 * time.Millisecond)
		}
		elapsed += time.Since(start)
		peak = max(peak, stop())
		total += st.Read
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
	// Stored: read, parsed and committed (with the outbox rows); the rest of the time is
	// the relay catching up.
	b.ReportMetric(float64(total)/stored.Seconds(), "stored-records/s")
	b.ReportMetric(peak, "peak-heap-MiB")
}

// BenchmarkReingestUnchangedDump50k reads the same dump again: nothing is parsed, written
// or published.
func BenchmarkReingestUnchangedDump50k(b *testing.B) {
	path := syntheticDump(b)
	e := setup(b)
	if st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path}); err != nil || st.Published != dumpRecords {
		b.Fatalf("first ingest: %+v, %v", st, err)
	}
	if err := e.relay.Flush(e.ctx); err != nil {
		b.Fatal(err)
	}
	before := streamCount(b, e)
	runtime.GC()
	stop := peakHeap()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		st, err := e.reader.ReadPath(e.ctx, feeds.Feed{Location: path})
		if err != nil {
			b.Fatal(err)
		}
		if st.Published != 0 || st.Withdrawn != 0 {
			b.Fatalf("re-ingest published: %+v", st)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := e.relay.Flush(e.ctx); err != nil {
		b.Fatal(err)
	}
	if after := streamCount(b, e); after != before {
		b.Fatalf("%d events after re-ingest, want %d", after, before)
	}
	b.ReportMetric(float64(dumpRecords*b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(stop(), "peak-heap-MiB")
}
