package natsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/natsauth"
	"github.com/patchfleet/patchfleet/tools/natsauth/natstest"
)

var services = []string{"advisory-ingest", "inventory", "planner", "executor"}

type world struct {
	t   *testing.T
	env *natstest.Env
	url string
}

// conn connects as user over TLS with its NKEY and its own reply inbox, without touching the
// streams; opts come last and may change the inbox.
func (w world) conn(user string, opts ...nats.Option) *nats.Conn {
	w.t.Helper()
	opt, err := nats.NkeyOptionFromSeed(w.env.Seed(user))
	if err != nil {
		w.t.Fatal(err)
	}
	nc, err := nats.Connect(w.url, append([]nats.Option{opt, nats.RootCAs(w.env.TLS.CA), nats.Name(user),
		nats.CustomInboxPrefix(events.UserInbox(user)),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)...)
	if err != nil {
		w.t.Fatalf("connect as %s: %v", user, err)
	}
	w.t.Cleanup(nc.Close)
	return nc
}

// service connects as a service does (events.Connect, which ensures the streams).
func (w world) service(ctx context.Context, user string) (*nats.Conn, jetstream.JetStream) {
	w.t.Helper()
	nc, js, err := events.Connect(ctx, w.env.Bus(w.url, user, 1), "patchfleet-"+user, slog.New(slog.DiscardHandler))
	if err != nil {
		w.t.Fatalf("%s: events.Connect: %v", user, err)
	}
	w.t.Cleanup(nc.Close)
	return nc, js
}

func js(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	j, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// violation reports whether the server refused op ("Publish", "Subscription") on subject for
// this connection. The server sends the refusal before it answers the flush.
func violation(t *testing.T, nc *nats.Conn, op, subject string) bool {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err := nc.LastError()
	return err != nil && errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(err.Error(), fmt.Sprintf("%s to %q", op, subject))
}

func deniedPublish(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	if err := nc.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if !violation(t, nc, "Publish", subject) {
		t.Errorf("%s may publish to %s", nc.Opts.Name, subject)
	}
}

func deniedSubscribe(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	if _, err := nc.SubscribeSync(subject); err != nil {
		t.Fatal(err)
	}
	if !violation(t, nc, "Subscription", subject) {
		t.Errorf("%s may subscribe to %s", nc.Opts.Name, subject)
	}
}

func publishEvent(ctx context.Context, t *testing.T, j jetstream.JetStream, user, subject string) {
	t.Helper()
	m := events.Message{Subject: subject, ID: user + ":" + subject, Data: []byte(`{}`)}
	if err := events.Publish(ctx, j, m); err != nil {
		t.Errorf("%s cannot publish %s: %v", user, subject, err)
	}
}

func setup(t *testing.T) (context.Context, world) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	env := natstest.Setup(t)
	return ctx, world{t: t, env: env, url: natstest.StartServer(t, env)}
}

// Every user may publish exactly the events of its role, and every service can connect (create
// and update the streams), run its durable consumers, acknowledge and dead-letter.
func TestEachUserPublishesAndConsumesExactlyItsEvents(t *testing.T) {
	ctx, w := setup(t)
	jss := map[string]jetstream.JetStream{}
	for _, s := range services { // the first creates the streams, the others update them
		_, jss[s] = w.service(ctx, s)
	}
	for _, r := range natsauth.Roles() {
		if jss[r.User] == nil {
			jss[r.User] = js(t, w.conn(r.User))
		}
	}

	// The publish matrix: every role against every subject of the catalog.
	for _, r := range natsauth.Roles() {
		nc := w.conn(r.User) // a fresh connection: each refusal is checked once
		for _, s := range events.Catalog() {
			if r.Admin {
				continue
			}
			if slices.Contains(r.Publishes, s.Type) {
				publishEvent(ctx, t, jss[r.User], r.User, s.Subject)
			} else {
				deniedPublish(t, nc, s.Subject)
			}
		}
	}

	// Every durable consumer is created the way the runner creates it, reads what was
	// published, acknowledges it, and may dead-letter.
	for _, r := range natsauth.Roles() {
		for _, c := range r.Consumers {
			byStream := map[string][]string{}
			for _, typ := range c.Events {
				for _, s := range events.Catalog() {
					if s.Type == typ {
						byStream[s.Stream] = append(byStream[s.Stream], s.Subject)
					}
				}
			}
			for _, st := range c.Streams {
				byStream[st] = nil
			}
			if c.Stream != "" { // the executor's dead letters: give it one to read
				publishEvent(ctx, t, jss[r.User], r.User, c.Filter)
			}
			for _, stream := range slices.Sorted(maps.Keys(byStream)) {
				cfg := jetstream.ConsumerConfig{Durable: c.Name, AckPolicy: jetstream.AckExplicitPolicy}
				switch {
				case c.Stream == stream:
					cfg.FilterSubject = c.Filter
				case byStream[stream] != nil:
					cfg.FilterSubjects = slices.Sorted(slices.Values(byStream[stream]))
				}
				consume(ctx, t, jss[r.User], r.User, stream, cfg)
			}
			if c.Stream == "" {
				publishEvent(ctx, t, jss[r.User], r.User, events.SubjectDLQ+"."+c.Name)
			}
		}
	}

	// The job was taken off the work queue by the executor's acknowledgement.
	info, err := jss["executor"].Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("JOBS holds %d messages after the executor acknowledged its job", n)
	}
}

