package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/inbox"
	"github.com/patchfleet/patchfleet/db/plannerdb"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/planner/internal/budget"
	"github.com/patchfleet/patchfleet/services/planner/internal/exposure"
	"github.com/patchfleet/patchfleet/services/planner/internal/plan"
)

// Register puts the engine's handlers on c.
func (e *Engine) Register(c *events.Consumer) {
	events.On(c, e.OnAdvisory)
	events.On(c, e.OnWithdrawn)
	events.On(c, e.OnHostRegistered)
	events.On(c, e.OnDecommissioned)
	events.On(c, e.OnInventory)
	events.On(c, e.OnDrift)
	events.On(c, e.OnHostRebooted)
	events.On(c, e.OnCompleted)
	events.On(c, e.OnFailed)
	events.On(c, e.OnRequested)
	events.On(c, e.OnApproved)
	events.On(c, e.OnRejected)
	events.On(c, e.OnPaused)
	events.On(c, e.OnResumed)
	events.On(c, e.OnCancelled)
}

// OnAdvisory plans a rollout per fleet for the hosts an advisory exposes. Exposure comes
// from the inventory, asked with the event's own affected list so it never waits for the
// inventory to store the advisory.
//
// The exposures are recorded in a transaction of their own, on a second connection, while
// the plan is made and written: up to every host of a fleet on each side, so two backends
// (and cores) share the work. The record needs no inbox (recording an exposure again
// changes nothing), and it commits before the plan does, so a plan on record always has its
// exposures on record too. Its connection is taken before the plan's: the plan waits for the
// record, never the record for a connection.
func (e *Engine) OnAdvisory(ctx context.Context, m events.Meta, a events.SecurityAdvisoryPublished) error {
	now := e.now()
	hosts, err := e.exposed(ctx, a)
	if err != nil {
		return err
	}
	affected, err := json.Marshal(a.Affected)
	if err != nil {
		return events.Permanent(fmt.Errorf("encode affected of %s: %w", a.AdvisoryID, err))
	}
	conn, err := e.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("record exposure to %s: %w", a.AdvisoryID, err)
	}
	done := make(chan error, 1)
	go func() {
		defer conn.Release()
		done <- db.InTx(ctx, conn, func(tx pgx.Tx) error {
			return e.recordAdvisoryExposures(ctx, plannerdb.New(tx), a.AdvisoryID, a.Severity, hosts, now)
		})
	}()
	recorded := sync.OnceValue(func() error { return <-done })
	err = e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxAdvisories, m.ID); err != nil || seen {
			return err
		}
		res, err := e.plan(ctx, q, a, hosts, now)
		if err != nil {
			return err
		}
		var published *time.Time
		if !a.Published.IsZero() {
			published = &a.Published
		}
		if err := q.UpsertAdvisory(ctx, plannerdb.UpsertAdvisoryParams{
			AdvisoryID: a.AdvisoryID, Revision: int32(a.Revision), Severity: string(a.Severity),
			KnownExploited: a.KnownExploited, Published: published, Affected: affected, Now: now,
		}); err != nil {
			return fmt.Errorf("store advisory %s: %w", a.AdvisoryID, err)
		}
		for _, fp := range res.Fleets {
			if fp.Skipped != "" {
				e.Logger.Info("advisory not rolled out", "advisory_id", a.AdvisoryID, "fleet", fp.Policy.Name, "why", fp.Skipped, "correlation_id", m.CorrelationID)
				continue
			}
			rev := fmt.Sprint(a.Revision)
			id := events.DerivedID("rollout", "advisory", a.AdvisoryID, rev, fp.Policy.Name)
			if _, err := e.persist(ctx, tx, q, fp, id, "advisory:"+a.AdvisoryID+":"+rev+":"+fp.Policy.Name, now, m.ID); err != nil {
				return err
			}
		}
		if len(res.Unmatched) > 0 {
			e.Logger.Warn("exposed hosts covered by no fleet policy", "advisory_id", a.AdvisoryID, "hosts", len(res.Unmatched))
		}
		return recorded() // before the plan commits
	})
	if rerr := recorded(); err == nil {
		err = rerr // the plan stopped early: the record's outcome still counts
	}
	return err
}

// planAdvisory computes the plan for an advisory without persisting it (the preview).
func (e *Engine) planAdvisory(ctx context.Context, a events.SecurityAdvisoryPublished, now time.Time) (plan.Result, error) {
	hosts, err := e.exposed(ctx, a)
	if err != nil {
		return plan.Result{}, err
	}
	return e.plan(ctx, plannerdb.New(e.Pool), a, hosts, now)
}

