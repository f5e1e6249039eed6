package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

var readFile = os.ReadFile

func parseTags(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, t := range in {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, usagef("--tag %q: want key=value", t)
		}
		out[k] = v
	}
	return out, nil
}

func hostsCmd(a *App) *cobra.Command {
	var req query.HostsRequest
	var tagList []string
	var reboot bool
	var stale time.Duration
	var all bool
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List hosts (filters combine)",
		Args:  args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.Tags, err = parseTags(tagList); err != nil {
				return err
			}
			if reboot {
				req.RebootRequired = &reboot
			}
			req.NotScannedFor = stale
			c, err := a.client()
			if err != nil {
				return err
			}
			var hosts []query.Host
			for {
				ctx, cancel := a.ctx(cmd)
				page, err := c.Hosts(ctx, req)
				cancel()
				if err != nil {
					return fmt.Errorf("list hosts: %w", err)
				}
				hosts = append(hosts, page.Hosts...)
				if !all || page.NextCursor == "" {
					break
				}
				req.Cursor = page.NextCursor
			}
			return a.render(hosts, func(w io.Writer) error { return RenderHosts(w, hosts, a.now()) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Fleet, "fleet", "", "only this fleet")
	f.StringArrayVar(&tagList, "tag", nil, "only hosts with this tag, key=value (repeatable)")
	f.StringVar(&req.Package, "package", "", "only hosts with this binary package installed")
	f.BoolVar(&reboot, "reboot-required", false, "only hosts waiting for a reboot")
	f.DurationVar(&stale, "stale", 0, "only hosts not scanned for this long (24h)")
	f.IntVar(&req.Limit, "limit", 100, "hosts per page")
	f.BoolVar(&all, "all", false, "fetch every page")
	cmd.AddCommand(importCmd(a))
	return cmd
}

func importCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "import <hosts.yaml>",
		Short: "Import a hosts file into the inventory (all or nothing)",
		Args:  args(1, "a hosts file"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			body, err := readFile(argv[0])
			if err != nil {
				return fmt.Errorf("read %s: %w", argv[0], err)
			}
			if a.opts.Token == "" {
				return usagef("hosts import needs the inventory token: PATCHFLEET_INVENTORY_TOKEN or PATCHFLEET_INVENTORY_TOKEN_FILE")
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.opts.InventoryURL, "/")+"/v1/hosts/import", bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("import %s: %w", argv[0], err)
			}
			req.Header.Set("Content-Type", "application/yaml")
			req.Header.Set("Authorization", "Bearer "+a.opts.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("import %s: %w", argv[0], err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if resp.StatusCode != http.StatusOK {
				var e query.Error
				if json.Unmarshal(data, &e) == nil && e.Message != "" {
					return fmt.Errorf("import %s: %d %s", argv[0], resp.StatusCode, e.Message)
				}
				return fmt.Errorf("import %s: http %d", argv[0], resp.StatusCode)
			}
			var out struct {
				Hosts   int `json:"hosts"`
				Created int `json:"created"`
			}
			if err := json.Unmarshal(data, &out); err != nil {
				return fmt.Errorf("import %s: decode answer: %w", argv[0], err)
			}
			return a.render(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "imported %d hosts (%d new)\n", out.Hosts, out.Created)
				return err
			})
		},
	}
}

func hostCmd(a *App) *cobra.Command {
	var withPackages bool
	cmd := &cobra.Command{
		Use:   "host <name|id>",
		Short: "Show one host",
		Args:  args(1, "a host name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			h, err := c.Host(ctx, query.HostRequest{ID: argv[0], WithPackages: withPackages})
			if err != nil {
				return fmt.Errorf("host %s: %w", argv[0], err)
			}
			return a.render(h, func(w io.Writer) error { return RenderHost(w, h, a.now()) })
		},
	}
	cmd.Flags().BoolVar(&withPackages, "packages", false, "include installed packages (json output)")
	return cmd
}

