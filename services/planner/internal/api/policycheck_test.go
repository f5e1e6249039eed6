package api

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events/query"
)

func TestPolicyCheck(t *testing.T) {
	a := &API{}
	good, err := os.ReadFile("../policy/testdata/product-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := a.PolicyCheck(context.Background(), query.PolicyCheckRequest{Name: "product-example.yaml", Content: string(good)})
	if err != nil || !out.Valid || len(out.Fleets) != 1 || out.Fleets[0].Name != "prod-web" {
		t.Fatalf("valid policy: %+v, %v", out, err)
	}
	bad := "fleets:\n  - name: web\n    reboot: sometimes\n    canary: -1\n"
	out, err = a.PolicyCheck(context.Background(), query.PolicyCheckRequest{Content: bad})
	if err != nil || out.Valid || len(out.Problems) < 2 {
		t.Fatalf("invalid policy: %+v, %v", out, err)
	}
	for _, p := range out.Problems {
		if !strings.Contains(p, `fleet "web"`) || !strings.Contains(p, "line") {
			t.Errorf("problem %q does not name the fleet and line", p)
		}
	}
}