// plan plans an advisory for its exposed hosts, leaving out what open jobs already do.
func (e *Engine) plan(ctx context.Context, q *plannerdb.Queries, a events.SecurityAdvisoryPublished, hosts []plan.Host, now time.Time) (plan.Result, error) {
	covered, err := covered(ctx, q, hosts)
	if err != nil {
		return plan.Result{}, err
	}
	adv := map[string]plan.Advisory{a.AdvisoryID: {ID: a.AdvisoryID, Severity: a.Severity, KnownExploited: a.KnownExploited, Published: a.Published}}
	return plan.Security(e.Policy, adv, hosts, covered, now), nil
}

// exposed pages through the inventory's exposure answer, in groups (the hosts of a group
// share its packages), and through its hosts for their tags when a fleet policy selects by
// tag.
func (e *Engine) exposed(ctx context.Context, a events.SecurityAdvisoryPublished) ([]plan.Host, error) {
	// The groups of every page first, then the hosts at once: grown page by page, the list of
	// a large fleet's hosts would be copied over and over.
	var groups []query.ExposureGroup
	n := 0
	req := query.ExposureRequest{AdvisoryID: a.AdvisoryID, Affected: a.Affected, Limit: query.MaxGroupedPage, Grouped: true}
	for {
		page, err := e.Inventory.Exposure(ctx, req)
		if req.Limit > oldMaxGroupedPage && refusedLimit(err) {
			// An inventory from before pages of 100,000 hosts (a rolling upgrade).
			req.Limit = oldMaxGroupedPage
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("exposure to %s: %w", a.AdvisoryID, err)
		}
		for _, g := range page.Groups {
			// Asked with this advisory's affected list, every package is exposed to it,
			// whatever id (if any) the inventory attributes it to.
			for i := range g.Packages {
				g.Packages[i].AdvisoryID = a.AdvisoryID
			}
			n += g.Len()
		}
		groups = append(groups, page.Groups...)
		if page.NextCursor == "" || len(page.Groups) == 0 {
			break
		}
		req.Cursor = page.NextCursor
	}
	hosts := make([]plan.Host, 0, n)
	for _, g := range groups {
		for _, f := range g.Fleets {
			for _, id := range f.HostIDs {
				hosts = append(hosts, plan.Host{ID: id, Fleet: f.Fleet, Packages: g.Packages})
			}
		}
	}
	if !e.Policy.UsesTags() || len(hosts) == 0 {
		return hosts, nil
	}
	info := map[string]query.Host{}
	for start := 0; start < len(hosts); start += e.pageSize() {
		ids := make([]string, 0, e.pageSize())
		for _, h := range hosts[start:min(len(hosts), start+e.pageSize())] {
			ids = append(ids, h.ID)
		}
		if err := e.eachHost(ctx, query.HostsRequest{IDs: ids}, func(h query.Host) { info[h.ID] = h }); err != nil {
			return nil, fmt.Errorf("tags of hosts exposed to %s: %w", a.AdvisoryID, err)
		}
	}
	for i := range hosts {
		if h, ok := info[hosts[i].ID]; ok {
			hosts[i].Tags, hosts[i].New = h.Tags, h.New
		}
	}
	return hosts, nil
}

// oldMaxGroupedPage is the most hosts a grouped exposure page held before query.MaxGroupedPage
// grew; an inventory of that version refuses a larger limit.
const oldMaxGroupedPage = 10_000

// refusedLimit says whether the inventory refused a request's limit.
func refusedLimit(err error) bool {
	var re *query.RemoteError
	return errors.As(err, &re) && re.Code == 400 && strings.HasPrefix(re.Message, "limit:")
}

func (e *Engine) eachHost(ctx context.Context, req query.HostsRequest, f func(query.Host)) error {
	req.Limit = e.pageSize()
	for {
		page, err := e.Inventory.Hosts(ctx, req)
		if err != nil {
			return err
		}
		for _, h := range page.Hosts {
			f(h)
		}
		if page.NextCursor == "" || len(page.Hosts) == 0 {
			return nil
		}
		req.Cursor = page.NextCursor
	}
}

