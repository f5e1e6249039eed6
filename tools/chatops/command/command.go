// Package command parses what people type to the bot ("/patchfleet approve r-1") and the
// values its buttons carry.
package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Verbs.
const (
	Approve = "approve"
	Reject  = "reject"
	Pause   = "pause"
	Resume  = "resume"
	Cancel  = "cancel"
	Status  = "status"
	Exposed = "exposed"
	Host    = "host"
	Help    = "help"
)

// Command is one parsed request.
type Command struct {
	Verb     string
	Rollout  string // approve, reject, pause, resume, cancel, status
	PlanHash string // approve: the plan approved; empty means the current plan
	Arg      string // exposed: a CVE or advisory id; host: a host name or id
	Reason   string // reject, pause, cancel: free text after the rollout id
}

// Usage is the help text.
const Usage = "*Patchfleet commands*\n" +
	"`approve <rollout> [plan-hash]` approve a plan (the current one unless a hash is given)\n" +
	"`reject <rollout> [reason]` decline a plan\n" +
	"`pause <rollout> [reason]` · `resume <rollout>` · `cancel <rollout> [reason]`\n" +
	"`status [rollout]` open rollouts, or one rollout's progress\n" +
	"`exposed <CVE|advisory>` hosts exposed, per fleet\n" +
	"`host <name>` one host's state"

// ErrUsage marks a request that is not a command.
var ErrUsage = errors.New("usage")

// Parse reads a slash command's text.
func Parse(text string) (Command, error) {
	f := strings.Fields(text)
	if len(f) == 0 {
		return Command{Verb: Help}, nil
	}
	c := Command{Verb: strings.ToLower(f[0])}
	args := f[1:]
	switch c.Verb {
	case Help:
		return c, nil
	case Approve:
		if len(args) < 1 || len(args) > 2 {
			return c, fmt.Errorf("%w: approve <rollout> [plan-hash]", ErrUsage)
		}
		c.Rollout = args[0]
		if len(args) == 2 {
			c.PlanHash = args[1]
		}
	case Reject, Pause, Cancel:
		if len(args) < 1 {
			return c, fmt.Errorf("%w: %s <rollout> [reason]", ErrUsage, c.Verb)
		}
		c.Rollout, c.Reason = args[0], strings.Join(args[1:], " ")
	case Resume:
		if len(args) != 1 {
			return c, fmt.Errorf("%w: resume <rollout>", ErrUsage)
		}
		c.Rollout = args[0]
	case Status:
		if len(args) > 1 {
			return c, fmt.Errorf("%w: status [rollout]", ErrUsage)
		}
		if len(args) == 1 {
			c.Rollout = args[0]
		}
	case Exposed, Host:
		if len(args) != 1 {
			return c, fmt.Errorf("%w: %s <%s>", ErrUsage, c.Verb, map[string]string{Exposed: "CVE|advisory", Host: "name"}[c.Verb])
		}
		c.Arg = args[0]
	default:
		return c, fmt.Errorf("%w: unknown command %q", ErrUsage, f[0])
	}
	return c, nil
}

// Button action ids.
const (
	ActionApprove = "patchfleet_approve"
	ActionReject  = "patchfleet_reject"
)

// ActionValue is what an approval button carries: the rollout and the exact plan shown.
type ActionValue struct {
	Rollout  string `json:"rollout"`
	PlanHash string `json:"plan_hash"`
}

// Encode returns the button value.
func (v ActionValue) Encode() string {
	b, _ := json.Marshal(v)
	return string(b)
}

// DecodeAction reads a button value.
func DecodeAction(s string) (ActionValue, error) {
	var v ActionValue
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return v, fmt.Errorf("%w: button value: %v", ErrUsage, err)
	}
	if v.Rollout == "" || v.PlanHash == "" {
		return v, fmt.Errorf("%w: button value names no rollout or plan", ErrUsage)
	}
	return v, nil
}
