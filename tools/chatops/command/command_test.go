package command

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		text string
		want Command
		err  bool
	}{
		{"", Command{Verb: Help}, false},
		{"help", Command{Verb: Help}, false},
		{"approve r-1", Command{Verb: Approve, Rollout: "r-1"}, false},
		{"  APPROVE   r-1   abc123 ", Command{Verb: Approve, Rollout: "r-1", PlanHash: "abc123"}, false},
		{"approve", Command{Verb: Approve}, true},
		{"approve r-1 h extra", Command{Verb: Approve}, true},
		{"reject r-1 not in the freeze", Command{Verb: Reject, Rollout: "r-1", Reason: "not in the freeze"}, false},
		{"pause r-1", Command{Verb: Pause, Rollout: "r-1"}, false},
		{"cancel", Command{Verb: Cancel}, true},
		{"resume r-1", Command{Verb: Resume, Rollout: "r-1"}, false},
		{"resume r-1 now", Command{Verb: Resume}, true},
		{"status", Command{Verb: Status}, false},
		{"status r-1", Command{Verb: Status, Rollout: "r-1"}, false},
		{"status a b", Command{Verb: Status}, true},
		{"exposed CVE-2024-6387", Command{Verb: Exposed, Arg: "CVE-2024-6387"}, false},
		{"exposed", Command{Verb: Exposed}, true},
		{"host web-1", Command{Verb: Host, Arg: "web-1"}, false},
		{"reboot everything", Command{Verb: "reboot"}, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.text)
		if (err != nil) != tt.err {
			t.Errorf("Parse(%q) error = %v, want error %v", tt.text, err, tt.err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Errorf("Parse(%q) error %v is not ErrUsage", tt.text, err)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.text, got, tt.want)
		}
	}
}

func TestActionValue(t *testing.T) {
	v := ActionValue{Rollout: "r-1", PlanHash: "sha256:abc"}
	got, err := DecodeAction(v.Encode())
	if err != nil || got != v {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "r-1", `{"rollout":"r-1"}`, `{"plan_hash":"h"}`} {
		if _, err := DecodeAction(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("DecodeAction(%q) = %v, want ErrUsage", bad, err)
		}
	}
}