// covered reads what open jobs already upgrade on these hosts.
func covered(ctx context.Context, q *plannerdb.Queries, hosts []plan.Host) (plan.Covered, error) {
	// Most advisories arrive with no rollout open: then there is no need to send every
	// exposed host's id (up to a fleet's) to find none.
	open, err := q.AnyRolloutOpen(ctx)
	if err != nil {
		return nil, fmt.Errorf("load open jobs: %w", err)
	}
	if !open {
		return plan.Covered{}, nil
	}
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.ID
	}
	rows, err := q.CoveredPackages(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("load open jobs: %w", err)
	}
	out := plan.Covered{}
	for _, r := range rows {
		var p []events.PackageTarget
		if err := json.Unmarshal(r.Packages, &p); err != nil {
			return nil, fmt.Errorf("decode open job of host %s: %w", r.HostID, err)
		}
		out[r.HostID] = append(out[r.HostID], p...)
	}
	return out, nil
}

// recordExposures notes since when a host is exposed to each advisory it is exposed to: a
// few rows, upserted.
func (e *Engine) recordExposures(ctx context.Context, q *plannerdb.Queries, h plan.Host, sev map[string]events.Severity, now time.Time) error {
	p := plannerdb.RecordExposuresParams{Now: now}
	for _, pk := range h.Packages {
		if pk.AdvisoryID == "" || slices.Contains(p.AdvisoryIds, pk.AdvisoryID) {
			continue
		}
		addExposure(&p, pk.AdvisoryID, h, sev[pk.AdvisoryID])
	}
	if len(p.HostIds) == 0 {
		return nil
	}
	if err := q.LockExposures(ctx, p.AdvisoryIds); err != nil {
		return fmt.Errorf("record exposure of host %s: %w", h.ID, err)
	}
	if err := q.RecordExposures(ctx, p); err != nil {
		return fmt.Errorf("record exposure of host %s: %w", h.ID, err)
	}
	return nil
}

// addExposure adds one row to an exposure upsert.
func addExposure(p *plannerdb.RecordExposuresParams, advisoryID string, h plan.Host, sev events.Severity) {
	p.AdvisoryIds = append(p.AdvisoryIds, advisoryID)
	p.HostIds = append(p.HostIds, h.ID)
	p.Buckets = append(p.Buckets, plannerdb.ExposureBucket(h.ID))
	p.Fleets = append(p.Fleets, h.Fleet)
	p.Severities = append(p.Severities, string(sev))
}

// recordAdvisoryExposures notes since when hosts are exposed to one advisory. That is up to
// every host of a fleet, so the hosts not on record are added as exposure sets, and only
// those whose exposure had ended are reopened as rows. The advisory's exposures are locked
// meanwhile: a host re-evaluated at the same time would otherwise be recorded twice.
func (e *Engine) recordAdvisoryExposures(ctx context.Context, q *plannerdb.Queries, advisoryID string, sev events.Severity, hosts []plan.Host, now time.Time) error {
	if len(hosts) == 0 {
		return nil
	}
	if err := q.LockExposures(ctx, []string{advisoryID}); err != nil {
		return fmt.Errorf("record exposure to %s: %w", advisoryID, err)
	}
	known, err := q.ExposuresOfAdvisory(ctx, advisoryID)
	if err != nil {
		return fmt.Errorf("record exposure to %s: %w", advisoryID, err)
	}
	fresh := hosts // an advisory seen first: every host (exposureSets lists a host once)
	reopen := plannerdb.RecordExposuresParams{Now: now}
	if len(known) > 0 {
		ended := make(map[string]bool, len(known)) // host → whether its exposure ended
		for _, r := range known {
			ended[r.HostID] = r.Ended
		}
		fresh = make([]plan.Host, 0, len(hosts)-min(len(hosts), len(known)))
		for _, h := range hosts {
			wasEnded, ok := ended[h.ID]
			switch {
			case !ok:
				fresh = append(fresh, h)
			case wasEnded:
				addExposure(&reopen, advisoryID, h, sev)
			}
			ended[h.ID] = false // listed twice: recorded once
		}
	}
	if len(fresh) > 0 {
		if _, err := q.InsertExposureSets(ctx, exposureSets(advisoryID, sev, fresh, now)); err != nil {
			return fmt.Errorf("record exposure of %d host(s) to %s: %w", len(fresh), advisoryID, err)
		}
	}
	if len(reopen.HostIds) > 0 {
		if err := q.RecordExposures(ctx, reopen); err != nil {
			return fmt.Errorf("record renewed exposure of %d host(s) to %s: %w", len(reopen.HostIds), advisoryID, err)
		}
	}
	return nil
}

