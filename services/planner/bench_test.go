package planner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
)

// setFixed moves every exposed package's fix to version v, so each benchmark round plans
// upgrades no earlier round covers.
func (inv *inventory) setFixed(v string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for i := range inv.exposed {
		for j := range inv.exposed[i].Packages {
			inv.exposed[i].Packages[j].Fixed = v
		}
	}
}

// closeAll ends every open rollout and job, so the next round starts from an idle fleet.
func closeAll(b *testing.B, e *env) {
	b.Helper()
	pool, err := db.Connect(context.Background(), e.dbURL, plannerdb.Schema)
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

// BenchmarkPlanAdvisory100k plans one new advisory exposing 100,000 hosts: the exposure
// pages from the inventory over NATS, policy, waves, every host's exposure recorded and the
// persisted rollout with every job.
func BenchmarkPlanAdvisory100k(b *testing.B) {
	e := newEnv(b, autoPolicy)
	e.inv.expose("web", nil, 100_000, "DSA-B")
	eng, pool := e.engine(nil)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		closeAll(b, e)
		e.inv.setFixed(fmt.Sprintf("3.0.13-1~deb12u%d", i+2))
		// A new advisory each round: every host's exposure to it is recorded, as when an
		// advisory first arrives.
		adv := advisory(fmt.Sprintf("DSA-B%d", i), events.SeverityHigh)
		b.StartTimer()
		if err := eng.OnAdvisory(ctx, events.Meta{ID: fmt.Sprintf("bench-%d", i), CorrelationID: adv.AdvisoryID}, adv); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var hosts int
	if err := pool.QueryRow(ctx, `select coalesce(sum(host_count), 0) from rollouts`).Scan(&hosts); err != nil || hosts < 100_000 {
		b.Fatalf("%d hosts persisted: %v", hosts, err)
	}
}

// BenchmarkAdvisoryToFirstJob measures from SecurityAdvisoryPublished on the bus to the
// canary's UpgradeRequested on JOBS, with the window open and no approval (100 hosts).
func BenchmarkAdvisoryToFirstJob(b *testing.B) {
	e := newEnv(b, autoPolicy)
	e.inv.expose("web", nil, 100, "DSA-L")
	e.run("bench")
	// Let the planner's consumers come up before timing.
	eventstest.WaitFor(b, 30*time.Second, "planner answering", func() bool {
		_, err := e.client.Policies(context.Background(), query.PoliciesRequest{})
		return err == nil
	})
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		closeAll(b, e)
		e.inv.setFixed(fmt.Sprintf("3.0.13-1~deb12u%d", i+2))
		before := e.exec.count()
		adv := advisory(fmt.Sprintf("DSA-L%d", i), events.SeverityHigh)
		b.StartTimer()
		e.bus.Publish(b, adv, adv.AdvisoryID)
		deadline := time.Now().Add(30 * time.Second)
		for e.exec.count() == before {
			if time.Now().After(deadline) {
				b.Fatal("no job within 30s")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}