func exposedCmd(a *App) *cobra.Command {
	var fleet string
	cmd := &cobra.Command{
		Use:   "exposed <CVE|advisory>",
		Short: "Hosts an advisory or CVE exposes",
		Args:  args(1, "a CVE or advisory id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := query.ExposureRequest{AdvisoryID: argv[0], Fleet: fleet, Limit: 1000}
			if strings.HasPrefix(strings.ToUpper(argv[0]), "CVE-") {
				req = query.ExposureRequest{CVE: strings.ToUpper(argv[0]), Fleet: fleet, Limit: 1000}
			}
			var hosts []query.ExposedHost
			for {
				ctx, cancel := a.ctx(cmd)
				page, err := c.Exposure(ctx, req)
				cancel()
				if err != nil {
					return fmt.Errorf("exposure of %s: %w", argv[0], err)
				}
				hosts = append(hosts, page.Hosts...)
				if page.NextCursor == "" {
					break
				}
				req.Cursor = page.NextCursor
			}
			return a.render(hosts, func(w io.Writer) error { return RenderExposure(w, hosts) })
		},
	}
	cmd.Flags().StringVar(&fleet, "fleet", "", "only this fleet")
	return cmd
}

func advisoriesCmd(a *App) *cobra.Command {
	var since string
	var limit int
	cmd := &cobra.Command{
		Use:   "advisories",
		Short: "Advisories modified since a time",
		Args:  args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := parseSince(since, a.now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			out, err := c.AdvisoriesSince(ctx, query.AdvisoriesSinceRequest{Since: t, Limit: limit})
			if err != nil {
				return fmt.Errorf("advisories since %s: %w", t.Format(time.RFC3339), err)
			}
			return a.render(out.Advisories, func(w io.Writer) error { return RenderAdvisories(w, out.Advisories) })
		},
	}
	cmd.Flags().StringVar(&since, "since", "168h", "a duration back from now (24h) or a time (RFC 3339, 2006-01-02)")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many")
	return cmd
}

// parseSince reads a duration back from now or an absolute time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("--since %q: want a duration (24h) or a time (2006-01-02, RFC 3339)", s)
}