// exposureSets lays out hosts newly exposed to an advisory as exposure sets, one per bucket,
// each host once. The sets' arrays are cut from two arrays of the hosts' ids and fleets.
func exposureSets(advisoryID string, sev events.Severity, hosts []plan.Host, now time.Time) []plannerdb.InsertExposureSetsParams {
	buckets := make([]int32, len(hosts))
	var size [plannerdb.ExposureBuckets]int32 // hosts a bucket has; then where its set ends
	for i, h := range hosts {
		buckets[i] = plannerdb.ExposureBucket(h.ID)
		size[buckets[i]]++
	}
	ids, fleets := make([]string, len(hosts)), make([]string, len(hosts))
	var sets []plannerdb.InsertExposureSetsParams
	var index [plannerdb.ExposureBuckets]int32 // bucket → its set's index
	end := int32(0)
	for b, n := range size {
		if n == 0 {
			continue
		}
		index[b] = int32(len(sets))
		sets = append(sets, plannerdb.InsertExposureSetsParams{AdvisoryID: advisoryID, Bucket: int32(b), Severity: string(sev), ExposedSince: now,
			HostIds: ids[end : end : end+n], Fleets: fleets[end : end : end+n]})
		end += n
	}
	for i, h := range hosts {
		set := &sets[index[buckets[i]]]
		set.HostIds = append(set.HostIds, h.ID)
		set.Fleets = append(set.Fleets, h.Fleet)
	}
	for i := range sets {
		sortSet(&sets[i])
	}
	return sets
}

// sortSet orders an exposure set's hosts by id and drops a host listed twice.
func sortSet(s *plannerdb.InsertExposureSetsParams) {
	sort.Sort(setByHost{s.HostIds, s.Fleets})
	n := 0
	for i, id := range s.HostIds {
		if i == 0 || id != s.HostIds[n-1] {
			s.HostIds[n], s.Fleets[n] = id, s.Fleets[i]
			n++
		}
	}
	s.HostIds, s.Fleets = s.HostIds[:n], s.Fleets[:n]
}

// setByHost sorts a set's hosts with their fleets.
type setByHost struct{ ids, fleets []string }

func (s setByHost) Len() int           { return len(s.ids) }
func (s setByHost) Less(i, j int) bool { return s.ids[i] < s.ids[j] }
func (s setByHost) Swap(i, j int) {
	s.ids[i], s.ids[j] = s.ids[j], s.ids[i]
	s.fleets[i], s.fleets[j] = s.fleets[j], s.fleets[i]
}

// takeExposures takes a host's exposures to the advisories listed (every one, when every)
// out of their exposure sets into rows, which is where one host's exposures are ended or
// changed.
func takeExposures(ctx context.Context, q *plannerdb.Queries, hostID string, every bool, advisoryIDs []string) error {
	if !every && len(advisoryIDs) == 0 {
		return nil
	}
	b := plannerdb.ExposureBucket(hostID)
	if err := q.TakeExposures(ctx, plannerdb.TakeExposuresParams{HostID: hostID, Bucket: b, Every: every, AdvisoryIds: nonNil(advisoryIDs)}); err != nil {
		return fmt.Errorf("take the exposures of host %s: %w", hostID, err)
	}
	if err := q.DropEmptyExposureSets(ctx, b); err != nil {
		return fmt.Errorf("take the exposures of host %s: %w", hostID, err)
	}
	return nil
}

