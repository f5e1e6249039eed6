package source

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkReadDump50k reads, parses, normalises and validates a 50,000
// record OSV zip dump. It reports records/s, the CPU a record costs (on
// every core: the entries are read in parallel), and the peak live heap seen
// while reading, which stays flat whatever the dump's size.
func BenchmarkReadDump50k(b *testing.B) {
	const n = 50_000
	path := filepath.Join(b.TempDir(), "all.zip")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteSyntheticDump(f, n); err != nil {
		b.Fatal(err)
	}
	f.Close()
	runtime.GC()

	var peak uint64
	var ms runtime.MemStats
	total := 0
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	for b.Loop() {
		count := 0
		err := ReadPath(context.Background(), path, Options{}, func(r Record) error {
			if count++; count%5000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			return nil
		}, func(br BadRecord) { b.Fatalf("bad record: %v", br) })
		if err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("%d records, want %d", count, n)
		}
		total += count
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(total), "cpu-µs/record")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
