package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/patchfleet/patchfleet/events/query"
	"github.com/patchfleet/patchfleet/tools/chatops/progress"
)

// Renderers: pure functions from answers to text. -o json bypasses them.

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Minute).String() + " ago"
}

func tags(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return cmp.Or(strings.Join(out, ","), "-")
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// RenderHosts prints hosts as a table.
func RenderHosts(w io.Writer, hosts []query.Host, now time.Time) error {
	var rows [][]string
	for _, h := range hosts {
		rows = append(rows, []string{h.Name, h.Fleet, h.OS.ID + " " + h.OS.VersionID, cmp.Or(h.Kernel, "-"), fmt.Sprint(h.PackageCount), yes(h.RebootRequired), ago(h.LastScan, now), tags(h.Tags)})
	}
	return table(w, "NAME\tFLEET\tOS\tKERNEL\tPACKAGES\tREBOOT\tSCANNED\tTAGS", rows)
}

// RenderHost prints one host.
func RenderHost(w io.Writer, h query.HostDetail, now time.Time) error {
	rows := [][]string{
		{"id", h.ID}, {"name", h.Name}, {"fleet", h.Fleet}, {"tags", tags(h.Tags)},
		{"ssh", fmt.Sprintf("%s@%s:%d", cmp.Or(h.SSH.User, "root"), h.SSH.Address, cmp.Or(h.SSH.Port, 22))},
		{"os", strings.TrimSpace(h.OS.ID + " " + h.OS.VersionID + " " + h.OS.Codename)}, {"kernel", cmp.Or(h.Kernel, "-")},
		{"packages", fmt.Sprint(h.PackageCount)}, {"last scan", ago(h.LastScan, now)},
		{"reboot required", yes(h.RebootRequired) + " " + strings.Join(h.RebootPackages, ",")},
	}
	if h.LastScanError != "" {
		rows = append(rows, []string{"scan error", h.LastScanError})
	}
	if len(h.Held) > 0 {
		rows = append(rows, []string{"held", strings.Join(h.Held, ",")})
	}
	if h.KeyMismatch {
		rows = append(rows, []string{"host key", "MISMATCH: refused until re-pinned"})
	}
	for _, c := range h.Components {
		rows = append(rows, []string{"component", c.Name + " " + c.Version})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], strings.TrimSpace(r[1]))
	}
	return tw.Flush()
}

// RenderExposure prints exposed hosts and their packages.
func RenderExposure(w io.Writer, hosts []query.ExposedHost) error {
	var rows [][]string
	for _, h := range hosts {
		for _, p := range h.Packages {
			rows = append(rows, []string{h.Name, h.Fleet, p.Name, p.Installed, cmp.Or(p.Fixed, "no fix"), cmp.Or(p.AdvisoryID, "-")})
		}
	}
	return table(w, "HOST\tFLEET\tPACKAGE\tINSTALLED\tFIXED\tADVISORY", rows)
}

// RenderAdvisories prints advisories.
func RenderAdvisories(w io.Writer, as []query.Advisory) error {
	var rows [][]string
	for _, a := range as {
		state := "-"
		if a.Withdrawn != nil {
			state = "withdrawn"
		}
		rows = append(rows, []string{a.AdvisoryID, string(a.Severity), a.Modified.UTC().Format("2006-01-02"), cmp.Or(strings.Join(a.Aliases, ","), "-"), state, a.Title})
	}
	return table(w, "ADVISORY\tSEVERITY\tMODIFIED\tALIASES\tSTATE\tTITLE", rows)
}

// RenderRollouts prints rollouts with a progress bar each.
func RenderRollouts(w io.Writer, rs []query.RolloutSummary) error {
	var rows [][]string
	for _, r := range rs {
		done := r.Succeeded + r.Failed + r.Skipped
		rows = append(rows, []string{r.ID, r.Fleet, r.Kind, r.State, fmt.Sprintf("%d/%d", r.CurrentWave, r.WaveCount),
			progress.Bar(done, r.HostCount, 10) + fmt.Sprintf(" %d/%d", done, r.HostCount), fmt.Sprint(r.Failed), r.CreatedAt.UTC().Format("2006-01-02 15:04")})
	}
	return table(w, "ID\tFLEET\tKIND\tSTATE\tWAVE\tPROGRESS\tFAILED\tCREATED", rows)
}

// RenderRollout prints one rollout: its progress and its hosts.
func RenderRollout(w io.Writer, d query.RolloutDetail) error {
	p := progress.Rollout{ID: d.ID, Fleet: d.Fleet, Kind: d.Kind, HostCount: d.HostCount, State: d.State, Reason: d.Reason}
	results := map[int]*progress.Counts{}
	for _, h := range d.Hosts {
		if results[h.Wave] == nil {
			results[h.Wave] = &progress.Counts{}
		}
		switch h.State {
		case "succeeded":
			results[h.Wave].Succeeded++
		case "failed":
			results[h.Wave].Failed++
		}
	}
	for _, wv := range d.Waves {
		c := results[wv.Index]
		if c == nil {
			c = &progress.Counts{}
		}
		// the planner's counts are authoritative: show every wave with its finished hosts
		p.Waves = append(p.Waves, progress.Wave{Index: wv.Index, Hosts: wv.Hosts, State: progress.WaveCompleted, Succeeded: c.Succeeded, Failed: c.Failed})
	}
	p.Final = &progress.Counts{Succeeded: d.Succeeded, Failed: d.Failed, Skipped: d.Skipped}
	text := progress.Text(&p)
	// The waves were marked completed to draw their counts; say their real state instead.
	lines := strings.Split(text, "\n")
	for i, wv := range d.Waves {
		if 2+i < len(lines) {
			lines[2+i] = strings.TrimSuffix(lines[2+i], " ✓") + " " + wv.State
		}
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
	fmt.Fprintf(w, "plan %s · strategy %s · reboot %s", d.PlanHash, d.Strategy, d.Reboot)
	if d.ApprovedBy != "" {
		fmt.Fprintf(w, " · approved by %s", d.ApprovedBy)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	var rows [][]string
	for _, h := range d.Hosts {
		note := h.Reason
		if h.Rebooted {
			note = strings.TrimSpace(note + " rebooted")
		} else if h.RebootPending {
			note = strings.TrimSpace(note + " reboot pending")
		}
		rows = append(rows, []string{h.HostID, fmt.Sprint(h.Wave), h.State, cmp.Or(note, "-")})
	}
	return table(w, "HOST\tWAVE\tSTATE\tNOTE", rows)
}

// RenderPreview prints the plans a preview returned.
func RenderPreview(w io.Writer, p query.PreviewResponse) error {
	var rows [][]string
	for _, pl := range p.Plans {
		hosts := 0
		for _, wv := range pl.Waves {
			hosts += len(wv.Hosts)
		}
		rows = append(rows, []string{pl.Fleet, pl.Kind, fmt.Sprint(hosts), fmt.Sprint(len(pl.Waves)), pl.Strategy, pl.Reboot, yes(pl.NeedsApproval), cmp.Or(pl.Skipped, "-"), pl.PlanHash})
	}
	if err := table(w, "FLEET\tKIND\tHOSTS\tWAVES\tSTRATEGY\tREBOOT\tAPPROVAL\tSKIPPED\tPLAN", rows); err != nil {
		return err
	}
	if len(p.Unmatched) > 0 {
		fmt.Fprintf(w, "\nexposed hosts no policy covers: %s\n", strings.Join(p.Unmatched, ", "))
	}
	return nil
}