func rolloutsCmd(a *App) *cobra.Command {
	var req query.RolloutsRequest
	cmd := &cobra.Command{
		Use:   "rollouts",
		Short: "List rollouts, newest first",
		Args:  args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			out, err := c.Rollouts(ctx, req)
			if err != nil {
				return fmt.Errorf("list rollouts: %w", err)
			}
			return a.render(out.Rollouts, func(w io.Writer) error { return RenderRollouts(w, out.Rollouts) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Fleet, "fleet", "", "only this fleet")
	f.StringVar(&req.State, "state", "", "only this state")
	f.StringVar(&req.AdvisoryID, "advisory", "", "only rollouts for this advisory")
	f.BoolVar(&req.Open, "open", false, "only rollouts that have not ended")
	f.IntVar(&req.Limit, "limit", 50, "at most this many")
	return cmd
}

func rolloutCmd(a *App) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "rollout <id>",
		Short: "Show a rollout; --watch follows it live until it ends",
		Args:  args(1, "a rollout id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			d, err := c.Rollout(ctx, query.RolloutRequest{ID: argv[0]})
			cancel()
			if err != nil {
				return fmt.Errorf("rollout %s: %w", argv[0], err)
			}
			if watch {
				return a.watch(cmd.Context(), d)
			}
			return a.render(d, func(w io.Writer) error { return RenderRollout(w, d) })
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout's events live; exits when it ends (1 unless it completed without failures)")
	return cmd
}

var decisionHelp = map[string]string{
	"approve": "Approve a rollout's plan (the current one unless --plan-hash names it)",
	"reject":  "Reject a rollout's plan",
	"pause":   "Pause a rollout: jobs in flight finish, nothing new starts",
	"resume":  "Resume a paused or halted rollout",
	"cancel":  "Cancel a rollout",
}

func decisionCmd(a *App, verb string) *cobra.Command {
	var hash, reason string
	cmd := &cobra.Command{
		Use:   verb + " <rollout>",
		Short: decisionHelp[verb],
		Args:  args(1, "a rollout id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if a.opts.As == "" {
				return usagef("who decides? set --as or PATCHFLEET_USER")
			}
			id := argv[0]
			d := events.Decision{RolloutID: id, By: a.opts.As, Reason: reason}
			var e events.Event
			switch verb {
			case "approve":
				if hash == "" {
					c, err := a.client()
					if err != nil {
						return err
					}
					ctx, cancel := a.ctx(cmd)
					r, err := c.Rollout(ctx, query.RolloutRequest{ID: id})
					cancel()
					if err != nil {
						return fmt.Errorf("rollout %s: %w", id, err)
					}
					if r.State != query.RolloutAwaitingApproval {
						return fmt.Errorf("rollout %s is %s, not awaiting approval", id, r.State)
					}
					hash = r.PlanHash
				}
				e = events.RolloutApproved{Decision: d, PlanHash: hash}
			case "reject":
				e = events.RolloutRejected{Decision: d, PlanHash: hash}
			case "pause":
				e = events.RolloutPaused{Decision: d}
			case "resume":
				e = events.RolloutResumed{Decision: d}
			case "cancel":
				e = events.RolloutCancelled{Decision: d}
			}
			msg, err := a.publish(cmd, e, id)
			if err != nil {
				return fmt.Errorf("%s rollout %s: %w", verb, id, err)
			}
			out := map[string]string{"event_id": msg, "rollout_id": id, "decision": verb, "by": a.opts.As, "plan_hash": hash}
			return a.render(out, func(w io.Writer) error {
				s := fmt.Sprintf("%s rollout %s as %s", verb, id, a.opts.As)
				if hash != "" {
					s += " (plan " + hash + ")"
				}
				_, err := fmt.Fprintln(w, s)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	if verb == "approve" || verb == "reject" {
		cmd.Flags().StringVar(&hash, "plan-hash", "", "the plan decided on (approve: the current plan when empty)")
	}
	return cmd
}

// publish sends an event with the rollout (or request) as correlation id; it returns the
// event id.
func (a *App) publish(cmd *cobra.Command, e events.Event, correlation string) (string, error) {
	js, err := a.js()
	if err != nil {
		return "", err
	}
	m, err := events.New(e, events.Origin{Producer: "patchfleet-cli", CorrelationID: correlation}, a.now())
	if err != nil {
		return "", err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	return m.ID, events.Publish(ctx, js, m)
}

// requestFlags are the flags of request and preview.
type requestFlags struct {
	fleet, reboot, reason string
	tags, hosts           []string
	unattended            bool
}

func (f *requestFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.fleet, "fleet", "", "the fleet")
	fl.StringArrayVar(&f.tags, "tag", nil, "hosts with this tag, key=value (repeatable)")
	fl.StringArrayVar(&f.hosts, "host", nil, "this host (repeatable)")
	fl.StringVar(&f.reboot, "reboot", "", "override the fleet's reboot policy: never, if-required, always")
	fl.BoolVar(&f.unattended, "unattended", false, "also configure unattended-upgrades for security origins")
	fl.StringVar(&f.reason, "reason", "", "why")
}

func (f *requestFlags) event(kind, by string) (events.RolloutRequested, error) {
	switch kind {
	case events.KindSecurity, events.KindFull, events.KindDocker, events.KindUnattended:
	default:
		return events.RolloutRequested{}, usagef("kind %q: want security, full, docker or unattended", kind)
	}
	tags, err := parseTags(f.tags)
	if err != nil {
		return events.RolloutRequested{}, err
	}
	if f.fleet == "" && len(tags) == 0 && len(f.hosts) == 0 {
		return events.RolloutRequested{}, usagef("say which hosts: --fleet, --tag or --host")
	}
	if f.reboot != "" && f.reboot != events.RebootNever && f.reboot != events.RebootIfRequired && f.reboot != events.RebootAlways {
		return events.RolloutRequested{}, usagef("--reboot %q: want never, if-required or always", f.reboot)
	}
	return events.RolloutRequested{RequestID: events.NewID(), RequestedBy: by, Kind: kind,
		Selector: events.HostSelector{Fleet: f.fleet, Tags: tags, Hosts: f.hosts}, Reboot: f.reboot,
		ConfigureUnattended: f.unattended, Reason: f.reason}, nil
}

func requestCmd(a *App) *cobra.Command {
	var f requestFlags
	cmd := &cobra.Command{
		Use:       "request security|full|docker|unattended",
		Short:     "Ask for an on-demand rollout",
		Args:      args(1, "security, full, docker or unattended"),
		ValidArgs: []string{"security", "full", "docker", "unattended"},
		RunE: func(cmd *cobra.Command, argv []string) error {
			if a.opts.As == "" {
				return usagef("who asks? set --as or PATCHFLEET_USER")
			}
			e, err := f.event(argv[0], a.opts.As)
			if err != nil {
				return err
			}
			if _, err := a.publish(cmd, e, e.RequestID); err != nil {
				return fmt.Errorf("request %s rollout: %w", argv[0], err)
			}
			return a.render(e, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "requested %s rollout %s (follow it with: patchfleet rollouts --open)\n", e.Kind, e.RequestID)
				return err
			})
		},
	}
	f.add(cmd)
	return cmd
}

func previewCmd(a *App) *cobra.Command {
	var f requestFlags
	var advisory string
	cmd := &cobra.Command{
		Use:   "preview [security|full|docker|unattended] [--advisory ID]",
		Short: "What the planner would do, without doing it",
		Args: func(cmd *cobra.Command, argv []string) error {
			if (advisory == "") == (len(argv) == 0) || len(argv) > 1 {
				return usagef("preview: give a kind with its selector flags, or --advisory")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var req query.PreviewRequest
			if advisory != "" {
				ctx, cancel := a.ctx(cmd)
				adv, err := c.Advisory(ctx, query.AdvisoryRequest{ID: advisory})
				cancel()
				if err != nil {
					return fmt.Errorf("advisory %s: %w", advisory, err)
				}
				req.Advisory = &adv.SecurityAdvisoryPublished
			} else {
				e, err := f.event(argv[0], a.opts.As+" (preview)")
				if err != nil {
					return err
				}
				req.Request = &e
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			out, err := c.Preview(ctx, req)
			if err != nil {
				return fmt.Errorf("preview: %w", err)
			}
			return a.render(out, func(w io.Writer) error { return RenderPreview(w, out) })
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&advisory, "advisory", "", "preview the plans for this advisory")
	return cmd
}

func policyCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Fleet policies"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check <file>",
		Short: "Validate a policy file with the planner (exit 1 when it has problems)",
		Args:  args(1, "a policy file"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			body, err := readFile(argv[0])
			if err != nil {
				return fmt.Errorf("read %s: %w", argv[0], err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			out, err := c.PolicyCheck(ctx, query.PolicyCheckRequest{Name: argv[0], Content: string(body)})
			if err != nil {
				return fmt.Errorf("check %s: %w", argv[0], err)
			}
			if err := a.render(out, func(w io.Writer) error {
				for _, p := range out.Problems {
					fmt.Fprintf(w, "%s: %s\n", argv[0], p)
				}
				if out.Valid {
					fmt.Fprintf(w, "%s: valid, %d fleets\n", argv[0], len(out.Fleets))
				}
				return nil
			}); err != nil {
				return err
			}
			if !out.Valid {
				return fmt.Errorf("%s: %d problems", argv[0], len(out.Problems))
			}
			return nil
		},
	})
	return cmd
}