// OnWithdrawn stops using a withdrawn advisory: rollouts for it alone that have not started
// are cancelled.
func (e *Engine) OnWithdrawn(ctx context.Context, m events.Meta, a events.AdvisoryWithdrawn) error {
	now := e.now()
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxAdvisories, m.ID); err != nil || seen {
			return err
		}
		if err := q.WithdrawAdvisory(ctx, plannerdb.WithdrawAdvisoryParams{AdvisoryID: a.AdvisoryID, Now: now}); err != nil {
			return fmt.Errorf("withdraw advisory %s: %w", a.AdvisoryID, err)
		}
		ids, err := q.OpenRolloutsOfAdvisory(ctx, a.AdvisoryID)
		if err != nil {
			return fmt.Errorf("rollouts of withdrawn advisory %s: %w", a.AdvisoryID, err)
		}
		for _, id := range ids {
			r, err := q.LockRollout(ctx, id)
			if err != nil {
				return wrapRollout("load", id, err)
			}
			if err := e.finish(ctx, tx, q, r, query.RolloutCancelled, "cancelled", "advisory withdrawn", now, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// OnHostRegistered gives a new host a full upgrade before it takes traffic, and re-evaluates
// a re-registered one.
func (e *Engine) OnHostRegistered(ctx context.Context, m events.Meta, h events.HostRegistered) error {
	if !h.New || h.Replaces != "" {
		// A replacement gets its full upgrade from its replace job, before it takes traffic;
		// a rollout of its own would work on it at the same time.
		return e.reevaluate(ctx, m, h.HostID, "")
	}
	now := e.now()
	res := plan.NewHost(e.Policy, plan.Selected{ID: h.HostID, Fleet: h.Fleet, Tags: h.Tags})
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxHosts, m.ID); err != nil || seen {
			return err
		}
		if len(res.Fleets) == 0 {
			e.Logger.Warn("new host covered by no fleet policy; no full upgrade", "host_id", h.HostID, "fleet", h.Fleet)
			return nil
		}
		fp := res.Fleets[0]
		_, err := e.persist(ctx, tx, q, fp, events.DerivedID("rollout", "new-host", h.HostID, m.ID), "new-host:"+h.HostID, now, m.ID)
		return err
	})
}

