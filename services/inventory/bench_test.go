package inventory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/patchfleet/patchfleet/db"
	"github.com/patchfleet/patchfleet/db/inventorydb"
	"github.com/patchfleet/patchfleet/events/hostfacts"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/services/inventory/internal/store"
)

const (
	benchHosts = 100_000
	benchSets  = 1_000
)

// variant returns the capture with a few packages bumped, different for every i, so hosts
// built from "the same image" at different times hold different but mostly shared sets.
// Every tenth variant is an older image with glibc a security update behind.
func variant(tsv string, i int) string {
	lines := strings.Split(strings.TrimSuffix(tsv, "\n"), "\n")
	for j := range 5 {
		k := (i*131 + j*17) % len(lines)
		f := strings.Split(lines[k], "\t")
		f[1] += fmt.Sprintf("+pf%d", i)
		f[4] += fmt.Sprintf("+pf%d", i)
		lines[k] = strings.Join(f, "\t")
	}
	out := strings.Join(lines, "\n") + "\n"
	if i%10 == 0 {
		out = strings.ReplaceAll(out, "2.36-9+deb12u14", "2.36-9+deb12u13")
	}
	return out
}

// loadFleet fills the register with benchHosts Debian 12 hosts over benchSets package sets
// built from the real capture, and stores the bookworm advisory. It returns the schema's
// size on disk.
func loadFleet(b *testing.B, s *sys) (sizes map[string]int64) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "set search_path = inventory"); err != nil {
		b.Fatal(err)
	}
	tsv := readFile(b, "testdata/debian12-dpkg.tsv")
	err = db.InTx(ctx, conn, func(tx pgx.Tx) error {
		q := inventorydb.New(tx)
		for i := range benchSets {
			f, err := hostfacts.Parse(report("debian", "12", variant(tsv, i), false))
			if err != nil {
				return err
			}
			pkgs := store.Packages(f)
			id, err := q.InsertPackageSet(ctx, inventorydb.InsertPackageSetParams{Hash: store.SetHash(pkgs), PackageCount: int32(len(pkgs))})
			if err != nil {
				return err
			}
			rows := make([]inventorydb.InsertSetMembersParams, len(pkgs))
			for j, p := range pkgs {
				rows[j] = inventorydb.InsertSetMembersParams{SetID: id, Name: p.Name, Arch: p.Arch, Version: p.Version,
					SourceName: p.SourceName, SourceVersion: p.SourceVersion, Status: p.Status, Installed: true}
			}
			if _, err := q.InsertSetMembers(ctx, rows); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `
with s as (select array_agg(id order by id) a from inventory.package_sets)
insert into inventory.hosts (id, name, fleet, tags, address, host_key, os_id, os_version_id, os_codename, kernel,
                             package_set_id, package_count, last_scan, next_scan)
select format('host-%s', lpad(g::text, 6, '0')), format('host-%s.example.net', g), 'fleet-' || (g % 20),
       jsonb_build_object('env', case when g % 2 = 0 then 'prod' else 'staging' end, 'role', 'web'),
       format('10.%s.%s.%s', g / 65536, (g / 256) % 256, g % 256), 'ssh-ed25519 AAAA', 'debian', '12', 'bookworm',
       '6.1.0-37-amd64', s.a[1 + g % $1], 703, now(), now() + interval '1 day'
from generate_series(1, $2) g, s`, benchSets, benchHosts)
		if err != nil {
			return err
		}
		affected, _ := json.Marshal(bookwormAdvisory().Affected)
		_, err = tx.Exec(ctx, `insert into inventory.advisories (id, revision, aliases, affected) values ('DSA-9999-1', 1, '{CVE-2099-0001}', $1)`, affected)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "vacuum analyze"); err != nil {
		b.Fatal(err)
	}
	sizes = map[string]int64{}
	rows, err := conn.Query(ctx, `select c.relname, pg_total_relation_size(c.oid) from pg_class c
join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'inventory' and c.relkind = 'r'`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var name string
		var size int64
		if err := rows.Scan(&name, &size); err != nil {
			b.Fatal(err)
		}
		sizes[name] = size
	}
	return sizes
}

// BenchmarkExposure100k asks, over HTTP and over NATS, which of 100,000 hosts (1,000 package
// sets from the real Debian 12 capture) one advisory exposes: the first page of 100, and a
// fleet's page. Reported: the median answer in ms, and the schema's size.
func BenchmarkExposure100k(b *testing.B) {
	s := start(b, nil)
	sizes := loadFleet(b, s)
	var total int64
	for _, v := range sizes {
		total += v
	}
	b.Logf("storage for %d hosts, %d package sets: total %.1f MB (package_set_members %.1f MB, hosts %.1f MB, package_sets %.1f MB)",
		benchHosts, benchSets, mb(total), mb(sizes["package_set_members"]), mb(sizes["hosts"]), mb(sizes["package_sets"]))

	ctx := context.Background()
	for _, bc := range []struct {
		name string
		ask  func() (int, error)
	}{
		{"http/advisory", func() (int, error) {
			var r query.ExposureResponse
			if code := s.do("GET", "/v1/exposure?advisory_id=DSA-9999-1", nil, &r); code != http.StatusOK {
				return 0, fmt.Errorf("status %d", code)
			}
			return len(r.Hosts), nil
		}},
		{"http/cve-fleet", func() (int, error) {
			var r query.ExposureResponse
			if code := s.do("GET", "/v1/exposure?cve=CVE-2099-0001&fleet=fleet-7", nil, &r); code != http.StatusOK {
				return 0, fmt.Errorf("status %d", code)
			}
			return len(r.Hosts), nil
		}},
		{"micro/advisory", func() (int, error) {
			r, err := s.query.Exposure(ctx, query.ExposureRequest{AdvisoryID: "DSA-9999-1"})
			return len(r.Hosts), err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportMetric(mb(total), "MB-stored")
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				n, err := bc.ask()
				if err != nil {
					b.Fatal(err)
				}
				if n != 100 {
					b.Fatalf("%d hosts on the first page, want 100", n)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
		})
	}
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// BenchmarkExposureWalk100k reads the whole exposure of 100,000 hosts to one advisory, every
// page, as the planner does when it plans a rollout: in grouped pages of up to 10,000 hosts,
// and, for comparison, in pages of 1,000 hosts with their packages (over NATS, decoded).
func BenchmarkExposureWalk100k(b *testing.B) {
	s := start(b, nil)
	loadFleet(b, s)
	ctx := context.Background()
	for _, walk := range []struct {
		name    string
		grouped bool
		limit   int
	}{{"grouped", true, query.MaxGroupedPage}, {"hosts", false, query.MaxPage}} {
		b.Run(walk.name, func(b *testing.B) {
			// Not timed: the inventory reads its copy of the hosts at its start (see LoadHosts).
			if _, err := s.query.Exposure(ctx, query.ExposureRequest{AdvisoryID: "DSA-9999-1", Limit: 1}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				req := query.ExposureRequest{AdvisoryID: "DSA-9999-1", Grouped: walk.grouped, Limit: walk.limit}
				n := 0
				for {
					r, err := s.query.Exposure(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					n += len(r.Hosts)
					for _, g := range r.Groups {
						n += g.Len()
					}
					if r.NextCursor == "" {
						break
					}
					req.Cursor = r.NextCursor
				}
				if n != benchHosts {
					b.Fatalf("%d hosts exposed, want %d", n, benchHosts)
				}
			}
		})
	}
}
