// Package schema generates JSON Schema files from the event types, for publishers and
// subscribers written in other languages. `make schemas` writes them to events/schema/json.
package schema

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/patchfleet/patchfleet/events"
)

// Files returns the schema files by name: one per event (the payload under the envelope's
// "data") and one for the envelope.
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	// Additional properties are allowed: within a version, changes are additive.
	r := &jsonschema.Reflector{DoNotReference: true, ExpandedStruct: true, AllowAdditionalProperties: true}
	add := func(name, title, desc string, v any) error {
		s := r.Reflect(v)
		s.ID = jsonschema.ID("https://patchfleet.dev/schemas/" + name)
		s.Title = title
		s.Description = desc
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return fmt.Errorf("schema %s: %w", name, err)
		}
		out[name] = append(b, '\n')
		return nil
	}
	if err := add("envelope.schema.json", "Envelope",
		"Every Patchfleet event is this envelope; id is also the JetStream Nats-Msg-Id header. data holds the payload described by <type>.v<schema_version>.schema.json.",
		&events.Envelope{}); err != nil {
		return nil, err
	}
	for _, spec := range events.Catalog() {
		name := fmt.Sprintf("%s.v%d.schema.json", spec.Type, spec.Version)
		desc := fmt.Sprintf("Payload of %s version %d, published on subject %s (stream %s).", spec.Type, spec.Version, spec.Subject, spec.Stream)
		if err := add(name, spec.Type, desc, spec.New()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Index lists the catalog as a Markdown table: type, version, subject, stream.
func Index() []byte {
	var b strings.Builder
	b.WriteString("| event | version | subject | stream |\n|---|---|---|---|\n")
	for _, s := range events.Catalog() {
		fmt.Fprintf(&b, "| %s | %d | `%s` | %s |\n", s.Type, s.Version, s.Subject, s.Stream)
	}
	return []byte(b.String())
}