// OnDecommissioned drops a retired host from the open rollouts that have not dispatched it:
// it is skipped there (and so reported in the rollout's results), and a wave left with
// nothing else to wait for completes. A job already dispatched finishes and is recorded.
func (e *Engine) OnDecommissioned(ctx context.Context, m events.Meta, d events.HostDecommissioned) error {
	now := e.now()
	reason := "host decommissioned"
	if d.Reason != "" {
		reason += ": " + d.Reason
	}
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxHosts, m.ID); err != nil || seen {
			return err
		}
		if err := takeExposures(ctx, q, d.HostID, true, nil); err != nil {
			return err
		}
		if err := q.RetireExposures(ctx, plannerdb.RetireExposuresParams{HostID: d.HostID, Now: &now}); err != nil {
			return fmt.Errorf("end the exposures of decommissioned host %s: %w", d.HostID, err)
		}
		ids, err := q.PendingRolloutsOfHost(ctx, d.HostID)
		if err != nil {
			return fmt.Errorf("open rollouts of decommissioned host %s: %w", d.HostID, err)
		}
		for _, id := range ids { // in id order, so concurrent handlers lock alike
			r, err := q.LockRollout(ctx, id)
			if err != nil {
				return wrapRollout("lock", id, err)
			}
			n, err := q.SkipHost(ctx, plannerdb.SkipHostParams{RolloutID: id, HostID: d.HostID, Reason: reason, Now: now})
			if err != nil {
				return fmt.Errorf("drop decommissioned host %s from rollout %s: %w", d.HostID, id, err)
			}
			if n == 0 {
				continue // dispatched meanwhile
			}
			e.log(id).Info("decommissioned host dropped", "host_id", d.HostID)
			if r.State == query.RolloutRunning {
				if err := e.advance(ctx, tx, q, r, now, m.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// OnInventory re-evaluates a host after a scan.
func (e *Engine) OnInventory(ctx context.Context, m events.Meta, r events.HostInventoryReported) error {
	return e.reevaluate(ctx, m, r.HostID, r.PackageSet)
}

// OnDrift re-evaluates a host changed outside Patchfleet.
func (e *Engine) OnDrift(ctx context.Context, m events.Meta, d events.HostDriftDetected) error {
	return e.reevaluate(ctx, m, d.HostID, "")
}

// reevaluate matches one host's packages against the advisories the planner knows: what is
// no longer exposed is patched (by hand, or another tool), jobs not yet started whose
// packages are all installed are skipped, and fixes no open job covers get a rollout. set is
// the package set the event reported, if it did (see host).
func (e *Engine) reevaluate(ctx context.Context, m events.Meta, hostID, set string) error {
	now := e.now()
	detail, err := e.host(ctx, hostID, set)
	if err != nil {
		return fmt.Errorf("load host %s: %w", hostID, err)
	}
	q0 := plannerdb.New(e.Pool)
	rows, err := q0.ActiveAdvisories(ctx)
	if err != nil {
		return fmt.Errorf("load advisories for host %s: %w", hostID, err)
	}
	var advs []exposure.Advisory
	known := map[string]plan.Advisory{}
	sev := map[string]events.Severity{}
	for _, r := range rows {
		var aff []events.Affected
		if err := json.Unmarshal(r.Affected, &aff); err != nil {
			return fmt.Errorf("decode advisory %s: %w", r.AdvisoryID, err)
		}
		advs = append(advs, exposure.Advisory{ID: r.AdvisoryID, Affected: aff})
		a := plan.Advisory{ID: r.AdvisoryID, Severity: events.Severity(r.Severity), KnownExploited: r.KnownExploited}
		if r.Published != nil {
			a.Published = *r.Published
		}
		known[r.AdvisoryID], sev[r.AdvisoryID] = a, a.Severity
	}
	exposed := exposure.Match(detail.OS, detail.Packages, advs)
	host := plan.Host{ID: hostID, Fleet: detail.Fleet, Tags: detail.Tags, New: detail.New, Packages: exposed}
	installed := map[string]string{}
	for _, p := range detail.Packages {
		installed[p.Name] = p.Version
	}
	still := map[string]bool{}
	for _, p := range exposed {
		still[p.AdvisoryID] = true
	}
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxHosts, m.ID); err != nil || seen {
			return err
		}
		if detail.Retired {
			return nil
		}
		// Patched: the host's open exposures to advisories judged above that no longer
		// expose it. An advisory stored since ActiveAdvisories was read (its exposures may
		// be on record already) was not judged, and its exposures are left alone.
		exposures, err := q.OpenExposuresOfHost(ctx, plannerdb.OpenExposuresOfHostParams{HostID: hostID, Bucket: plannerdb.ExposureBucket(hostID)})
		if err != nil {
			return fmt.Errorf("exposures of host %s: %w", hostID, err)
		}
		var patched []string
		for _, id := range exposures {
			if _, judged := known[id]; judged && !still[id] {
				patched = append(patched, id)
			}
		}
		if err := takeExposures(ctx, q, hostID, false, patched); err != nil {
			return err
		}
		if err := q.PatchedOutside(ctx, plannerdb.PatchedOutsideParams{HostID: hostID, AdvisoryIds: patched, Now: &now}); err != nil {
			return fmt.Errorf("record patches of host %s: %w", hostID, err)
		}
		if err := e.recordExposures(ctx, q, host, sev, now); err != nil {
			return err
		}
		open, err := q.OpenJobsOfHost(ctx, hostID)
		if err != nil {
			return fmt.Errorf("open jobs of host %s: %w", hostID, err)
		}
		covered := plan.Covered{}
		for _, j := range open {
			var pkgs []events.PackageTarget
			if err := json.Unmarshal(j.Packages, &pkgs); err != nil {
				return fmt.Errorf("decode job of host %s in rollout %s: %w", hostID, j.RolloutID, err)
			}
			if j.State == "pending" && j.Kind == events.KindSecurity && len(pkgs) > 0 && satisfied(pkgs, installed) {
				if _, err := q.SkipHost(ctx, plannerdb.SkipHostParams{RolloutID: j.RolloutID, HostID: hostID, Reason: "already satisfied", Now: now}); err != nil {
					return fmt.Errorf("skip satisfied host %s in rollout %s: %w", hostID, j.RolloutID, err)
				}
				e.log(j.RolloutID).Info("host already satisfied; skipped", "host_id", hostID)
				continue
			}
			covered[hostID] = append(covered[hostID], pkgs...)
		}
		if len(exposed) == 0 {
			return nil
		}
		res := plan.Security(e.Policy, known, []plan.Host{host}, covered, now)
		for _, fp := range res.Fleets {
			if fp.Skipped != "" || fp.NotifyOnly() {
				continue // notify-only fleets were told when the advisory came
			}
			id := events.DerivedID("rollout", "host", hostID, m.ID)
			if _, err := e.persist(ctx, tx, q, fp, id, "host:"+hostID, now, m.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

func satisfied(pkgs []events.PackageTarget, installed map[string]string) bool {
	for _, p := range pkgs {
		v, ok := installed[p.Name]
		if !ok {
			return false
		}
		if p.MinVersion == "" {
			return false
		}
		if c, err := deb.Compare(v, p.MinVersion); err != nil || c < 0 {
			return false
		}
	}
	return true
}

// OnHostRebooted records a reboot: the host no longer waits for one.
func (e *Engine) OnHostRebooted(ctx context.Context, m events.Meta, r events.HostRebooted) error {
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxHosts, m.ID); err != nil || seen {
			return err
		}
		if err := q.MarkRebooted(ctx, plannerdb.MarkRebootedParams{HostID: r.HostID, JobID: r.JobID}); err != nil {
			return fmt.Errorf("record reboot of host %s: %w", r.HostID, err)
		}
		if err := q.ClearRebootPending(ctx, r.HostID); err != nil {
			return fmt.Errorf("record reboot of host %s: %w", r.HostID, err)
		}
		return nil
	})
}

// OnCompleted records a successful job and moves its rollout on.
func (e *Engine) OnCompleted(ctx context.Context, m events.Meta, c events.UpgradeCompleted) error {
	return e.result(ctx, m, c.JobID, c.HostID, events.ResultSucceeded, "", c.RebootPending, c.Rebooted)
}

// OnFailed records a failed job; a spent failure budget halts the rollout.
func (e *Engine) OnFailed(ctx context.Context, m events.Meta, f events.UpgradeFailed) error {
	reason := f.Reason
	if f.Message != "" {
		reason += ": " + f.Message
	}
	return e.result(ctx, m, f.JobID, f.HostID, events.ResultFailed, reason, false, false)
}

func (e *Engine) result(ctx context.Context, m events.Meta, jobID, hostID, status, reason string, rebootPending, rebooted bool) error {
	if status == events.ResultSucceeded {
		return e.succeeded(ctx, jobID, hostID, rebootPending, rebooted, m.ID)
	}
	now := e.now()
	return e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
		if seen, err := inbox.Seen(ctx, tx, inboxUpgrades, m.ID); err != nil || seen {
			return err
		}
		job, err := e.hostByJob(ctx, q, jobID, hostID)
		if err != nil {
			return err
		}
		r, err := q.LockRollout(ctx, job.RolloutID)
		if err != nil {
			return wrapRollout("lock", job.RolloutID, err)
		}
		n, err := q.FinishHost(ctx, plannerdb.FinishHostParams{
			RolloutID: r.ID, HostID: job.HostID, State: status, Reason: reason,
			RebootPending: rebootPending, Rebooted: rebooted, Now: &now,
		})
		if err != nil {
			return fmt.Errorf("record result of host %s in rollout %s: %w", job.HostID, r.ID, err)
		}
		log := e.log(r.ID).With("host_id", job.HostID, "job_id", jobID)
		if n == 0 {
			log.Info("result for a host already finished; ignored", "status", status)
			return nil
		}
		log.Info("job finished", "status", status, "reason", reason, "reboot_pending", rebootPending)
		if !isOpen(r.State) {
			return nil
		}
		if r.State == query.RolloutRunning || r.State == query.RolloutPaused {
			c, err := q.RolloutCounts(ctx, r.ID)
			if err != nil {
				return wrapRollout("count results of", r.ID, err)
			}
			canaryFailed := 0
			if r.Canary {
				canaryFailed = int(c.FailedFirstWave)
			}
			if halt, why := budget.Halt(int(c.Failed), int(r.MaxFailures), canaryFailed); halt {
				if err := q.SetRolloutState(ctx, plannerdb.SetRolloutStateParams{ID: r.ID, State: query.RolloutHalted, Reason: why, Now: now}); err != nil {
					return wrapRollout("halt", r.ID, err)
				}
				log.Warn("rollout halted", "why", why)
				return e.emit(ctx, tx, r.ID, m.ID, now, events.RolloutHalted{RolloutID: r.ID, Reason: why, Failed: int(c.Failed), Budget: int(r.MaxFailures)}, "halt", jobID)
			}
		}
		if r.State != query.RolloutRunning {
			return nil
		}
		return e.advance(ctx, tx, q, r, now, m.ID)
	})
}

