package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/events/query"
)

// exposureFleet registers hosts and pushes their reports:
//
//	deb-a, deb-b  Debian 12, the capture (glibc 2.36-9+deb12u14)
//	deb-fixed     Debian 12, glibc at the fix
//	ubu-1         Ubuntu 12 (sic: same VERSION_ID) with the capture — must not match debian entries
//	woody-1       Debian 3.0 with libapache-mod-ssl 2.8.7-1 (DSA-135 affected, a listed version)
//	woody-2       Debian 3.0 with libapache-mod-ssl 2.8.9-2 (fixed)
//	rails-1       Debian 12 running Rails 7.0.4 (GHSA-8xww-x3g3-6jcv: fixed in 7.0.4.1)
func exposureFleet(t *testing.T, s *sys) {
	tsv := readFile(t, "testdata/debian12-dpkg.tsv")
	glibcFixed := tsv
	for _, b := range []string{"libc-bin", "libc-dev-bin", "libc-devtools", "libc-l10n", "libc6", "libc6-dbg", "libc6-dev", "locales"} {
		glibcFixed = withVersion(glibcFixed, b, "2.36-9+deb12u15")
	}
	woody := "libapache-mod-ssl\t2.8.7-1\ti386\tlibapache-mod-ssl\t2.8.7-1\tii \n"
	reports := map[string][]byte{
		"deb-a":     report("debian", "12", tsv, false),
		"deb-b":     report("debian", "12", tsv, false),
		"deb-fixed": report("debian", "12", glibcFixed, false),
		"ubu-1":     report("ubuntu", "12", tsv, false),
		"woody-1":   report("debian", "3.0", woody, false),
		"woody-2":   report("debian", "3.0", strings.ReplaceAll(woody, "2.8.7-1", "2.8.9-2"), false),
		"rails-1":   report("debian", "12", "", false, "component rails /srv/app", "GEM\n  specs:\n    rails (7.0.4)\n"),
	}
	for id, rep := range reports {
		reg := registration(id, hostKey(t), false)
		if code := s.do("POST", "/v1/hosts", reg, nil); code != http.StatusCreated {
			t.Fatalf("register %s: %d", id, code)
		}
		if code := s.do("POST", "/v1/hosts/"+id+"/report", rep, nil); code != http.StatusOK {
			t.Fatalf("report %s: %d", id, code)
		}
	}
}

// walkExposure asks for every page of req, over NATS, and lists the hosts of every page in
// the order of the answers, those of grouped pages as one host each, named by id only.
func walkExposure(t *testing.T, s *sys, req query.ExposureRequest) []query.ExposedHost {
	t.Helper()
	var out []query.ExposedHost
	for {
		page, err := s.query.Exposure(context.Background(), req)
		if err != nil {
			t.Fatalf("exposure %+v: %v", req, err)
		}
		if req.Grouped && len(page.Hosts) != 0 {
			t.Fatalf("a grouped page lists hosts: %+v", page.Hosts)
		}
		out = append(out, page.Hosts...)
		for _, g := range page.Groups {
			for _, f := range g.Fleets {
				for _, id := range f.HostIDs {
					out = append(out, query.ExposedHost{HostID: id, Fleet: f.Fleet, OS: g.OS, Packages: g.Packages})
				}
			}
		}
		if req.Cursor = page.NextCursor; req.Cursor == "" {
			return out
		}
	}
}

func exposedIDs(r query.ExposureResponse) []string {
	var ids []string
	for _, h := range r.Hosts {
		ids = append(ids, h.HostID)
	}
	return ids
}

