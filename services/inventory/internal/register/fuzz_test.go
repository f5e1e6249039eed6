package register

import (
	"strings"
	"testing"
)

func FuzzParseFile(f *testing.F) {
	f.Add("hosts:\n  - id: a\n    fleet: f\n    ssh: {address: h, tofu: true}\n")
	f.Add("hosts:\n  - {id: a, fleet: f, ssh: {address: h, host_key: \"" + key + "\"}}\n")
	f.Add("hosts: [")
	f.Fuzz(func(t *testing.T, in string) {
		hosts, err := ParseFile(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, h := range hosts {
			// Everything returned passed the same check every registration path applies.
			if err := Check(h); err != nil {
				t.Fatalf("ParseFile returned an invalid host %+v: %v", h, err)
			}
		}
	})
}