// succeeded records a successful job without locking its rollout, so the results of one
// rollout are recorded in parallel, and then has the rollout advanced (see kick): a success
// changes nothing the rollout's state depends on, only what advance reads (the hosts in
// flight, the wave's count), and advance runs after this commit.
//
// It needs neither a transaction nor the inbox: SucceedHost is one statement that changes
// only a host still waiting for its result, so the same event delivered again changes
// nothing; taking the host's exposures out of their sets before changes nothing they say.
func (e *Engine) succeeded(ctx context.Context, jobID, hostID string, rebootPending, rebooted bool, causation string) error {
	q := plannerdb.New(e.Pool)
	if err := takeExposures(ctx, q, hostID, true, nil); err != nil {
		return err
	}
	done, err := q.SucceedHost(ctx, plannerdb.SucceedHostParams{JobID: jobID, RebootPending: rebootPending, Rebooted: rebooted, Now: new(e.now())})
	if notFound(err) {
		// An unknown job (a permanent error) or a host that has its result already.
		job, err := e.hostByJob(ctx, q, jobID, hostID)
		if err != nil {
			return err
		}
		e.log(job.RolloutID).Info("result for a host already finished; ignored", "host_id", job.HostID, "job_id", jobID, "status", events.ResultSucceeded)
		return nil
	}
	if err != nil {
		return fmt.Errorf("record success of job %s on host %s: %w", jobID, hostID, err)
	}
	e.log(done.RolloutID).Info("job finished", "host_id", done.HostID, "job_id", jobID, "status", events.ResultSucceeded, "reboot_pending", rebootPending)
	e.kick(done.RolloutID, causation)
	return nil
}

