package e2e

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/db/ingestdb"
	"github.com/patchfleet/patchfleet/db/pgtest"
	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/embedded"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/advisory-ingest"
	"github.com/patchfleet/patchfleet/services/executor"
	"github.com/patchfleet/patchfleet/services/inventory"
	"github.com/patchfleet/patchfleet/services/planner"
	"github.com/patchfleet/patchfleet/tools/chaos"
	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

// injections are package names and versions that would do harm if a shell saw them unquoted.
var injections = []struct{ name, value string }{
	{"semicolon", "openssl;reboot"},
	{"command substitution", "openssl$(touch /tmp/pf-pwned)"},
	{"backticks", "openssl`id`"},
	{"newline", "openssl\nreboot"},
	{"single quote", "openssl'; reboot; '"},
	{"double quote", `openssl"; reboot; "`},
	{"apt option", "-oAPT::Update::Pre-Invoke::=touch /tmp/pf-pwned"},
	{"leading dash", "--allow-remove-essential"},
	{"space", "openssl libssl3"},
	{"pipe", "openssl|sh"},
	{"redirect", "openssl>/etc/passwd"},
	{"unicode look-alike", "оpenssl"}, // Cyrillic о
	{"fullwidth", "ｏpenssl"},
}

// TestInjectionCorpusNeverReachesAHost sends the corpus through every door — advisory files,
// the FEEDS stream, forged jobs on JOBS — with the four services running on fleetsim hosts:
// ingest refuses each record naming the record and the field, nothing reaches the planner,
// a forged job fails invalid_job without a single SSH connection, and malformed or oversized
// events on every stream are dead-lettered with a reason while the services keep working.
func TestInjectionCorpusNeverReachesAHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	feeds := filepath.Join(dir, "feeds")
	if err := os.MkdirAll(feeds, 0o755); err != nil {
		t.Fatal(err)
	}
	// One OSV record per injection in the package name and one in the fixed version, and a
	// valid advisory (for a package nobody has) that must get through.
	for i, inj := range injections {
		writeOSV(t, feeds, fmt.Sprintf("PFSA-INJ-P%02d", i), inj.value, "1.1")
		writeOSV(t, feeds, fmt.Sprintf("PFSA-INJ-V%02d", i), "pf-nothing", badVersion(inj.value))
	}
	writeOSV(t, feeds, "PFSA-INJ-OK", "pf-nothing", "1.1")

	fleet, err := fleetsim.Start(ctx, fleetsim.Options{N: 2, Seed: "injection"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleet.Close() })
	block, err := ssh.MarshalPrivateKey(fleet.ClientPrivateKey(), "injection")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(strings.ReplaceAll(chaos.Policy, "chaos", "inj")), 0o644); err != nil {
		t.Fatal(err)
	}

	ns, err := embedded.Start(embedded.Config{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	dbURL := pgtest.EmptyDatabase(t)
	common := func() service.Common {
		return service.Common{Bus: events.BusConfig{URL: ns.ClientURL(), Replicas: 1}, DatabaseURL: dbURL,
			HTTPAddr: "127.0.0.1:0"} // a port of its own: a port picked free may be taken by the time it listens
	}
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(sctx); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
				mu.Unlock()
			}
		})
	}
	alive := func() {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(failed) > 0 {
			t.Fatalf("a service stopped: %s", strings.Join(failed, "; "))
		}
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	run("advisory-ingest", func(ctx context.Context) error {
		return ingest.Run(ctx, ingest.Config{Common: common(), Feeds: []string{feeds}, FeedInterval: time.Hour},
			logger.With("svc", "advisory-ingest"))
	})
	run("inventory", func(ctx context.Context) error {
		return inventory.Run(ctx, inventory.Config{Common: common(), SSHKeyFiles: []string{key}}, logger.With("svc", "inventory"))
	})
	run("planner", func(ctx context.Context) error {
		return planner.Run(ctx, planner.Config{Common: common(), PolicyFile: policy, Tick: 200 * time.Millisecond},
			logger.With("svc", "planner"))
	})
	run("executor", func(ctx context.Context) error {
		return executor.Run(ctx, executor.Config{Common: common(), SSHKeyFiles: []string{key}}, logger.With("svc", "executor"))
	})

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := events.EnsureStreams(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	bus := &eventstest.Bus{JS: js}
	wait := func(timeout time.Duration, what string, cond func() bool) {
		t.Helper()
		eventstest.WaitFor(t, timeout, what, func() bool { alive(); return cond() })
	}

	// 1. Advisory files: every injected record is an ingest error naming the file, the
	// record and the field; the valid one is published.
	wait(2*time.Minute, "the valid advisory from the feed", func() bool {
		return len(published(t, bus, "PFSA-INJ-OK")) == 1
	})
	errs := ingestErrors(ctx, t, dbURL)
	for i, inj := range injections {
		for _, c := range []struct{ id, field string }{{fmt.Sprintf("PFSA-INJ-P%02d", i), "package"}, {fmt.Sprintf("PFSA-INJ-V%02d", i), "version"}} {
			reason, ok := errs[c.id]
			switch {
			case !ok:
				t.Errorf("%s (%s in the %s): no ingest error naming the record; errors: %v", c.id, inj.name, c.field, errs)
			case !strings.Contains(reason, c.field):
				t.Errorf("%s (%s in the %s): ingest error %q does not name the field", c.id, inj.name, c.field, reason)
			default:
				t.Logf("file %s (%s in the %s): %s", c.id, inj.name, c.field, reason)
			}
		}
	}

	// 2. FEEDS: the same corpus submitted by a publisher is dead-lettered with the field.
	var feedIDs []string
	for i, inj := range injections {
		e := events.AdvisorySubmitted{AdvisoryID: fmt.Sprintf("PFSA-INJ-F%02d", i), Source: "injection",
			Modified: time.Now(), Severity: events.SeverityHigh,
			Affected: []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12", Package: inj.value, FixedVersion: "1.1"}}}
		feedIDs = append(feedIDs, publishRaw(ctx, t, js, e))
	}
	dead := map[string]string{}
	wait(time.Minute, "every injected submission dead-lettered", func() bool {
		for _, dl := range deadLetters(t, js) {
			if strings.HasPrefix(dl.Consumer, "advisory-ingest") {
				dead[dl.EventID] = dl.Reason
			}
		}
		for _, id := range feedIDs {
			if _, ok := dead[id]; !ok {
				return false
			}
		}
		return true
	})
	for i, id := range feedIDs {
		t.Logf("FEEDS %s (%s): dead-lettered: %s", id, injections[i].name, dead[id])
		if r := dead[id]; !strings.Contains(r, "affected[0].package") {
			t.Errorf("FEEDS %s (%s): dead-letter reason %q does not name affected[0].package", id, injections[i].name, r)
		}
	}

	// 3. Nothing reached the planner: no injected advisory was published, no rollout planned.
	advs, err := chaos.Envelopes(ctx, js, events.StreamAdvisories)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range advs {
		if env.Type == "undecodable" {
			t.Errorf("an undecodable message on ADVISORIES")
		}
		if strings.Contains(string(env.Data), "PFSA-INJ-") && !strings.Contains(string(env.Data), "PFSA-INJ-OK") {
			t.Errorf("an injected advisory was published: %s", env.Data)
		}
	}
	for _, env := range bus.Envelopes(t, events.StreamRollouts) {
		t.Errorf("a rollout event for injected input: %s %s", env.Type, env.Data)
	}

	// 4. Forged jobs on JOBS for a registered, scanned host: invalid_job, and not one SSH
	// connection or command on that host.
	h := fleet.Hosts()[0]
	publishRaw(ctx, t, js, events.HostRegistered{HostID: h.Name, Name: h.Name, Fleet: "inj",
		SSH: events.SSHTarget{Address: "127.0.0.1", Port: h.Port(), User: "root",
			HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey())))}})
	q := query.Client{NC: nc}
	wait(time.Minute, "the host scanned", func() bool {
		resp, err := q.Hosts(ctx, query.HostsRequest{IDs: []string{h.Name}})
		return err == nil && len(resp.Hosts) == 1 && !resp.Hosts[0].LastScan.IsZero()
	})
	conns, cmds := h.Connections(), h.Commands()
	jobs := map[string]string{}
	for i, inj := range injections {
		for _, pkg := range []events.PackageTarget{{Name: inj.value}, {Name: "openssl", MinVersion: badVersion(inj.value)}} {
			job := fmt.Sprintf("forged-%02d-%s", i, map[bool]string{true: "name", false: "version"}[pkg.MinVersion == ""])
			jobs[job] = inj.name
			publishRaw(ctx, t, js, events.UpgradeRequested{JobID: job, RolloutID: "forged", HostID: h.Name,
				Kind: events.KindSecurity, Strategy: events.StrategyInPlace, Reboot: events.RebootAlways,
				Packages: []events.PackageTarget{pkg}})
		}
	}
	wait(time.Minute, "an outcome for every forged job", func() bool {
		n := 0
		for _, env := range bus.Envelopes(t, events.StreamUpgrades) {
			var f events.UpgradeFailed
			if env.Type == f.EventType() && json.Unmarshal(env.Data, &f) == nil && jobs[f.JobID] != "" {
				if f.Reason != events.FailInvalidJob {
					t.Errorf("forged job %s (%s): failed %s, want %s", f.JobID, jobs[f.JobID], f.Reason, events.FailInvalidJob)
				}
				n++
			}
			if env.Type == (events.UpgradeCompleted{}).EventType() || env.Type == (events.UpgradeStarted{}).EventType() {
				t.Fatalf("a forged job was started: %s %s", env.Type, env.Data)
			}
		}
		return n == len(jobs)
	})
	if c, k := h.Connections()-conns, h.Commands()-cmds; c != 0 || k != 0 {
		t.Errorf("forged jobs reached the host: %d SSH connections, %d commands", c, k)
	}
	t.Logf("%d forged jobs failed invalid_job; host %s saw no connection or command for them", len(jobs), h.Name)

	// 5. Malformed and oversized events on every stream a service consumes: dead-lettered with
	// a reason, and the services still work afterwards.
	big := strings.Repeat("x", 2<<20)
	type junkKey struct {
		subject string
		size    int
	}
	junk := map[junkKey]bool{}
	for _, subject := range []string{
		events.SpecOf[events.AdvisorySubmitted]().Subject, events.SpecOf[events.SecurityAdvisoryPublished]().Subject,
		events.SpecOf[events.HostRegistered]().Subject, events.SpecOf[events.RolloutApproved]().Subject,
		events.SpecOf[events.UpgradeCompleted]().Subject, events.SpecOf[events.UpgradeRequested]().Subject,
	} {
		for _, data := range []string{`{"id": "not closed`, `{"id":"x","type":"` + big + `"}`} {
			id := events.NewID()
			msg := nats.NewMsg(subject)
			msg.Header.Set(jetstream.MsgIDHeader, id)
			msg.Data = []byte(data)
			if _, err := js.PublishMsg(ctx, msg); err != nil {
				t.Fatalf("publish junk on %s: %v", subject, err)
			}
			junk[junkKey{subject, len(data)}] = false
		}
	}
	var dlq dlqReader // reads each dead letter once: the oversized ones are megabytes each
	wait(3*time.Minute, "every junk event dead-lettered", func() bool {
		for _, dl := range dlq.next(t, js) {
			k := junkKey{dl.Subject, len(dl.Data)}
			if seen, ok := junk[k]; ok && !seen && dl.Reason != "" {
				junk[k] = true
				t.Logf("junk on %s (%d bytes) dead-lettered by %s: %.200s", dl.Subject, len(dl.Data), dl.Consumer, dl.Reason)
			}
		}
		for _, seen := range junk {
			if !seen {
				return false
			}
		}
		return true
	})
	publishRaw(ctx, t, js, events.AdvisorySubmitted{AdvisoryID: "PFSA-INJ-AFTER", Source: "injection", Modified: time.Now(),
		Severity: events.SeverityHigh, Affected: []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12",
			Package: "pf-nothing", FixedVersion: "1.1"}}})
	wait(time.Minute, "a valid advisory after the junk", func() bool { return len(published(t, bus, "PFSA-INJ-AFTER")) == 1 })
}

