package bench_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/tools/systemtest"
)

const (
	planHosts = 100_000
	planSets  = 1_000
)

// planPolicy asks for approval, so a planned rollout waits and nothing reaches the executor.
const planPolicy = `fleets:
  - name: sim
    security_updates: approve
    min_severity: low
    approval_delay: 0h
    reboot: if-required
    canary: 1
    waves: ["1%", "100%"]
    max_unavailable: 200
    max_failures: 1
`

// BenchmarkPlanWithInventory100k is planning one advisory in a deployment of 100,000 hosts:
// from SecurityAdvisoryPublished on the bus to the planner's RolloutPlanned, through the
// real inventory's exposure pages. The hosts (1,000 package sets of the fleetsim image, each
// with a package of its own) are written into the inventory's tables, not registered and
// scanned. Each round advises a source package no earlier round did, after the rollouts
// before it were ended, as BenchmarkPlanAdvisory100k (services/planner) does with its
// stand-in inventory.
func BenchmarkPlanWithInventory100k(b *testing.B) {
	s := systemtest.Start(b, systemtest.Options{Logger: systemtest.Discard, Policy: planPolicy})
	sources := loadInventory(b, s)

	// The event is decoded after its arrival is timed (100,000 host ids take a while).
	planned := make(chan []byte, 16)
	sub, err := s.NC.Subscribe(events.SpecOf[events.RolloutPlanned]().Subject, func(m *nats.Msg) { planned <- m.Data })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := s.NC.Flush(); err != nil {
		b.Fatal(err)
	}
	// plan publishes an advisory for src and waits for its RolloutPlanned; the timer runs
	// from the publication to the arrival.
	plan := func(src source) {
		b.Helper()
		adv := events.SecurityAdvisoryPublished{AdvisoryID: "PFSA-BENCH-" + src.name, Revision: 1, Source: "bench",
			Title: "bench", Severity: events.SeverityHigh, Modified: time.Now(),
			Affected: []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12", Package: src.name, FixedVersion: src.version + "+pf1"}}}
		m, err := events.New(adv, events.Origin{Producer: "bench", CorrelationID: adv.AdvisoryID}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if err := events.Publish(context.Background(), s.JS, m); err != nil {
			b.Fatal(err)
		}
		var data []byte
		select {
		case data = <-planned:
			b.StopTimer()
		case <-time.After(2 * time.Minute):
			b.Fatalf("no RolloutPlanned for %s within 2 minutes (%s)", adv.AdvisoryID, s.Failed())
		}
		env, err := events.DecodeEnvelope(data)
		if err != nil {
			b.Fatal(err)
		}
		var rp events.RolloutPlanned
		if err := json.Unmarshal(env.Data, &rp); err != nil {
			b.Fatal(err)
		}
		if !slices.Equal(rp.AdvisoryIDs, []string{adv.AdvisoryID}) || rp.HostCount != planHosts {
			b.Fatalf("planned %v for %d hosts, want %s for %d", rp.AdvisoryIDs, rp.HostCount, adv.AdvisoryID, planHosts)
		}
	}
	// The first round, not timed: the services' connections and consumers come up.
	plan(sources[0])
	b.StartTimer() // b.Loop wants it running; each round times only what plan does
	round := 0
	for b.Loop() {
		b.StopTimer()
		endRollouts(b, s.DatabaseURL)
		if round++; round == len(sources) {
			b.Fatalf("%d rounds, but only %d source packages to advise", round, len(sources)-1)
		}
		b.StartTimer()
		plan(sources[round])
		b.StartTimer()
	}
}

// source is a source package every host has binaries of, at version.
type source struct{ name, version string }

// loadInventory writes planSets package sets and planHosts hosts (fleet sim, Debian 12) into
// the inventory's tables, and returns the source packages of the sets, those with the most
// binaries first.
func loadInventory(b *testing.B, s *systemtest.System) []source {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	s.WaitFor(b, time.Minute, "the inventory's tables", func() bool {
		var ok bool
		return conn.QueryRow(ctx, "select to_regclass('inventory.hosts') is not null").Scan(&ok) == nil && ok
	})

	tsv, err := os.ReadFile("../fleetsim/testdata/debian12-dpkg.tsv")
	if err != nil {
		b.Fatal(err)
	}
	var members [][]any // one image's rows, without the set id
	binaries := map[source]int{}
	for n, line := range strings.Split(strings.TrimSuffix(string(tsv), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			b.Fatalf("debian12-dpkg.tsv line %d: %d fields", n+1, len(f))
		}
		members = append(members, []any{f[0], f[2], f[1], f[3], f[4], strings.TrimSpace(f[5]), true})
		binaries[source{f[3], f[4]}]++
	}
	var sources []source
	for src := range binaries {
		sources = append(sources, src)
	}
	slices.SortFunc(sources, func(a, b source) int { return cmp.Or(binaries[b]-binaries[a], strings.Compare(a.name, b.name)) })

	err = db.InTx(ctx, conn, func(tx pgx.Tx) error {
		var rows [][]any
		for i := range planSets {
			var id int64
			if err := tx.QueryRow(ctx, `insert into inventory.package_sets (hash, package_count) values ($1, $2) returning id`,
				fmt.Sprintf("bench-%d", i), len(members)+1).Scan(&id); err != nil {
				return err
			}
			for _, m := range members {
				rows = append(rows, append([]any{id}, m...))
			}
			v := fmt.Sprintf("1.%d", i) // a package of its own: every set differs
			rows = append(rows, []any{id, "pf-bench-variant", "all", v, "pf-bench-variant", v, "ii", true})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"inventory", "package_set_members"},
			[]string{"set_id", "name", "arch", "version", "source_name", "source_version", "status", "installed"},
			pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
with s as (select array_agg(id order by id) a from inventory.package_sets)
insert into inventory.hosts (id, name, fleet, tags, address, host_key, os_id, os_version_id, os_codename, kernel,
                             package_set_id, package_count, last_scan, next_scan)
select format('host-%s', lpad(g::text, 6, '0')), format('host-%s.example.net', g), $3,
       '{}'::jsonb, format('10.%s.%s.%s', g / 65536, (g / 256) % 256, g % 256), 'ssh-ed25519 AAAA', 'debian', '12', 'bookworm',
       '6.1.0-37-amd64', s.a[1 + g % $1], $4, now(), now() + interval '1 day'
from generate_series(1, $2) g, s`, planSets, planHosts, systemtest.Fleet, len(members)+1)
		return err
	})
	if err != nil {
		b.Fatalf("load the inventory: %v", err)
	}
	// As autovacuum leaves tables that change little: package sets are written once, and
	// exposure reads their members by an index-only scan. A transaction of a service that
	// started before the load ended keeps vacuum from marking the pages all-visible; it is
	// run again until it has.
	s.WaitFor(b, time.Minute, "the inventory's tables vacuumed", func() bool {
		if _, err := conn.Exec(ctx, "vacuum analyze inventory.hosts, inventory.package_sets, inventory.package_set_members"); err != nil {
			b.Fatal(err)
		}
		var pages, visible int
		err := conn.QueryRow(ctx, "select relpages, relallvisible from pg_class where oid = 'inventory.package_set_members'::regclass").Scan(&pages, &visible)
		return err == nil && visible == pages
	})
	return sources
}

// endRollouts ends every open rollout and job, so the next round starts from an idle fleet.
func endRollouts(b *testing.B, dbURL string) {
	b.Helper()
	pool, err := db.Connect(context.Background(), dbURL, plannerdb.Schema)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `
update rollout_hosts set state = 'skipped' where state in ('pending', 'dispatched');
delete from wave_hosts;
update rollouts set state = 'cancelled', finished_at = now() where state not in ('completed', 'cancelled', 'rejected')`); err != nil {
		b.Fatal(err)
	}
}