func (e *Engine) hostByJob(ctx context.Context, q *plannerdb.Queries, jobID, hostID string) (plannerdb.HostByJobRow, error) {
	job, err := q.HostByJob(ctx, jobID)
	if notFound(err) {
		return job, events.Permanent(fmt.Errorf("job %s of host %s: no such job", jobID, hostID))
	}
	if err != nil {
		return job, fmt.Errorf("load job %s: %w", jobID, err)
	}
	return job, nil
}

// kick has the ticker advance a rollout as soon as it can, after a change committed outside
// the rollout's lock. Kicks coalesce: a rollout kicked many times while the ticker is busy
// is advanced once, and that once dispatches for every result recorded before it. Advancing
// takes the rollout's lock (waiting for a holder, whose snapshot may predate the change) and
// so always sees the change; a kick lost to a crash is made up by the next tick.
func (e *Engine) kick(rolloutID, causation string) {
	e.kickMu.Lock()
	if e.kicked == nil {
		e.kicked = map[string]string{}
	}
	e.kicked[rolloutID] = causation
	wake := e.wakeLocked()
	e.kickMu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (e *Engine) wakeLocked() chan struct{} {
	if e.wake == nil {
		e.wake = make(chan struct{}, 1)
	}
	return e.wake
}

// advanceKicked advances the kicked rollouts that are running; one that fails is left to
// the next tick.
func (e *Engine) advanceKicked(ctx context.Context) error {
	e.kickMu.Lock()
	kicked := e.kicked
	e.kicked = nil
	e.kickMu.Unlock()
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(kicked)) {
		now := e.now()
		err := e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
			r, err := q.LockRollout(ctx, id)
			if err != nil {
				return wrapRollout("lock", id, err)
			}
			if r.State != query.RolloutRunning {
				return nil
			}
			return e.advance(ctx, tx, q, r, now, kicked[id])
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Tick advances every rollout that may have work to do: the approval delay ran out, a window
// opened, a bake time ended, the fleet has room again. Rollouts locked by another instance
// are skipped; that instance is advancing them.
func (e *Engine) Tick(ctx context.Context) error {
	now := e.now()
	ids, err := plannerdb.New(e.Pool).DueRollouts(ctx, plannerdb.DueRolloutsParams{Now: &now, Max: 500})
	if err != nil {
		return fmt.Errorf("list due rollouts: %w", err)
	}
	for _, id := range ids {
		err := e.inTx(ctx, func(tx pgx.Tx, q *plannerdb.Queries) error {
			r, err := q.TryLockRollout(ctx, id)
			if notFound(err) {
				return nil
			}
			if err != nil {
				return wrapRollout("lock", id, err)
			}
			return e.advance(ctx, tx, q, r, now, "")
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// RunTicker calls Tick every interval, and advances kicked rollouts as they are kicked,
// until ctx ends. A failed tick is logged and retried on the next one.
func (e *Engine) RunTicker(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	e.kickMu.Lock()
	wake := e.wakeLocked()
	e.kickMu.Unlock()
	tick := func() {
		if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
			e.Logger.Warn("advance due rollouts", "err", err)
		}
	}
	tick()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			tick()
		case <-wake:
			if err := e.advanceKicked(ctx); err != nil && ctx.Err() == nil {
				e.Logger.Warn("advance kicked rollouts", "err", err)
			}
		}
	}
}