func TestExposure(t *testing.T) {
	s := start(t, nil)
	exposureFleet(t, s)
	s.bus.Publish(t, bookwormAdvisory(), "DSA-9999-1")
	s.bus.Publish(t, advisoryFromOSV(t, "testdata/DSA-135.json"), "DSA-135")
	s.bus.Publish(t, advisoryFromOSV(t, "testdata/GHSA-8xww-x3g3-6jcv.json"), "GHSA-8xww-x3g3-6jcv")

	var bookworm query.ExposureResponse
	eventstest.WaitFor(t, 30*time.Second, "advisory stored", func() bool {
		return s.do("GET", "/v1/exposure?advisory_id=DSA-9999-1", nil, &bookworm) == http.StatusOK
	})
	if got := exposedIDs(bookworm); !slices.Equal(got, []string{"deb-a", "deb-b"}) {
		t.Fatalf("DSA-9999-1 exposes %v, want deb-a deb-b", got)
	}
	// Every installed binary of glibc, each with its installed and fixed versions.
	var names []string
	for _, p := range bookworm.Hosts[0].Packages {
		names = append(names, p.Name)
		if p.SourceName != "glibc" || p.Installed != "2.36-9+deb12u14" || p.Fixed != "2.36-9+deb12u15" || p.AdvisoryID != "DSA-9999-1" {
			t.Errorf("exposed package %+v", p)
		}
	}
	if want := []string{"libc-bin", "libc-dev-bin", "libc-devtools", "libc-l10n", "libc6", "libc6-dbg", "libc6-dev", "locales"}; !slices.Equal(names, want) {
		t.Errorf("exposed binaries %v, want %v", names, want)
	}

	// A package set stored after the first answer (the set cache must see it).
	s.do("POST", "/v1/hosts", registration("deb-c", hostKey(t), false), nil)
	s.do("POST", "/v1/hosts/deb-c/report", report("debian", "12", withVersion(readFile(t, "testdata/debian12-dpkg.tsv"), "curl", "7.88.1-10+deb12u15"), false), nil)
	var again query.ExposureResponse
	s.do("GET", "/v1/exposure?advisory_id=DSA-9999-1", nil, &again)
	if got := exposedIDs(again); !slices.Equal(got, []string{"deb-a", "deb-b", "deb-c"}) {
		t.Fatalf("after a new set, DSA-9999-1 exposes %v", got)
	}
	s.do("DELETE", "/v1/hosts/deb-c", nil, nil)

	// By CVE, the same answer.
	var byCVE query.ExposureResponse
	s.do("GET", "/v1/exposure?cve=CVE-2099-0001", nil, &byCVE)
	if !reflect.DeepEqual(byCVE, bookworm) {
		t.Errorf("by CVE differs from by advisory id")
	}

	// A real Debian 3.0 advisory: the listed affected version is exposed, the fixed one not.
	var woody query.ExposureResponse
	eventstest.WaitFor(t, 30*time.Second, "DSA-135 stored", func() bool {
		return s.do("GET", "/v1/exposure?cve=CVE-2002-0653", nil, &woody) == http.StatusOK
	})
	if got := exposedIDs(woody); !slices.Equal(got, []string{"woody-1"}) || woody.Hosts[0].Packages[0].Fixed != "2.8.9-2" {
		t.Fatalf("DSA-135 exposes %+v", woody)
	}

	// A RubyGems advisory matches the Rails component.
	var gem query.ExposureResponse
	eventstest.WaitFor(t, 30*time.Second, "GHSA stored", func() bool {
		return s.do("GET", "/v1/exposure?advisory_id=GHSA-8xww-x3g3-6jcv", nil, &gem) == http.StatusOK
	})
	if got := exposedIDs(gem); !slices.Equal(got, []string{"rails-1"}) || gem.Hosts[0].Packages[0].Fixed != "7.0.4.1" {
		t.Fatalf("GHSA exposes %+v", gem)
	}

	// An explicit affected list needs nothing stored; "no fix yet" reports Fixed "".
	req := query.ExposureRequest{Affected: []events.Affected{{Ecosystem: "debian", Release: "12", Package: "curl"}}, Fleet: "prod-web"}
	var nofix query.ExposureResponse
	if code := s.do("POST", "/v1/exposure", req, &nofix); code != http.StatusOK {
		t.Fatalf("explicit: %d", code)
	}
	if got := exposedIDs(nofix); !slices.Equal(got, []string{"deb-a", "deb-b", "deb-fixed"}) {
		t.Fatalf("no-fix curl exposes %v", got)
	}
	for _, p := range nofix.Hosts[0].Packages {
		if p.Fixed != "" || p.SourceName != "curl" {
			t.Errorf("no-fix package %+v", p)
		}
	}

	// Grouped: hosts exposed alike are listed once with their packages (deb-fixed has another
	// package set, but the same curl); pages count hosts and walk them in the same order.
	grouped := req
	grouped.Grouped, grouped.Limit = true, 2
	var flat []query.ExposedHost
	for range 3 {
		var page query.ExposureResponse
		if code := s.do("POST", "/v1/exposure", grouped, &page); code != http.StatusOK {
			t.Fatalf("grouped: %d", code)
		}
		if len(page.Hosts) != 0 {
			t.Fatalf("a grouped page lists hosts: %+v", page.Hosts)
		}
		viaNATS, err := s.query.Exposure(context.Background(), grouped)
		if err != nil || !reflect.DeepEqual(viaNATS, page) {
			t.Fatalf("micro grouped exposure differs from HTTP (%v):\n%+v\n%+v", err, viaNATS, page)
		}
		for _, g := range page.Groups {
			for _, f := range g.Fleets {
				for _, id := range f.HostIDs {
					flat = append(flat, query.ExposedHost{HostID: id, Fleet: f.Fleet, OS: g.OS, Packages: g.Packages})
				}
			}
		}
		if grouped.Cursor = page.NextCursor; grouped.Cursor == "" {
			break
		}
		if n := len(page.Groups); n != 1 || page.Groups[0].Len() != 2 {
			t.Fatalf("first grouped page: %+v", page.Groups)
		}
	}
	unnamed := slices.Clone(nofix.Hosts)
	for i := range unnamed {
		unnamed[i].Name = "" // the grouped form lists hosts by id
	}
	if !reflect.DeepEqual(flat, unnamed) {
		t.Fatalf("grouped pages flattened differ from the hosts:\n%+v\n%+v", flat, unnamed)
	}
	grouped.Cursor, grouped.Limit = "", 5000
	if code := s.do("POST", "/v1/exposure", grouped, nil); code != http.StatusOK {
		t.Errorf("grouped page of 5000: %d, want 200", code)
	}
	grouped.Grouped = false
	if code := s.do("POST", "/v1/exposure", grouped, nil); code != http.StatusBadRequest {
		t.Errorf("page of 5000 hosts: %d, want 400", code)
	}
	var byGET query.ExposureResponse
	if code := s.do("GET", "/v1/exposure?cve=CVE-2099-0001&grouped=true", nil, &byGET); code != http.StatusOK ||
		len(byGET.Groups) != 1 || byGET.Groups[0].Len() != 2 || byGET.Groups[0].Fleets[0].HostIDs[0] != "deb-a" {
		t.Errorf("grouped GET: %d %+v", code, byGET)
	}
	if code := s.do("GET", "/v1/exposure?cve=CVE-2099-0001&grouped=perhaps", nil, nil); code != http.StatusBadRequest {
		t.Errorf("grouped=perhaps: %d, want 400", code)
	}

	// Grouped pages across three releases (one query each, merged by host id) and with a
	// gem entry (grouped from the hosts' answer), flattened, are the hosts' answer.
	mixed := query.ExposureRequest{Affected: []events.Affected{
		{Ecosystem: "debian", Release: "12", Package: "curl"},
		{Ecosystem: "ubuntu", Release: "12", Package: "curl"},
		{Ecosystem: "debian", Release: "3.0", Package: "libapache-mod-ssl"},
	}, Limit: 2}
	withGem := mixed
	withGem.Affected = append(slices.Clone(mixed.Affected), events.Affected{Ecosystem: events.EcosystemRubyGems, Package: "rails", FixedVersion: "7.0.4.1"})
	for _, req := range []query.ExposureRequest{mixed, withGem} {
		hosts := walkExposure(t, s, req)
		flat := walkExposure(t, s, query.ExposureRequest{Affected: req.Affected, Limit: req.Limit, Grouped: true})
		want := []string{"deb-a", "deb-b", "deb-fixed", "ubu-1", "woody-1", "woody-2"}
		if len(req.Affected) == 4 {
			want = slices.Insert(want, 3, "rails-1")
		}
		var ids []string
		for i := range hosts {
			ids = append(ids, hosts[i].HostID)
			hosts[i].Name = ""
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%d entries expose %v, want %v", len(req.Affected), ids, want)
		}
		if !reflect.DeepEqual(flat, hosts) {
			t.Errorf("%d entries: grouped pages flattened differ from the hosts:\n%+v\n%+v", len(req.Affected), flat, hosts)
		}
	}

	// The planner sends the affected list of the advisory it handles, named by its id.
	req.AdvisoryID = "PLANNED-1"
	var named query.ExposureResponse
	if code := s.do("POST", "/v1/exposure", req, &named); code != http.StatusOK {
		t.Fatalf("named explicit list: %d", code)
	}
	if !slices.Equal(named.AdvisoryIDs, []string{"PLANNED-1"}) || len(named.Hosts) != 3 || named.Hosts[0].Packages[0].AdvisoryID != "PLANNED-1" {
		t.Fatalf("named explicit list answered %+v", named)
	}
	withCVE := req
	withCVE.CVE = "CVE-2099-0001"
	if code := s.do("POST", "/v1/exposure", withCVE, nil); code != http.StatusBadRequest {
		t.Fatalf("cve with an affected list: %d, want 400", code)
	}
	req.AdvisoryID = ""

	// Micro answers equal HTTP answers.
	ctx := context.Background()
	viaNATS, err := s.query.Exposure(ctx, query.ExposureRequest{AdvisoryID: "DSA-9999-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaNATS, bookworm) {
		t.Errorf("micro exposure differs from HTTP:\n%+v\n%+v", viaNATS, bookworm)
	}
	viaNATS, err = s.query.Exposure(ctx, req)
	if err != nil || !reflect.DeepEqual(viaNATS, nofix) {
		t.Errorf("micro explicit exposure differs from HTTP (%v)", err)
	}
	var httpHost query.HostDetail
	s.do("GET", "/v1/hosts/deb-a?packages=true", nil, &httpHost)
	natsHost, err := s.query.Host(ctx, query.HostRequest{ID: "deb-a", WithPackages: true})
	if err != nil || !reflect.DeepEqual(natsHost, httpHost) || len(natsHost.Packages) != 703 {
		t.Errorf("micro host differs from HTTP (%v)", err)
	}
	var remote *query.RemoteError
	if _, err := s.query.Exposure(ctx, query.ExposureRequest{AdvisoryID: "DSA-0000-0"}); !errors.As(err, &remote) || remote.Code != 404 {
		t.Errorf("unknown advisory over NATS: %v, want 404", err)
	}

	// Hosts by package and version range.
	var page query.HostsResponse
	s.do("GET", "/v1/hosts?package=libc6&below_version=2.36-9%2Bdeb12u15", nil, &page)
	var ids []string
	for _, h := range page.Hosts {
		ids = append(ids, h.ID)
	}
	if !slices.Equal(ids, []string{"deb-a", "deb-b", "ubu-1"}) {
		t.Errorf("libc6 < u15 on %v", ids)
	}

	// Withdrawn: nothing exposed any more.
	s.bus.Publish(t, events.AdvisoryWithdrawn{AdvisoryID: "DSA-9999-1", Revision: 2, Withdrawn: time.Now()}, "DSA-9999-1")
	eventstest.WaitFor(t, 30*time.Second, "withdrawn", func() bool {
		var r query.ExposureResponse
		s.do("GET", "/v1/exposure?advisory_id=DSA-9999-1", nil, &r)
		return len(r.Hosts) == 0
	})
}

func TestQueryPaginationAuthAndErrors(t *testing.T) {
	s := start(t, nil)
	for i := range 25 {
		reg := registration(fmt.Sprintf("h-%02d", i), hostKey(t), false)
		if i%2 == 0 {
			reg.Fleet = "even"
		}
		s.do("POST", "/v1/hosts", reg, nil)
	}
	// Pages of 10: stable order, no host twice, all hosts; a host added behind the cursor
	// during the walk does not shift later pages.
	var all []string
	cursor := ""
	for range 10 {
		var page query.HostsResponse
		if code := s.do("GET", "/v1/hosts?limit=10&cursor="+cursor, nil, &page); code != http.StatusOK {
			t.Fatalf("page: %d", code)
		}
		for _, h := range page.Hosts {
			all = append(all, h.ID)
		}
		if len(all) == 10 {
			s.do("POST", "/v1/hosts", registration("h-00a", hostKey(t), false), nil)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(all) != 25 || !slices.IsSorted(all) || slices.Contains(all, "h-00a") {
		t.Fatalf("walked %d hosts: %v", len(all), all)
	}
	// The same walk over NATS gives the same pages.
	req := query.HostsRequest{Fleet: "even", Limit: 5}
	var viaHTTP query.HostsResponse
	s.do("GET", "/v1/hosts?fleet=even&limit=5", nil, &viaHTTP)
	viaNATS, err := s.query.Hosts(context.Background(), req)
	if err != nil || !reflect.DeepEqual(viaNATS, viaHTTP) || len(viaNATS.Hosts) != 5 {
		t.Fatalf("micro hosts differ from HTTP (%v)", err)
	}
	req.Cursor = viaNATS.NextCursor
	next, _ := s.query.Hosts(context.Background(), req)
	if len(next.Hosts) != 5 || next.Hosts[0].ID <= viaNATS.Hosts[4].ID {
		t.Fatalf("second page over NATS = %+v", next)
	}

	// Authentication: none, wrong, right; ops endpoints and the description stay open.
	var e query.Error
	if code := s.doToken("", "GET", "/v1/hosts", nil, &e); code != http.StatusUnauthorized || e.Code != 401 {
		t.Errorf("no token: %d %+v", code, e)
	}
	if code := s.doToken("wrong-token-0123456789", "GET", "/v1/hosts", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	for _, open := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		if code := s.doToken("", "GET", open, nil, nil); code != http.StatusOK {
			t.Errorf("GET %s without token: %d", open, code)
		}
	}

	// Bad queries: 400 naming the field.
	for path, field := range map[string]string{
		"/v1/hosts?limit=5000":                 "limit",
		"/v1/hosts?limit=x":                    "limit",
		"/v1/hosts?cursor=bm9wZQ":              "cursor",
		"/v1/hosts?reboot_required=maybe":      "reboot_required",
		"/v1/hosts?not_scanned_for=yesterday":  "not_scanned_for",
		"/v1/hosts?package=Bad_Name":           "package",
		"/v1/hosts?package=curl&min_version=_": "min_version",
		"/v1/hosts?colour=blue":                "colour",
		"/v1/exposure":                         "advisory_id",
		"/v1/exposure?cve=DSA-1":               "cve",
	} {
		var e query.Error
		if code := s.do("GET", path, nil, &e); code != http.StatusBadRequest || !strings.Contains(e.Message, field) {
			t.Errorf("GET %s: %d %q, want 400 naming %s", path, code, e.Message, field)
		}
	}
	if code := s.do("POST", "/v1/exposure", `{"advisory":"x"}`, &e); code != http.StatusBadRequest || !strings.Contains(e.Message, "advisory") {
		t.Errorf("unknown body field: %d %+v", code, e)
	}
	if code := s.do("GET", "/v1/hosts/nope", nil, &e); code != http.StatusNotFound {
		t.Errorf("unknown host: %d", code)
	}
	if code := s.do("GET", "/v1/exposure?advisory_id=DSA-0000-0", nil, &e); code != http.StatusNotFound {
		t.Errorf("unknown advisory: %d", code)
	}
	var remote *query.RemoteError
	if _, err := s.query.Hosts(context.Background(), query.HostsRequest{Limit: 5000}); !errors.As(err, &remote) || remote.Code != 400 {
		t.Errorf("bad limit over NATS: %v", err)
	}
}

// TestOpenAPIRoutesExist checks every path and method of openapi.yaml against the server:
// a route that does not exist answers 404 "no route" (or 405), which the test rejects.
func TestOpenAPIRoutesExist(t *testing.T) {
	s := start(t, nil)
	s.do("POST", "/v1/hosts", registration("x", hostKey(t), false), nil)
	spec := readFile(t, "openapi.yaml")
	paths := regexp.MustCompile(`(?m)^  (/[^:]*):\n((?:    .*\n|\n)*)`).FindAllStringSubmatch(spec, -1)
	if len(paths) < 7 {
		t.Fatalf("found %d paths in openapi.yaml", len(paths))
	}
	n := 0
	for _, p := range paths {
		path := strings.ReplaceAll(p[1], "{id}", "x")
		for _, m := range regexp.MustCompile(`(?m)^    (get|put|post|delete):`).FindAllStringSubmatch(p[2], -1) {
			method := strings.ToUpper(m[1])
			var e query.Error
			var out any = &e
			if path == "/openapi.yaml" {
				out = nil
			}
			code := s.do(method, path, nil, out)
			if code == http.StatusMethodNotAllowed || strings.HasPrefix(e.Message, "no route") {
				t.Errorf("%s %s (from openapi.yaml) does not exist: %d %s", method, p[1], code, e.Message)
			}
			n++
		}
	}
	if n < 12 {
		t.Errorf("checked %d operations", n)
	}
}
