// Package natsauth derives the NATS permissions of every Patchfleet user from the event
// catalog and a small table of roles, and renders the NATS server configuration of
// deployments/nats: the accounts and users (auth.conf) and the cluster nodes.
//
// A role says what a user publishes, which durable consumers it runs, which streams it browses,
// which request/reply subjects it serves or asks, and which core NATS subjects it uses; the
// JetStream API subjects each of those needs follow from the catalog (see Permissions).
package natsauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// Account is the NATS account every Patchfleet user belongs to; SystemAccount holds the
// server-monitoring user.
const (
	Account       = "PATCHFLEET"
	SystemAccount = "SYS"
	SystemUser    = "sys"
)

// Consumer is a durable JetStream consumer a role runs.
type Consumer struct {
	Name string
	// Events are the event types it handles (every version in the catalog); its streams
	// follow from them. The consumer uses the events runner (FilterSubjects, no filter in
	// the create subject) and dead-letters to pf.dlq.<Name>.
	Events []string
	// Streams it reads whole, in addition to those of Events.
	Streams []string
	// Stream and Filter describe a consumer with a single filter subject (created through
	// $JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>) that does not use the runner.
	Stream, Filter string
}

// Role is one NATS user.
type Role struct {
	User        string
	Description string
	Publishes   []string   // event types published through JetStream (every version)
	Consumers   []Consumer // durable consumers
	// Browses are streams read with ephemeral or ordered consumers of any name (but never
	// another role's durable consumer), message gets and consumer info: operators' tools.
	Browses []string
	Serves  map[string][]string // micro service name -> request subjects it answers
	// Requests are request/reply subjects it asks (a trailing ".>" or ".*" allowed).
	Requests []string
	// Discovers lets it send micro discovery requests ($SRV.PING/INFO/STATS).
	Discovers bool
	// PublishCore and SubscribeCore are core NATS subjects (not on a stream).
	PublishCore, SubscribeCore []string
	// ManageStreams lets it create and update the contract's streams (events.EnsureStreams).
	ManageStreams bool
	// Admin may do anything in the account: create and delete streams, fix consumers.
	Admin bool
}

var (
	decisions  = []string{"RolloutApproved", "RolloutRejected", "RolloutPaused", "RolloutResumed", "RolloutCancelled", "RolloutRequested"}
	eventLogs  = []string{events.StreamAdvisories, events.StreamHosts, events.StreamRollouts, events.StreamUpgrades}
	allQueries = []string{"pf.query.>"}
)

// Roles is the table of Patchfleet's NATS users. Services manage the streams because every
// service runs events.EnsureStreams when it starts; see deployments/README.md for the stricter
// set-up in which only the admin user does.
func Roles() []Role {
	return []Role{
		{
			User: "advisory-ingest", Description: "normalises submitted advisories and publishes them; serves pf.query.advisories.*",
			Publishes:     []string{"SecurityAdvisoryPublished", "AdvisoryWithdrawn"},
			Consumers:     []Consumer{{Name: "advisory-ingest-feeds", Events: []string{"AdvisorySubmitted"}}},
			Serves:        map[string][]string{query.ServiceAdvisories: {"pf.query.advisories.>"}},
			ManageStreams: true,
		},
		{
			User: "inventory", Description: "host register and scans; serves pf.query.inventory.*",
			Publishes: []string{"HostInventoryReported", "HostDriftDetected", "RebootRequired", "HostKeyMismatch"},
			Consumers: []Consumer{
				{Name: "inventory", Events: []string{"HostRegistered", "HostDecommissioned", "UpgradeCompleted"}},
				{Name: "inventory-advisories", Events: []string{"SecurityAdvisoryPublished", "AdvisoryWithdrawn"}},
			},
			Serves:        map[string][]string{query.ServiceInventory: {"pf.query.inventory.>"}},
			ManageStreams: true,
		},
		{
			User: "planner", Description: "plans and drives rollouts; serves pf.query.planner.*",
			Publishes: []string{"RolloutPlanned", "RolloutApprovalRequested", "WaveStarted", "WaveCompleted",
				"RolloutHalted", "RolloutCompleted", "UpgradeRequested"},
			Consumers: []Consumer{{Name: "planner", Events: append([]string{
				"SecurityAdvisoryPublished", "AdvisoryWithdrawn",
				"HostRegistered", "HostDecommissioned", "HostInventoryReported", "HostDriftDetected", "HostRebooted",
				"UpgradeStarted", "UpgradeCompleted", "UpgradeFailed",
			}, decisions...)}},
			Serves:        map[string][]string{query.ServicePlanner: {"pf.query.planner.>"}},
			Requests:      []string{"pf.query.inventory.*"},
			ManageStreams: true,
		},
		{
			User: "executor", Description: "runs upgrade jobs from the JOBS work queue; live logs on pf.logs.<host>",
			Publishes: []string{"UpgradeStarted", "UpgradeCompleted", "UpgradeFailed", "HostRebooted",
				"RebootRequired", "HostKeyMismatch", "HostRegistered", "HostDecommissioned"},
			Consumers: []Consumer{
				{Name: "executor", Events: []string{"UpgradeRequested"}},
				{Name: "executor-dead-letters", Stream: events.StreamDLQ, Filter: events.SubjectDLQ + ".executor"},
			},
			Requests:      []string{query.SubjectHost},
			PublishCore:   []string{"pf.logs.>"},
			ManageStreams: true,
		},
		{
			User: "chatops", Description: "ChatOps bot: follows the event logs, takes decisions from people",
			Publishes: decisions,
			Consumers: []Consumer{{Name: "chatops", Streams: eventLogs}},
			Requests:  allQueries, Discovers: true,
		},
		{
			User: "feedpub", Description: "external feed publisher",
			Publishes: []string{"AdvisorySubmitted"},
		},
		{
			User: "cli", Description: "operator CLI: browses the event logs and dead letters, takes decisions",
			Publishes: decisions,
			Browses:   append(slices.Clone(eventLogs), events.StreamDLQ),
			Requests:  allQueries, Discovers: true,
		},
		{
			User: "console", Description: "web console: like the CLI, plus live job logs",
			Publishes:     decisions,
			Browses:       append(slices.Clone(eventLogs), events.StreamDLQ),
			Requests:      allQueries,
			Discovers:     true,
			SubscribeCore: []string{"pf.logs.>"},
		},
		{
			User: "admin", Description: "operations: creates the streams (natsauth streams), repairs consumers",
			Admin: true,
		},
	}
}

// RoleOf returns the role of a user.
func RoleOf(user string) (Role, bool) {
	for _, r := range Roles() {
		if r.User == user {
			return r, true
		}
	}
	return Role{}, false
}

// NKeyVar is the configuration variable holding a user's public NKEY (defined in nkeys.conf).
func NKeyVar(user string) string {
	return "PF_NKEY_" + strings.ToUpper(strings.NewReplacer("-", "_").Replace(user))
}

// specsOf returns the catalog entries (every version) of an event type.
func specsOf(typ string) ([]events.Spec, error) {
	var out []events.Spec
	for _, s := range events.Catalog() {
		if s.Type == typ {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("event type %s is not in the catalog", typ)
	}
	return out, nil
}
