// Package budget holds the rollout's two budgets: the failure budget (how many failed hosts
// a rollout tolerates before it halts) and the unavailability budget (how many hosts of a
// fleet may be upgraded or rebooting at once), and the reboot policy a job runs under.
package budget

import (
	"fmt"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/planner/internal/quantity"
)

// Failures resolves a fleet's max_failures against a rollout of total hosts. Percentages
// round down: a 10% budget on 5 hosts tolerates no failure.
func Failures(q quantity.Q, total int) int { return q.Floor(total) }

// Halt decides whether a rollout must stop: any failure in the canary wave halts (the canary
// exists to catch a bad update before it spreads), otherwise more failures than the budget
// tolerates. It returns the reason for RolloutHalted.
func Halt(failed, allowed, canaryFailed int) (bool, string) {
	switch {
	case canaryFailed > 0:
		return true, fmt.Sprintf("canary failed on %d host(s)", canaryFailed)
	case failed > allowed:
		return true, fmt.Sprintf("failure budget spent: %d failed, %d tolerated", failed, allowed)
	}
	return false, ""
}

// Slots returns how many new jobs a fleet may start: hosts being upgraded or rebooted count
// against max_unavailable fleet-wide, across every rollout of the fleet. The executor reboots
// a host inside its job, so bounding jobs in flight bounds reboots too.
func Slots(maxUnavailable, inFlight int) int {
	return max(0, max(1, maxUnavailable)-inFlight)
}

// Reboot returns the reboot policy a job runs under: the request's override when given, else
// the fleet's. Under if-required the executor reboots only a host that reports
// /var/run/reboot-required; under never it records the reboot as pending.
func Reboot(fleet, override string) string {
	if override != "" {
		return override
	}
	if fleet == "" {
		return events.RebootNever
	}
	return fleet
}
