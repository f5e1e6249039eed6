package schema_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/patchfleet/patchfleet/events/schema"
)

func TestCommittedSchemasAreCurrent(t *testing.T) {
	files, err := schema.Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("json", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("json/%s is stale or missing: run make schemas", name)
		}
	}
	entries, _ := os.ReadDir("json")
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && e.Name() != "README.md" {
			t.Errorf("json/%s belongs to no event: run make schemas", e.Name())
		}
	}
}
