package natsauth

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/patchfleet/patchfleet/events"
)

// Permissions are one user's publish and subscribe rules, as nats-server applies them: a
// subject is allowed when it matches an allow rule and no deny rule.
type Permissions struct {
	PublishAllow, PublishDeny []string
	SubscribeAllow            []string
	// AllowResponses lets a responder publish one reply to the reply subject of each request
	// it received, without a publish rule for anyone's inbox.
	AllowResponses bool
}

// JetStream API subjects (the nats.go jetstream package and the server use these).
const (
	jsAPI = "$JS.API."
	jsAck = "$JS.ACK."
)

// Permissions derives a role's rules from the catalog. It fails on an event type the
// catalog does not know.
func (r Role) Permissions() (Permissions, error) {
	if r.Admin {
		return Permissions{PublishAllow: []string{">"}, SubscribeAllow: []string{">"}}, nil
	}
	pub, deny, sub := set{}, set{}, set{}
	var errs []error
	// Replies to our own requests, JetStream API answers, publish acks and pulled messages
	// all arrive on the connection's inbox: the user's own prefix (its clients set it), never
	// _INBOX.>, where it could read every other user's replies and pulled messages.
	sub.add(events.UserInbox(r.User) + ".>")

	streams := set{} // streams whose info it may read
	for _, typ := range r.Publishes {
		specs, err := specsOf(typ)
		errs = append(errs, err)
		for _, s := range specs {
			pub.add(s.Subject)
			streams.add(s.Stream)
		}
	}
	for _, c := range r.Consumers {
		cs := set{}
		for _, typ := range c.Events {
			specs, err := specsOf(typ)
			errs = append(errs, err)
			for _, s := range specs {
				cs.add(s.Stream)
			}
		}
		cs.add(c.Streams...)
		if c.Stream != "" {
			pub.add(fmt.Sprintf("%sCONSUMER.CREATE.%s.%s.%s", jsAPI, c.Stream, c.Name, c.Filter))
			cs.add(c.Stream)
		}
		for s := range cs {
			if c.Stream != s {
				pub.add(fmt.Sprintf("%sCONSUMER.CREATE.%s.%s", jsAPI, s, c.Name))
			}
			pub.add(fmt.Sprintf("%sCONSUMER.INFO.%s.%s", jsAPI, s, c.Name),
				fmt.Sprintf("%sCONSUMER.MSG.NEXT.%s.%s", jsAPI, s, c.Name),
				fmt.Sprintf("%s%s.%s.>", jsAck, s, c.Name))
			streams.add(s)
		}
		if c.Stream == "" {
			pub.add(events.SubjectDLQ + "." + c.Name) // the runner's dead letters
		}
	}
	durables := otherDurables(r.User)
	for _, s := range r.Browses {
		pub.add(jsAPI+"CONSUMER.CREATE."+s, // ephemeral, named by the server
			jsAPI+"CONSUMER.CREATE."+s+".>", // named ephemeral or ordered consumers
			jsAPI+"CONSUMER.INFO."+s+".*",
			jsAPI+"CONSUMER.DELETE."+s+".*",
			jsAPI+"CONSUMER.MSG.NEXT."+s+".*",
			jsAPI+"CONSUMER.NAMES."+s, jsAPI+"CONSUMER.LIST."+s,
			jsAPI+"STREAM.MSG.GET."+s, jsAPI+"DIRECT.GET."+s, jsAPI+"DIRECT.GET."+s+".>",
			jsAck+s+".>")
		streams.add(s)
		// Never another role's durable consumer: taking its messages would hide them from it.
		for _, d := range durables {
			deny.add(jsAPI+"CONSUMER.CREATE."+s+"."+d, jsAPI+"CONSUMER.CREATE."+s+"."+d+".>",
				jsAPI+"CONSUMER.DELETE."+s+"."+d, jsAPI+"CONSUMER.MSG.NEXT."+s+"."+d,
				jsAck+s+"."+d+".>")
		}
	}
	if r.ManageStreams {
		for _, cfg := range events.StreamConfigs(1) {
			pub.add(jsAPI+"STREAM.CREATE."+cfg.Name, jsAPI+"STREAM.UPDATE."+cfg.Name)
			streams.add(cfg.Name)
		}
	}
	for s := range streams {
		pub.add(jsAPI + "STREAM.INFO." + s)
	}
	allowResponses := false
	for _, name := range slices.Sorted(maps.Keys(r.Serves)) {
		sub.add(r.Serves[name]...)
		// micro discovery: $SRV.PING, $SRV.PING.<name>, $SRV.PING.<name>.<id>, same for INFO, STATS.
		sub.add("$SRV.*", "$SRV.*."+name, "$SRV.*."+name+".*")
		allowResponses = true
	}
	pub.add(r.Requests...)
	if r.Discovers {
		pub.add("$SRV.>")
	}
	pub.add(r.PublishCore...)
	sub.add(r.SubscribeCore...)
	if err := errors.Join(errs...); err != nil {
		return Permissions{}, fmt.Errorf("role %s: %w", r.User, err)
	}
	return Permissions{PublishAllow: pub.sorted(), PublishDeny: deny.sorted(), SubscribeAllow: sub.sorted(), AllowResponses: allowResponses}, nil
}

// otherDurables lists the durable consumer names of every role but user.
func otherDurables(user string) []string {
	s := set{}
	for _, r := range Roles() {
		if r.User == user {
			continue
		}
		for _, c := range r.Consumers {
			s.add(c.Name)
		}
	}
	return s.sorted()
}

type set map[string]struct{}

func (s set) add(v ...string) {
	for _, x := range v {
		s[x] = struct{}{}
	}
}

func (s set) sorted() []string { return slices.Sorted(maps.Keys(s)) }
