package events_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/patchfleet/patchfleet/events"
)

// FuzzDecode feeds arbitrary bytes to the decoder every consumer runs: it never panics, and
// whatever it accepts validates and survives a second round trip.
func FuzzDecode(f *testing.F) {
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"x","type":"UpgradeRequested","schema_version":1,"time":"2026-01-01T00:00:00Z","producer":"p","data":{"packages":[{"name":"-oAPT::Update=x"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := events.DecodeEnvelope(data)
		if err != nil {
			return
		}
		spec, ok := events.Lookup(env.Type, env.SchemaVersion)
		if !ok {
			return
		}
		e := spec.New()
		if err := events.DecodeData(env, e); err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("decode error is not permanent: %v", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted event does not validate: %v", err)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		env.Data = again
		if err := events.DecodeData(env, spec.New()); err != nil {
			t.Fatalf("re-encoded event no longer decodes: %v", err)
		}
	})
}
