package plannerdb

import (
	"hash/fnv"
	"strconv"
	"testing"
)

// ExposureBucket is FNV-1a, and spreads a fleet's host ids over every bucket.
func TestExposureBucket(t *testing.T) {
	seen := make([]int, ExposureBuckets)
	for i := range 100_000 {
		id := "web-" + strconv.Itoa(i)
		h := fnv.New32a()
		h.Write([]byte(id))
		if got, want := ExposureBucket(id), int32(h.Sum32()%ExposureBuckets); got != want {
			t.Fatalf("bucket of %q: %d, want %d", id, got, want)
		}
		seen[ExposureBucket(id)]++
	}
	for b, n := range seen {
		if n < 5 || n > 60 { // 24.4 on average
			t.Errorf("bucket %d holds %d of 100,000 hosts", b, n)
		}
	}
}