func consume(ctx context.Context, t *testing.T, j jetstream.JetStream, user, stream string, cfg jetstream.ConsumerConfig) {
	t.Helper()
	cons, err := j.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		t.Errorf("%s: create consumer %s on %s: %v", user, cfg.Durable, stream, err)
		return
	}
	if _, err := cons.Info(ctx); err != nil {
		t.Errorf("%s: consumer info %s on %s: %v", user, cfg.Durable, stream, err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Errorf("%s: fetch from %s on %s: %v", user, cfg.Durable, stream, err)
		return
	}
	n := 0
	for msg := range batch.Messages() {
		n++
		if err := msg.DoubleAck(ctx); err != nil {
			t.Errorf("%s: ack %s on %s: %v", user, msg.Subject(), stream, err)
		}
	}
	if n == 0 {
		t.Errorf("%s: consumer %s on %s received nothing: %v", user, cfg.Durable, stream, batch.Error())
	}
}

// The runner itself, with the planner's rights: it consumes and dead-letters an undecodable
// event.
func TestRunnerDeadLettersWithTheServiceRights(t *testing.T) {
	ctx, w := setup(t)
	_, pjs := w.service(ctx, "planner")
	_, ijs := w.service(ctx, "inventory")
	ajs := js(t, w.conn("admin"))

	c := events.NewConsumer(pjs, events.ConsumerConfig{Name: "planner"})
	events.On(c, func(context.Context, events.Meta, events.HostInventoryReported) error { return nil })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	subject := events.SpecOf[events.HostInventoryReported]().Subject
	publishEvent(ctx, t, ijs, "inventory", subject) // "{}": not an envelope
	dlq, err := ajs.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg, err := dlq.GetLastMsgForSubject(ctx, events.SubjectDLQ+".planner")
		if err == nil {
			var dl events.DeadLetter
			if err := json.Unmarshal(msg.Data, &dl); err != nil || dl.Subject != subject {
				t.Fatalf("dead letter %s: %v", msg.Data, err)
			}
			return
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
			t.Fatalf("no dead letter from the planner: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Refusals that matter: nobody reads or takes another's messages, tools cannot touch the
// streams, the work queue is the executor's.
func TestRefusals(t *testing.T) {
	ctx, w := setup(t)
	for _, s := range services {
		w.service(ctx, s)
	}
	cases := []struct{ user, subject string }{
		{"chatops", events.SpecOf[events.UpgradeRequested]().Subject},
		{"planner", events.SpecOf[events.UpgradeCompleted]().Subject},
		{"executor", events.SpecOf[events.UpgradeRequested]().Subject},
		{"feedpub", "$JS.API.STREAM.CREATE.FEEDS"},
		{"feedpub", "$JS.API.STREAM.UPDATE.FEEDS"},
		{"chatops", "$JS.API.STREAM.UPDATE.ROLLOUTS"},
		{"planner", "$JS.API.STREAM.DELETE.JOBS"},
		{"planner", "$JS.API.STREAM.PURGE.ROLLOUTS"},
		{"executor", "$JS.API.STREAM.MSG.DELETE.UPGRADES"},
		{"inventory", "$JS.API.CONSUMER.CREATE.JOBS.inventory"},
		{"planner", "$JS.API.CONSUMER.CREATE.JOBS.planner"},
		{"planner", "$JS.API.CONSUMER.DELETE.JOBS.executor"},
		{"chatops", "$JS.API.CONSUMER.CREATE.ROLLOUTS.planner"},
		{"cli", "$JS.API.CONSUMER.CREATE.ROLLOUTS.planner"},
		{"cli", "$JS.API.CONSUMER.MSG.NEXT.ROLLOUTS.planner"},
		{"cli", "$JS.API.CONSUMER.DELETE.HOSTS.inventory"},
		{"console", "$JS.API.CONSUMER.MSG.NEXT.UPGRADES.chatops"},
		{"cli", "$JS.API.CONSUMER.CREATE.JOBS.x"},
		{"console", "$JS.ACK.HOSTS.planner.1.1.1.1.1.1"},
		{"executor", query.SubjectHosts},
		{"feedpub", query.SubjectHosts},
		{"inventory", "pf.logs.host-1"},
		{"planner", events.SubjectDLQ + ".executor"},
		{"chatops", "_INBOX.forged-reply"},   // only replies to its own requests arrive there
		{"inventory", "_INBOX.forged-reply"}, // a responder answers requests it received, nothing else
		{"inventory", events.UserInbox("planner") + ".forged-reply"},
		{"chatops", events.UserInbox("chatops") + ".x"}, // not even into its own inbox
	}
	conns := map[string]*nats.Conn{}
	for _, c := range cases {
		if conns[c.user] == nil {
			conns[c.user] = w.conn(c.user)
		}
		deniedPublish(t, conns[c.user], c.subject)
	}
	for _, c := range []struct{ user, subject string }{
		{"feedpub", "pf.>"},
		{"chatops", "pf.logs.>"},
		{"planner", "pf.jobs.>"},
		{"cli", "pf.query.inventory.hosts"},
		{"executor", "$JS.ACK.>"},
	} {
		deniedSubscribe(t, w.conn(c.user), c.subject)
	}

	// Without a key of the deployment, or without TLS trust, nobody gets in.
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(stranger, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	opt, err := nats.NkeyOptionFromSeed(stranger)
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(w.url, opt, nats.RootCAs(w.env.TLS.CA)); err == nil {
		nc.Close()
		t.Error("an unknown NKEY connected")
	}
	if nc, err := nats.Connect(w.url, nats.RootCAs(w.env.TLS.CA)); err == nil {
		nc.Close()
		t.Error("connected without credentials")
	}
	opt, _ = nats.NkeyOptionFromSeed(w.env.Seed("planner"))
	if nc, err := nats.Connect(w.url, opt); err == nil {
		nc.Close()
		t.Error("connected without trusting the server's CA")
	}
}

// defaultInbox gives a connection nats.go's shared "_INBOX" prefix.
func defaultInbox(o *nats.Options) error { o.InboxPrefix = ""; return nil }

// Replies, JetStream API answers, publish acks and pulled messages arrive in the asker's inbox:
// every user reads its own, _INBOX_<user>, and neither the shared _INBOX nor another user's.
// A client without its prefix is told so when it connects, not by a request that times out.
func TestEachUserReadsOnlyItsOwnInbox(t *testing.T) {
	ctx, w := setup(t)
	var users []string
	for _, r := range natsauth.Roles() {
		users = append(users, r.User)
	}
	for _, r := range natsauth.Roles() {
		nc := w.conn(r.User)
		if err := events.CheckInbox(ctx, nc); err != nil {
			t.Errorf("%s with its prefix: %v", r.User, err)
		}
		if r.Admin {
			continue
		}
		deniedSubscribe(t, nc, "_INBOX.>")
		for _, other := range users {
			if other != r.User {
				deniedSubscribe(t, nc, events.UserInbox(other)+".>")
			}
		}
		if other := users[(slices.Index(users, r.User)+1)%len(users)]; other != "admin" {
			if err := events.CheckInbox(ctx, w.conn(r.User, nats.CustomInboxPrefix(events.UserInbox(other)))); !errors.Is(err, events.ErrInboxRefused) {
				t.Errorf("%s with %s's prefix: %v, want %v", r.User, other, err, events.ErrInboxRefused)
			}
		}
		if err := events.CheckInbox(ctx, w.conn(r.User, defaultInbox)); !errors.Is(err, events.ErrInboxRefused) {
			t.Errorf("%s with the default prefix: %v, want %v", r.User, err, events.ErrInboxRefused)
		}
	}

	// A service configured without its prefix stops at connect with the reason.
	bus := w.env.Bus(w.url, "planner", 1)
	bus.InboxPrefix = ""
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, _, err := events.Connect(cctx, bus, "patchfleet-planner", slog.New(slog.DiscardHandler))
	if err == nil {
		nc.Close()
	}
	if !errors.Is(err, events.ErrInboxRefused) || !strings.Contains(err.Error(), "PATCHFLEET_NATS_INBOX") {
		t.Errorf("events.Connect as planner with the default inbox: %v, want %v naming PATCHFLEET_NATS_INBOX", err, events.ErrInboxRefused)
	}

	// Nothing of another user's arrives: the planner's query answer reaches the planner alone.
	nc, _ = w.service(ctx, "inventory")
	svc, err := micro.AddService(nc, micro.Config{Name: query.ServiceInventory, Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddEndpoint("hosts", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte(`"secret"`)) }),
		micro.WithEndpointSubject(query.SubjectHosts))
	if err != nil {
		t.Fatal(err)
	}
	spy := w.conn("chatops")
	spied, err := spy.SubscribeSync(events.UserInbox("planner") + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	if _, err := w.conn("planner").RequestWithContext(rctx, query.SubjectHosts, []byte(`{}`)); err != nil {
		t.Fatalf("planner asks %s: %v", query.SubjectHosts, err)
	}
	// The server delivered the reply to every subscriber before the planner got it, so
	// after a flush anything meant for the spy has arrived.
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := spied.NextMsg(10 * time.Millisecond); err == nil {
		t.Errorf("chatops read the planner's reply on %s", msg.Subject)
	}
}

// Request/reply: the inventory, the planner and advisory-ingest answer (and are discoverable); each asker
// reaches what its role names; the console follows live job logs.
func TestQueriesDiscoveryAndLogs(t *testing.T) {
	ctx, w := setup(t)
	for name, user := range map[string]string{query.ServiceInventory: "inventory", query.ServicePlanner: "planner", query.ServiceAdvisories: "advisory-ingest"} {
		nc, _ := w.service(ctx, user)
		svc, err := micro.AddService(nc, micro.Config{Name: name, Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = svc.Stop() })
		for _, subj := range []string{query.SubjectHosts, query.SubjectHost, query.SubjectExposure, query.SubjectPlannerRollouts, query.SubjectAdvisory} {
			if !strings.HasPrefix(subj, "pf.query."+name+".") {
				continue
			}
			err := svc.AddEndpoint(subj[strings.LastIndex(subj, ".")+1:], micro.HandlerFunc(func(r micro.Request) {
				_ = r.RespondJSON(map[string]string{"answered_by": name})
			}), micro.WithEndpointSubject(subj))
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	ask := func(user, subject string) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := w.conn(user).RequestWithContext(rctx, subject, []byte(`{}`))
		return err
	}
	for _, c := range []struct{ user, subject string }{
		{"planner", query.SubjectHosts},
		{"planner", query.SubjectExposure},
		{"executor", query.SubjectHost},
		{"chatops", query.SubjectExposure},
		{"cli", query.SubjectPlannerRollouts},
		{"console", query.SubjectHosts},
		{"cli", "$SRV.PING.inventory"},
		{"console", "$SRV.INFO.planner"},
		{"cli", query.SubjectAdvisory},
		{"chatops", "$SRV.PING.advisories"},
	} {
		if err := ask(c.user, c.subject); err != nil {
			t.Errorf("%s asks %s: %v", c.user, c.subject, err)
		}
	}

	console := w.conn("console")
	sub, err := console.SubscribeSync("pf.logs.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := console.Flush(); err != nil {
		t.Fatal(err)
	}
	exec, _ := w.service(ctx, "executor")
	if err := exec.Publish("pf.logs.host-1", []byte("apt-get update\n")); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(10 * time.Second); err != nil || string(msg.Data) != "apt-get update\n" {
		t.Errorf("console following pf.logs.>: %v", err)
	}
}

// The browsing tools read the event logs with ordered consumers of their own.
func TestOperatorsBrowseTheLogs(t *testing.T) {
	ctx, w := setup(t)
	_, pjs := w.service(ctx, "planner")
	subject := events.SpecOf[events.RolloutPlanned]().Subject
	publishEvent(ctx, t, pjs, "planner", subject)
	for _, user := range []string{"cli", "console"} {
		j := js(t, w.conn(user))
		oc, err := j.OrderedConsumer(ctx, events.StreamRollouts, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatalf("%s: ordered consumer: %v", user, err)
		}
		msg, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil || msg.Subject() != subject {
			t.Errorf("%s: browse ROLLOUTS: %v", user, err)
		}
		s, err := j.Stream(ctx, events.StreamRollouts)
		if err != nil {
			t.Fatalf("%s: stream info: %v", user, err)
		}
		if _, err := s.GetMsg(ctx, 1); err != nil {
			t.Errorf("%s: get message: %v", user, err)
		}
		if _, err := s.Consumer(ctx, "planner"); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("%s: consumer info of the planner (lag): %v", user, err)
		}
	}
}
