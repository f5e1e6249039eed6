package source

import (
	"archive/zip"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

//go:embed synthdata/*.json
var synthData embed.FS

// WriteSyntheticDump writes an OSV zip dump of n distinct, valid records for
// benchmarks and scale tests: real records (Ubuntu, Debian, RubyGems) with
// a new id, modified time and fixed versions per copy.
func WriteSyntheticDump(w io.Writer, n int) error {
	entries, err := synthData.ReadDir("synthdata")
	if err != nil {
		return err
	}
	var templates [][]byte
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := synthData.ReadFile(path.Join("synthdata", e.Name()))
		if err != nil {
			return err
		}
		templates = append(templates, b)
	}
	zw := zip.NewWriter(w)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		var rec map[string]any
		if err := json.Unmarshal(templates[i%len(templates)], &rec); err != nil {
			return fmt.Errorf("synthetic record %d: %w", i, err)
		}
		id := fmt.Sprintf("%s-SYN%d", rec["id"], i)
		rec["id"] = id
		rec["modified"] = base.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		vary(rec, i)
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("synthetic record %d: %w", i, err)
		}
		f, err := zw.Create(id + ".json")
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			return err
		}
	}
	return zw.Close()
}

// vary bumps every fixed version so each copy is a different advisory
// content, staying valid: "+syn<i>" is a Debian version suffix, ".<i>" a gem
// version segment.
func vary(rec map[string]any, i int) {
	affected, _ := rec["affected"].([]any)
	for _, a := range affected {
		am, _ := a.(map[string]any)
		pkg, _ := am["package"].(map[string]any)
		gem := pkg["ecosystem"] == "RubyGems"
		ranges, _ := am["ranges"].([]any)
		for _, r := range ranges {
			rm, _ := r.(map[string]any)
			evs, _ := rm["events"].([]any)
			for _, e := range evs {
				em, _ := e.(map[string]any)
				if v, ok := em["fixed"].(string); ok {
					if gem {
						em["fixed"] = fmt.Sprintf("%s.%d", v, i)
					} else {
						em["fixed"] = fmt.Sprintf("%s+syn%d", v, i)
					}
				}
			}
		}
	}
}
