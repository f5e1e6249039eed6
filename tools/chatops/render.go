package chatops

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/command"
	"github.com/patchfleet/patchfleet/tools/chatops/progress"
	"github.com/patchfleet/patchfleet/tools/chatops/slack"
)

// The messages the bot posts. Each is a pure function of what it shows; Text is the
// fallback for notifications and for webhooks that do not render blocks.

// maxSection keeps a section's text under Slack's 3000-character limit.
const maxSection = 2900

// esc escapes the three characters mrkdwn treats as markup.
func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func section(text string) slack.Block {
	return slack.Block{Type: "section", Text: slack.Markdown(clip(text, maxSection))}
}

func contextBlock(text string) slack.Block {
	return slack.Block{Type: "context", Elements: []slack.Element{{Type: "mrkdwn", Text: clip(text, maxSection)}}}
}

// code wraps text in a code block; backtick runs are broken so they cannot close it.
func code(text string) string {
	return "```\n" + strings.ReplaceAll(text, "```", "`\u200b``") + "\n```"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// tail keeps the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// AdvisoryMessage announces an advisory that exposes hosts: how many, per fleet.
func AdvisoryMessage(a events.SecurityAdvisoryPublished, perFleet map[string]int) slack.Message {
	total := 0
	for _, n := range perFleet {
		total += n
	}
	title := a.AdvisoryID
	if a.Title != "" {
		title += ": " + a.Title
	}
	var lines []string
	for _, f := range slices.Sorted(maps.Keys(perFleet)) {
		lines = append(lines, fmt.Sprintf("• *%s*: %d", esc(f), perFleet[f]))
	}
	head := fmt.Sprintf(":rotating_light: *%s* (%s) exposes %d %s", esc(title), a.Severity, total, plural(total, "host", "hosts"))
	if a.KnownExploited {
		head += " — *known exploited*"
	}
	blocks := []slack.Block{section(head), section(strings.Join(lines, "\n"))}
	if len(a.Aliases) > 0 {
		blocks = append(blocks, contextBlock("aliases: "+esc(strings.Join(a.Aliases, ", "))))
	}
	return slack.Message{Text: fmt.Sprintf("%s (%s) exposes %d hosts", a.AdvisoryID, a.Severity, total), Blocks: blocks}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// HeaderMessage is a rollout thread's first message.
func HeaderMessage(p *progress.Rollout) slack.Message {
	if p.Kind == "" {
		txt := fmt.Sprintf("Rollout %s", p.ID)
		return slack.Message{Text: txt, Blocks: []slack.Block{section(":package: *" + esc(txt) + "*")}}
	}
	what := fmt.Sprintf("%s upgrades for *%s*: %d %s in %d %s", p.Kind, esc(p.Fleet), p.HostCount, plural(p.HostCount, "host", "hosts"), len(p.Waves), plural(len(p.Waves), "wave", "waves"))
	var ctx []string
	if len(p.AdvisoryIDs) > 0 {
		ctx = append(ctx, "advisories "+esc(strings.Join(p.AdvisoryIDs, ", ")))
	}
	if p.Severity != "" {
		ctx = append(ctx, "severity "+p.Severity)
	}
	ctx = append(ctx, "plan `"+short(p.PlanHash)+"`")
	return slack.Message{
		Text:   fmt.Sprintf("Rollout %s: %s upgrades for %s, %d hosts", p.ID, p.Kind, p.Fleet, p.HostCount),
		Blocks: []slack.Block{section(fmt.Sprintf(":package: *Rollout %s* — %s", esc(p.ID), what)), contextBlock(strings.Join(ctx, " · "))},
	}
}

// ApprovalMessage asks for approval, with buttons that carry the rollout and plan hash.
func ApprovalMessage(e events.RolloutApprovalRequested) slack.Message {
	v := command.ActionValue{Rollout: e.RolloutID, PlanHash: e.PlanHash}.Encode()
	text := fmt.Sprintf(":raised_hand: Approval needed for rollout *%s* on *%s*", esc(e.RolloutID), esc(e.Fleet))
	if e.Summary != "" {
		text += "\n" + esc(e.Summary)
	}
	ctx := "plan `" + esc(e.PlanHash) + "`"
	if len(e.Approvers) > 0 {
		ctx += " · approvers: " + esc(strings.Join(e.Approvers, ", "))
	}
	return slack.Message{
		Text: fmt.Sprintf("Approval needed: rollout %s on %s (plan %s)", e.RolloutID, e.Fleet, short(e.PlanHash)),
		Blocks: []slack.Block{
			section(text),
			contextBlock(ctx),
			{Type: "actions", BlockID: "patchfleet_decision", Elements: []slack.Element{
				{Type: "button", Text: slack.Plain("Approve"), ActionID: command.ActionApprove, Value: v, Style: "primary",
					Confirm: &slack.Confirm{Title: slack.Plain("Approve this plan?"), Text: slack.Markdown("Rollout *" + esc(e.RolloutID) + "* will run plan `" + esc(short(e.PlanHash)) + "`."),
						Confirm: slack.Plain("Approve"), Deny: slack.Plain("Not yet")}},
				{Type: "button", Text: slack.Plain("Reject"), ActionID: command.ActionReject, Value: v, Style: "danger"},
			}},
		},
	}
}

// DecisionMessage records a person's decision (and replaces the approval buttons).
func DecisionMessage(verb, rolloutID, by, planHash, reason string) slack.Message {
	icon := map[string]string{command.Approve: ":white_check_mark:", command.Reject: ":no_entry:", command.Pause: ":double_vertical_bar:",
		command.Resume: ":arrow_forward:", command.Cancel: ":octagonal_sign:"}[verb]
	past := map[string]string{command.Approve: "approved", command.Reject: "rejected", command.Pause: "paused",
		command.Resume: "resumed", command.Cancel: "cancelled"}[verb]
	txt := fmt.Sprintf("Rollout %s %s by %s", rolloutID, past, by)
	md := fmt.Sprintf("%s Rollout *%s* %s by *%s*", icon, esc(rolloutID), past, esc(by))
	if planHash != "" {
		txt += " (plan " + short(planHash) + ")"
		md += " (plan `" + esc(short(planHash)) + "`)"
	}
	if reason != "" {
		md += ": " + esc(reason)
	}
	return slack.Message{Text: txt, Blocks: []slack.Block{section(md)}}
}

// RefusedApprovalMessage says an approval was not taken, and why.
func RefusedApprovalMessage(a events.RolloutApproved, why string) slack.Message {
	md := fmt.Sprintf(":no_entry_sign: Approval of rollout *%s* by *%s* refused: %s", esc(a.RolloutID), esc(a.By), esc(why))
	return slack.Message{Text: fmt.Sprintf("Approval of rollout %s by %s refused: %s", a.RolloutID, a.By, why), Blocks: []slack.Block{section(md)}}
}

// ProgressMessage is the one message per rollout that is updated in place.
func ProgressMessage(p *progress.Rollout) slack.Message {
	t := progress.Text(p)
	first, _, _ := strings.Cut(t, "\n")
	return slack.Message{Text: first, Blocks: []slack.Block{section(code(t))}}
}

// FailureMessage reports a failed upgrade with its reason and output tail.
func FailureMessage(e events.UpgradeFailed) slack.Message {
	md := fmt.Sprintf(":x: *%s* failed: `%s`", esc(e.HostID), esc(e.Reason))
	if e.Message != "" {
		md += " — " + esc(e.Message)
	}
	blocks := []slack.Block{section(md)}
	if e.OutputTail != "" {
		blocks = append(blocks, section(code(tail(e.OutputTail, 2000))))
	}
	return slack.Message{Text: fmt.Sprintf("%s failed: %s", e.HostID, e.Reason), Blocks: blocks}
}

// HaltedMessage says a rollout stopped and waits for a person.
func HaltedMessage(e events.RolloutHalted) slack.Message {
	md := fmt.Sprintf(":warning: Rollout *%s* halted: %s (%d failed, budget %d). `resume %s` or `cancel %s`.",
		esc(e.RolloutID), esc(e.Reason), e.Failed, e.Budget, esc(e.RolloutID), esc(e.RolloutID))
	return slack.Message{Text: fmt.Sprintf("Rollout %s halted: %s", e.RolloutID, e.Reason), Blocks: []slack.Block{section(md)}}
}

// RebootMessage says a host waits for a reboot that policy did not allow.
func RebootMessage(e events.RebootRequired) slack.Message {
	md := fmt.Sprintf(":repeat: *%s* needs a reboot", esc(e.HostID))
	if len(e.Packages) > 0 {
		md += " (" + esc(strings.Join(e.Packages, ", ")) + ")"
	}
	md += "; it is pending until someone reboots it or policy allows it."
	return slack.Message{Text: fmt.Sprintf("%s needs a reboot", e.HostID), Blocks: []slack.Block{section(md)}}
}

// RebootedMessage says a host came back from a reboot.
func RebootedMessage(e events.HostRebooted) slack.Message {
	md := fmt.Sprintf(":arrows_counterclockwise: *%s* rebooted (down %s)", esc(e.HostID), e.Downtime.Round(1e9))
	return slack.Message{Text: fmt.Sprintf("%s rebooted", e.HostID), Blocks: []slack.Block{section(md)}}
}

// CompletedMessage summarises a rollout per host.
func CompletedMessage(e events.RolloutCompleted) slack.Message {
	icon := ":tada:"
	if e.Failed > 0 || e.Outcome != "completed" {
		icon = ":heavy_exclamation_mark:"
	}
	head := fmt.Sprintf("%s Rollout *%s* %s: %d succeeded, %d failed, %d skipped", icon, esc(e.RolloutID), e.Outcome, e.Succeeded, e.Failed, e.Skipped)
	results := slices.SortedFunc(slices.Values(e.Results), func(a, b events.HostResult) int {
		return cmp.Or(cmp.Compare(statusOrder(a.Status), statusOrder(b.Status)), cmp.Compare(a.HostID, b.HostID))
	})
	var lines []string
	for _, r := range results {
		l := fmt.Sprintf("%s %s", statusIcon(r.Status), esc(r.HostID))
		if r.Reason != "" {
			l += " — " + esc(r.Reason)
		}
		if r.Rebooted {
			l += " (rebooted)"
		} else if r.RebootPending {
			l += " (reboot pending)"
		}
		lines = append(lines, l)
	}
	blocks := []slack.Block{section(head)}
	if len(lines) > 0 {
		blocks = append(blocks, section(joinClipped(lines, maxSection)))
	}
	return slack.Message{Text: fmt.Sprintf("Rollout %s %s: %d succeeded, %d failed, %d skipped", e.RolloutID, e.Outcome, e.Succeeded, e.Failed, e.Skipped), Blocks: blocks}
}

func statusOrder(s string) int {
	return map[string]int{events.ResultFailed: 0, events.ResultSkipped: 1, events.ResultSucceeded: 2}[s]
}

func statusIcon(s string) string {
	return map[string]string{events.ResultFailed: ":x:", events.ResultSkipped: ":white_circle:", events.ResultSucceeded: ":white_check_mark:"}[s]
}

// joinClipped joins lines until n bytes, then says how many were left out.
func joinClipped(lines []string, n int) string {
	var b strings.Builder
	for i, l := range lines {
		if b.Len()+len(l)+40 > n {
			fmt.Fprintf(&b, "… and %d more", len(lines)-i)
			break
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

// ExposureText answers `exposed <id>`: hosts per fleet, and the first few hosts.
func ExposureText(id string, hosts []query.ExposedHost, more bool) string {
	if len(hosts) == 0 {
		return fmt.Sprintf("No host is exposed to %s.", esc(id))
	}
	perFleet := map[string]int{}
	for _, h := range hosts {
		perFleet[h.Fleet]++
	}
	var b strings.Builder
	n := fmt.Sprint(len(hosts))
	if more {
		n = "at least " + n
	}
	fmt.Fprintf(&b, "*%s* exposes %s %s:\n", esc(id), n, plural(len(hosts), "host", "hosts"))
	for _, f := range slices.Sorted(maps.Keys(perFleet)) {
		fmt.Fprintf(&b, "• *%s*: %d\n", esc(f), perFleet[f])
	}
	var lines []string
	for _, h := range hosts {
		var pk []string
		for _, p := range h.Packages {
			pk = append(pk, fmt.Sprintf("%s %s→%s", p.Name, p.Installed, cmp.Or(p.Fixed, "no fix")))
		}
		lines = append(lines, fmt.Sprintf("%s (%s): %s", h.Name, h.Fleet, strings.Join(pk, ", ")))
	}
	b.WriteString(code(joinClipped(lines, 2000)))
	return b.String()
}

// HostText answers `host <name>`.
func HostText(h query.HostDetail) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s* (%s) · fleet *%s*\n", esc(h.Name), esc(h.ID), esc(h.Fleet))
	fmt.Fprintf(&b, "%s %s · kernel %s · %d packages\n", h.OS.ID, h.OS.VersionID, cmp.Or(h.Kernel, "?"), h.PackageCount)
	if h.LastScan.IsZero() {
		b.WriteString("never scanned")
	} else {
		fmt.Fprintf(&b, "last scan %s", h.LastScan.UTC().Format("2006-01-02 15:04 MST"))
	}
	if h.LastScanError != "" {
		fmt.Fprintf(&b, " (error: %s)", esc(h.LastScanError))
	}
	b.WriteByte('\n')
	if h.RebootRequired {
		fmt.Fprintf(&b, ":repeat: reboot required (%s)\n", esc(strings.Join(h.RebootPackages, ", ")))
	}
	if len(h.Held) > 0 {
		fmt.Fprintf(&b, "held: %s\n", esc(strings.Join(h.Held, ", ")))
	}
	if h.KeyMismatch {
		b.WriteString(":warning: host key mismatch: refused until re-pinned\n")
	}
	if h.Retired {
		b.WriteString("retired\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// RolloutsText answers `status`: the open rollouts.
func RolloutsText(rs []query.RolloutSummary) string {
	if len(rs) == 0 {
		return "No open rollouts."
	}
	var lines []string
	for _, r := range rs {
		done := r.Succeeded + r.Failed + r.Skipped
		lines = append(lines, fmt.Sprintf("%-24s %-12s %-18s %s %d/%d wave %d/%d", r.ID, r.Fleet, r.State, progress.Bar(done, r.HostCount, 10), done, r.HostCount, r.CurrentWave, r.WaveCount))
	}
	return "*Open rollouts*\n" + code(joinClipped(lines, 2500))
}

// FromDetail builds a rollout's progress from the planner's answer.
func FromDetail(d query.RolloutDetail) *progress.Rollout {
	p := &progress.Rollout{ID: d.ID, Fleet: d.Fleet, Kind: d.Kind, PlanHash: d.PlanHash, AdvisoryIDs: d.AdvisoryIDs,
		Severity: d.Severity, HostCount: d.HostCount, State: d.State, Reason: d.Reason, ApprovedBy: d.ApprovedBy}
	perWave := map[int]*progress.Counts{}
	for _, h := range d.Hosts {
		c := perWave[h.Wave]
		if c == nil {
			c = &progress.Counts{}
			perWave[h.Wave] = c
		}
		switch h.State {
		case events.ResultSucceeded:
			c.Succeeded++
		case events.ResultFailed:
			c.Failed++
		}
	}
	for _, w := range d.Waves {
		pw := progress.Wave{Index: w.Index, Hosts: w.Hosts, State: w.State}
		if c := perWave[w.Index]; c != nil {
			pw.Succeeded, pw.Failed = c.Succeeded, c.Failed
			if pw.State != progress.WaveCompleted {
				// progress of a running wave: count its finished hosts as results
				if p.Results == nil {
					p.Results, p.HostWave = map[string]string{}, map[string]int{}
				}
				for _, h := range d.Hosts {
					if h.Wave == w.Index && (h.State == events.ResultSucceeded || h.State == events.ResultFailed) {
						p.Results[h.HostID], p.HostWave[h.HostID] = h.State, h.Wave
					}
				}
			}
		}
		p.Waves = append(p.Waves, pw)
	}
	if p.Ended() {
		p.Final = &progress.Counts{Succeeded: d.Succeeded, Failed: d.Failed, Skipped: d.Skipped}
	}
	return p
}