// badVersion puts an injection into a version: as is when it looks like an option, else
// after a valid start ("1.1;reboot").
func badVersion(inj string) string {
	if strings.HasPrefix(inj, "-") {
		return inj
	}
	return "1." + inj
}

func writeOSV(t *testing.T, dir, id, pkg, fixed string) {
	t.Helper()
	doc := map[string]any{"schema_version": "1.6.0", "id": id, "modified": "2099-01-02T00:00:00Z", "published": "2099-01-01T00:00:00Z",
		"summary": "injection corpus",
		"affected": []any{map[string]any{
			"package": map[string]any{"name": pkg, "ecosystem": "Debian:12"},
			"ranges":  []any{map[string]any{"type": "ECOSYSTEM", "events": []any{map[string]any{"introduced": "0"}, map[string]any{"fixed": fixed}}}},
		}}}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// publishRaw publishes an event without the contract's validation (as a hostile or broken
// publisher would) and returns its id.
func publishRaw(ctx context.Context, t *testing.T, js jetstream.JetStream, e events.Event) string {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	env := events.Envelope{ID: events.NewID(), Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Time: time.Now().UTC(),
		Producer: "injection", CorrelationID: "injection", Data: data}
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	var subject string
	for _, s := range events.Catalog() {
		if s.Type == e.EventType() && s.Version == e.SchemaVersion() {
			subject = s.Subject
		}
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set(jetstream.MsgIDHeader, env.ID)
	msg.Data = body
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publish %s: %v", e.EventType(), err)
	}
	return env.ID
}

func published(t *testing.T, bus *eventstest.Bus, id string) []events.Envelope {
	envs, err := chaos.Envelopes(context.Background(), bus.JS, events.StreamAdvisories)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Envelope
	for _, env := range envs {
		var a events.SecurityAdvisoryPublished
		if env.Type == a.EventType() && json.Unmarshal(env.Data, &a) == nil && a.AdvisoryID == id {
			out = append(out, env)
		}
	}
	return out
}

// deadLetters reads the DLQ stream.
func deadLetters(t *testing.T, js jetstream.JetStream) []events.DeadLetter {
	t.Helper()
	var r dlqReader
	return r.next(t, js)
}

// dlqReader reads the DLQ stream incrementally.
type dlqReader struct{ seq uint64 }

func (r *dlqReader) next(t *testing.T, js jetstream.JetStream) []events.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.DeadLetter
	for seq := max(info.State.FirstSeq, r.seq+1); seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			r.seq = seq
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) {
			break // a loaded machine: read the rest on the next poll
		}
		if err != nil {
			t.Fatalf("DLQ seq %d: %v", seq, err)
		}
		r.seq = seq
		var dl events.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatalf("DLQ seq %d: %v", seq, err)
		}
		out = append(out, dl)
	}
	return out
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func ingestErrors(ctx context.Context, t *testing.T, url string) map[string]string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `select origin, reason from `+ingestdb.Schema+`.ingest_errors`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var origin, reason string
		if err := rows.Scan(&origin, &reason); err != nil {
			t.Fatal(err)
		}
		for i := range injections {
			for _, kind := range []string{"P", "V"} {
				if id := fmt.Sprintf("PFSA-INJ-%s%02d", kind, i); strings.Contains(origin, id) || strings.Contains(reason, id) {
					out[id] = origin + ": " + reason
				}
			}
		}
	}
	return out
}
