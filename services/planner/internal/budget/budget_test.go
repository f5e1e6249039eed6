package budget

import (
	"testing"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/planner/internal/quantity"
)

func TestFailuresAndHalt(t *testing.T) {
	tests := []struct {
		name                  string
		q                     quantity.Q
		total, failed, canary int
		halt                  bool
	}{
		{"zero budget, no failure", quantity.Q{}, 10, 0, 0, false},
		{"zero budget, one failure", quantity.Q{}, 10, 1, 0, true},
		{"count tolerated", quantity.Q{N: 1}, 10, 1, 0, false},
		{"count exceeded", quantity.Q{N: 1}, 10, 2, 0, true},
		{"percent rounds down", quantity.Q{N: 10, Percent: true}, 5, 1, 0, true},
		{"percent tolerated", quantity.Q{N: 10, Percent: true}, 50, 5, 0, false},
		{"percent exceeded", quantity.Q{N: 10, Percent: true}, 50, 6, 0, true},
		{"canary failure halts within budget", quantity.Q{N: 5}, 50, 1, 1, true},
	}
	for _, tt := range tests {
		halt, reason := Halt(tt.failed, Failures(tt.q, tt.total), tt.canary)
		if halt != tt.halt || halt == (reason == "") {
			t.Errorf("%s: halt = %v (%q), want %v", tt.name, halt, reason, tt.halt)
		}
	}
}

func TestSlots(t *testing.T) {
	tests := []struct{ max, inFlight, want int }{
		{2, 0, 2}, {2, 1, 1}, {2, 2, 0}, {2, 5, 0}, {0, 0, 1}, {1, 0, 1},
	}
	for _, tt := range tests {
		if got := Slots(tt.max, tt.inFlight); got != tt.want {
			t.Errorf("Slots(%d, %d) = %d, want %d", tt.max, tt.inFlight, got, tt.want)
		}
	}
}

func TestReboot(t *testing.T) {
	if Reboot(events.RebootIfRequired, "") != events.RebootIfRequired || Reboot(events.RebootNever, events.RebootAlways) != events.RebootAlways || Reboot("", "") != events.RebootNever {
		t.Error("reboot override misapplied")
	}
}
