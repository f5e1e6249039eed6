package console

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/eventstest"
	"github.com/patchfleet/patchfleet/tools/console/view"
)

// client talks to the console like a browser: one cookie, no automatic redirects.
type client struct {
	t      *testing.T
	h      *harness
	cookie *http.Cookie
	csrf   string
}

func (h *harness) client(t *testing.T) *client { return &client{t: t, h: h} }

func (c *client) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.h.web.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login signs in with token and keeps the session cookie and CSRF token.
func (c *client) login(token string) *http.Response {
	c.t.Helper()
	resp, _ := c.do("POST", "/login", url.Values{"token": {token}, "next": {"/rollouts"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("sign-in answered %s", resp.Status)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			c.cookie = ck
		}
	}
	if c.cookie == nil {
		c.t.Fatal("sign-in set no session cookie")
	}
	_, page := c.do("GET", "/rollouts", nil, nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatal("signed-in page carries no CSRF token")
	}
	c.csrf = m[1]
	return resp
}

// decisions returns the decision events on the ROLLOUTS stream.
func (h *harness) decisions(t *testing.T) []events.Envelope {
	var out []events.Envelope
	for _, env := range h.bus.Envelopes(t, events.StreamRollouts) {
		switch env.Type {
		case "RolloutApproved", "RolloutPaused", "RolloutResumed", "RolloutCancelled":
			out = append(out, env)
		}
	}
	return out
}

func TestSignInIsRequired(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	for _, path := range []string{"/", "/rollouts/r-running", "/hosts/web-2", "/compliance"} {
		resp, _ := c.do("GET", path, nil, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without a session: %s to %q, want a redirect to sign in", path, resp.Status, resp.Header.Get("Location"))
		}
	}
	for _, path := range []string{"/rollouts/r-running/live", "/hosts/web-2/tail", "/compliance.csv", "/jobs/job-1/log"} {
		if resp, _ := c.do("GET", path, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %s, want 401", path, resp.Status)
		}
	}
	resp, _ := c.do("POST", "/rollouts/r-waiting/approve", url.Values{"plan_hash": {planHash}, "csrf": {"x"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("approve without a session: %s, want 401", resp.Status)
	}
	if d := h.decisions(t); len(d) != 0 {
		t.Errorf("decisions published without a session: %v", d)
	}
}

func TestSignInSetsAStrictHttpOnlyCookie(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	resp, body := c.do("POST", "/login", url.Values{"token": {"not-a-valid-token-at-all"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not valid") {
		t.Fatalf("wrong token: %s, cookies %v", resp.Status, resp.Cookies())
	}
	resp = c.login(aliceToken)
	ck := c.cookie
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure on plain HTTP", ck)
	}
	if strings.Contains(ck.Value, aliceToken) || len(ck.Value) < 40 {
		t.Errorf("session cookie value %q is not a random id", ck.Value)
	}
	if loc := resp.Header.Get("Location"); loc != "/rollouts" {
		t.Errorf("after sign-in: redirect to %q, want /rollouts", loc)
	}
	// An off-site next is not followed.
	c2 := h.client(t)
	resp, _ = c2.do("POST", "/login", url.Values{"token": {bobToken}, "next": {"//evil.example/x"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("next=//evil.example: redirect to %q, want /", loc)
	}
	// Signing out ends the session on the server.
	old := *c.cookie
	if resp, _ := c.do("POST", "/logout", url.Values{"csrf": {c.csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", resp.Status)
	}
	c.cookie = &old
	if resp, _ := c.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the old cookie still works after signing out: %s", resp.Status)
	}
	if logs := h.logs.String(); strings.Contains(logs, aliceToken) || strings.Contains(logs, bobToken) || strings.Contains(logs, "not-a-valid-token") {
		t.Errorf("a token appears in the logs:\n%s", logs)
	}
}

func TestSecureCookieBehindTLS(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.SecureCookies = true })
	c := h.client(t)
	c.login(aliceToken)
	if !c.cookie.Secure {
		t.Error("cookie not Secure with SecureCookies")
	}
}

func TestActionsNeedTheCSRFToken(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	c.login(aliceToken)
	for name, form := range map[string]url.Values{
		"missing": {"plan_hash": {planHash}},
		"wrong":   {"plan_hash": {planHash}, "csrf": {c.csrf + "x"}},
		"other":   {"plan_hash": {planHash}, "csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
	} {
		resp, body := c.do("POST", "/rollouts/r-waiting/approve", form, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("%s CSRF token: %s %q, want 403", name, resp.Status, body)
		}
	}
	// A cross-site request is refused before the token is even looked at.
	resp, _ := c.do("POST", "/rollouts/r-waiting/approve", url.Values{"plan_hash": {planHash}, "csrf": {c.csrf}},
		map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site approve: %s, want 403", resp.Status)
	}
	resp, _ = c.do("POST", "/rollouts/r-waiting/approve", url.Values{"plan_hash": {planHash}, "csrf": {c.csrf}},
		map[string]string{"Origin": "https://evil.example"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("approve from another origin: %s, want 403", resp.Status)
	}
	if d := h.decisions(t); len(d) != 0 {
		t.Errorf("decisions published without a valid CSRF token: %v", d)
	}
}

func TestOnlyApproversApprove(t *testing.T) {
	h := startHarness(t, nil)
	bob := h.client(t)
	bob.login(bobToken)
	for _, verb := range []string{"approve", "resume", "cancel"} {
		resp, body := bob.do("POST", "/rollouts/r-waiting/"+verb, url.Values{"plan_hash": {planHash}, "csrf": {bob.csrf}}, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "bob is not an approver of fleet prod-db") {
			t.Errorf("bob %s: %s, want 403 naming the rule", verb, resp.Status)
		}
	}
	if d := h.decisions(t); len(d) != 0 {
		t.Fatalf("a non-approver's decision was published: %v", d)
	}
	// Pausing only stops new work: anyone signed in may (the ChatOps rule).
	if resp, _ := bob.do("POST", "/rollouts/r-running/pause", url.Values{"csrf": {bob.csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob pause: %s", resp.Status)
	}
	d := h.decisions(t)
	if len(d) != 1 || d[0].Type != "RolloutPaused" || d[0].CorrelationID != "r-running" || d[0].Producer != Producer {
		t.Fatalf("after bob's pause: %+v", d)
	}
}

func TestApprovalNamesThePlanHash(t *testing.T) {
	h := startHarness(t, nil)
	alice := h.client(t)
	alice.login(aliceToken)
	resp, body := alice.do("POST", "/rollouts/r-waiting/approve", url.Values{"plan_hash": {"0ld0ld0ld0ld"}, "csrf": {alice.csrf}}, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "not the plan") {
		t.Errorf("approving a stale plan: %s, want 409", resp.Status)
	}
	resp, _ = alice.do("POST", "/rollouts/r-waiting/approve", url.Values{"plan_hash": {planHash}, "csrf": {alice.csrf}, "reason": {"reviewed"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/rollouts/r-waiting" {
		t.Fatalf("approve: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	d := h.decisions(t)
	if len(d) != 1 || d[0].Type != "RolloutApproved" {
		t.Fatalf("decisions: %+v", d)
	}
	var e events.RolloutApproved
	if err := events.DecodeData(d[0], &e); err != nil {
		t.Fatal(err)
	}
	if e.PlanHash != planHash || e.By != "alice" || e.RolloutID != "r-waiting" || !strings.Contains(e.Reason, "reviewed") {
		t.Errorf("approval %+v", e)
	}
	_, page := alice.do("GET", "/rollouts/r-waiting", nil, nil)
	if !strings.Contains(page, "You approved plan "+planHash[:12]) {
		t.Error("the rollout page does not confirm the approval")
	}
	// A rollout not awaiting approval cannot be approved.
	resp, _ = alice.do("POST", "/rollouts/r-running/approve", url.Values{"plan_hash": {"5d1e0c7a9b3f"}, "csrf": {alice.csrf}}, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("approving a running rollout: %s, want 409", resp.Status)
	}
}

func TestPagesRender(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	c.login(aliceToken)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{`id="t-exposed">4<`, "of 5 hosts", "waiting for a reboot", "DSA-5001-1", "USN-6409-1", "prod-web", "r-running", "<svg class=\"chart\"", "old-1.example.net"}},
		{"/rollouts/r-running", []string{`data-host="web-2" data-state="dispatched"`, "Canary", "1 of 3 hosts done", "0 of 1 tolerated failures used", "Approvers of fleet prod-web: alice"}},
		{"/rollouts/r-waiting", []string{"awaiting_approval", `name="plan_hash" value="` + planHash + `"`, "Approve plan " + planHash[:12]}},
		{"/advisories/DSA-5001-1", []string{"openssl: security update", "3.0.15-1~deb12u1", "web-2.example.net", "3.0.14-1~deb12u1", "r-running", "CVE-2024-5535"}},
		{"/hosts/db-1", []string{"reboot required", "linux-image-6.1.0-26-amd64", "docker", "27.3.1", "USN-6409-1", "libssl3"}},
		{"/hosts/db-1?q=ngin", []string{"nginx", "1 of 4"}},
		{"/hosts?reboot=1", []string{"db-1.example.net"}},
		{"/compliance?by=host", []string{"web-2", "Per host", "Download CSV", `href="/compliance.csv?by=host"`}},
		{"/advisories?q=CVE-2024-5535", nil},
	} {
		resp, body := c.do("GET", tc.path, nil, nil)
		if resp.StatusCode != http.StatusOK && !(tc.want == nil && resp.StatusCode == http.StatusSeeOther) {
			t.Errorf("GET %s: %s\n%s", tc.path, resp.Status, body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: page lacks %q", tc.path, w)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
		if strings.Contains(body, `href="javascript:`) || strings.Contains(body, "alert(1)") || strings.Contains(body, aliceToken) {
			t.Errorf("GET %s: page carries an unsafe link or a token", tc.path)
		}
	}
	if resp, body := c.do("GET", "/hosts/nope", nil, nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no such host") {
		t.Errorf("unknown host: %s", resp.Status)
	}
	if resp, _ := c.do("GET", "/static/console.js", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("console.js: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
}

func TestComplianceExportsCSV(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	c.login(aliceToken)
	resp, body := c.do("GET", "/compliance.csv?advisory=DSA-5001-1", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("csv: %s %v", resp.Status, resp.Header)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(view.ComplianceHeader, ",") {
		t.Fatalf("csv rows %v", rows)
	}
	if rows[1][0] != "DSA-5001-1" || rows[1][1] != "web-1" || rows[1][5] == "" || rows[2][5] != "" {
		t.Errorf("csv rows %v: want web-1 patched, web-2 open", rows[1:])
	}
	_, all := c.do("GET", "/compliance.csv", nil, nil)
	if !strings.Contains(all, `"'=HYPERLINK(""x"")"`) {
		t.Errorf("a formula-looking advisory id is not neutralised:\n%s", all)
	}
}

// sseReader reads Server-Sent Events.
type sseReader struct{ r *bufio.Reader }

func (s sseReader) next(t *testing.T) (string, string) {
	t.Helper()
	var ev, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			ev = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && ev != "":
			return ev, data
		}
	}
}

func (c *client) stream(path string) (sseReader, func()) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", c.h.web.URL+path, nil)
	req.AddCookie(c.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		c.t.Fatalf("GET %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
	}
	return sseReader{bufio.NewReader(resp.Body)}, func() { cancel(); resp.Body.Close() }
}

func TestRolloutUpdatesLive(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	c.login(aliceToken)
	s, stop := c.stream("/rollouts/r-running/live")
	defer stop()
	state := func() view.RolloutView {
		ev, data := s.next(t)
		if ev != "state" {
			t.Fatalf("event %q", ev)
		}
		var v view.RolloutView
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	hostState := func(v view.RolloutView, id string) string {
		for _, hr := range v.Hosts {
			if hr.HostID == id {
				return hr.State
			}
		}
		return ""
	}
	v := state()
	if hostState(v, "web-2") != "dispatched" || v.Done != 1 {
		t.Fatalf("first state: web-2 %s, done %d", hostState(v, "web-2"), v.Done)
	}
	h.bus.Publish(t, events.UpgradeCompleted{JobID: "job-2", RolloutID: "r-running", HostID: "web-2", RebootPending: true}, "r-running")
	v = state()
	if hostState(v, "web-2") != "succeeded" || v.Done != 2 || v.Waves[1].Succeeded != 1 {
		t.Fatalf("after UpgradeCompleted: web-2 %s, done %d, wave 1 %+v", hostState(v, "web-2"), v.Done, v.Waves[1])
	}
	h.bus.Publish(t, events.UpgradeFailed{JobID: "job-3", RolloutID: "r-running", HostID: "web-3", Reason: events.FailAptError, Message: "E: broken"}, "r-running")
	v = state()
	if hostState(v, "web-3") != "failed" || v.Budget.Used != 1 || v.Budget.Spent {
		t.Fatalf("after UpgradeFailed: web-3 %s, budget %+v", hostState(v, "web-3"), v.Budget)
	}
	// The host history follows the same events.
	eventstest.WaitFor(t, 10*time.Second, "web-2's upgrade in its history", func() bool {
		u := h.console.Feed.Upgrades("web-2")
		return len(u) == 1 && u[0].Status == "succeeded"
	})
}

func TestOutputTail(t *testing.T) {
	h := startHarness(t, nil)
	c := h.client(t)
	c.login(aliceToken)
	s, stop := c.stream("/hosts/web.2/tail")
	defer stop()
	if ev, _ := s.next(t); ev != "open" {
		t.Fatalf("first event %q", ev)
	}
	if err := h.bus.Conn.Publish("pf.logs.web_2", []byte("Unpacking libssl3 (3.0.15-1~deb12u1) ...\n")); err != nil {
		t.Fatal(err)
	}
	ev, data := s.next(t)
	var chunk logChunk
	_ = json.Unmarshal([]byte(data), &chunk)
	if ev != "chunk" || !strings.Contains(chunk.Text, "Unpacking libssl3") {
		t.Fatalf("chunk %q %q", ev, data)
	}
}
