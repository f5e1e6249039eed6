package osv

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkParse parses the real records the synthetic dumps are made of, in turn.
func BenchmarkParse(b *testing.B) {
	paths, err := filepath.Glob("../source/synthdata/*.json")
	if err != nil || len(paths) == 0 {
		b.Fatalf("templates: %v %v", paths, err)
	}
	var recs [][]byte
	size := 0
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, data)
		size += len(data)
	}
	b.SetBytes(int64(size / len(recs)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := Parse(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
