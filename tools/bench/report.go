package bench

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// PeerGoal is a comparison: Patchfleet's figure against a peer's, as the ratio
// peer / Patchfleet of wall time (or of controller CPU), and the least ratio that meets the
// goal (0: reported, no goal).
type PeerGoal struct {
	Op    string
	Peer  string
	CPU   bool // compare controller CPU instead of wall time
	Ratio float64
}

// PeerGoals are the comparisons, checked at every size. The goals are the product's: a scan
// faster than parallel-ssh with curve25519 key exchange, an upgrade no slower than plain
// parallel-ssh. An upgrade is mostly apt's work on the hosts, so against parallel-ssh with
// curve25519 it is reported without a goal.
var PeerGoals = []PeerGoal{
	{Op: OpScan, Peer: ToolAnsible, Ratio: 15},
	{Op: OpScan, Peer: ToolAnsibleTuned, Ratio: 5},
	{Op: OpScan, Peer: ToolPSSHCurve, Ratio: 1},
	{Op: OpUpgrade, Peer: ToolAnsible, Ratio: 1.9},
	{Op: OpUpgrade, Peer: ToolPSSH, Ratio: 1},
	{Op: OpUpgrade, Peer: ToolPSSHCurve},
	{Op: OpUpgrade, Peer: ToolAnsible, CPU: true, Ratio: 20},
}

// PeerRows turns measurements into table rows: each tool's wall time and controller CPU,
// then the goals as ratios.
func PeerRows(ms []Measurement, sizes []int) []Row {
	find := func(tool, op string, n int) (Measurement, bool) {
		for _, m := range ms {
			if m.Tool == tool && m.Op == op && m.Hosts == n {
				return m, true
			}
		}
		return Measurement{}, false
	}
	var rows []Row
	for _, n := range sizes {
		for _, op := range []string{OpScan, OpUpgrade} {
			for _, tool := range Tools {
				m, ok := find(tool, op, n)
				fig := fmt.Sprintf("%s, %d hosts: %s", op, n, tool)
				wall := Row{Figure: fig + ", wall", Unit: "s"}
				cpu := Row{Figure: fig + ", controller CPU", Unit: "s"}
				machine := Row{Figure: fig + ", machine CPU (controller and hosts)", Unit: "s"}
				switch {
				case !ok:
					wall.Note, cpu.Note, machine.Note = "not run", "not run", "not run"
				case m.Err != nil:
					wall.Note, cpu.Note, machine.Note = firstLine(m.Err.Error()), "failed", "failed"
				default:
					wall.Value, wall.Has = m.Wall.Seconds(), true
					cpu.Value, cpu.Has = m.CPU.Seconds(), true
					machine.Value, machine.Has = m.Machine.Seconds(), true
				}
				rows = append(rows, wall, cpu, machine)
			}
		}
		for _, g := range PeerGoals {
			what := "faster"
			if g.CPU {
				what = "less controller CPU"
			}
			row := Row{Figure: fmt.Sprintf("%s, %d hosts: %s / Patchfleet (%s)", g.Op, n, g.Peer, what),
				Unit: "×", Goal: g.Ratio, Dir: AtLeast}
			if g.Ratio == 0 {
				row.Dir = Info
			}
			pf, ok1 := find(ToolPatchfleet, g.Op, n)
			peer, ok2 := find(g.Peer, g.Op, n)
			switch {
			case !ok1 || !ok2:
				row.Note = "not run"
			case pf.Err != nil || peer.Err != nil:
				row.Note = "a run failed"
			case g.CPU && pf.CPU > 0:
				row.Value, row.Has = peer.CPU.Seconds()/pf.CPU.Seconds(), true
			case !g.CPU && pf.Wall > 0:
				row.Value, row.Has = peer.Wall.Seconds()/pf.Wall.Seconds(), true
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// Render writes the rows as a Markdown table: figure, value, goal, status.
func Render(w io.Writer, rows []Row) {
	head := []string{"figure", "value", "goal", "status"}
	cells := [][]string{head}
	for _, r := range rows {
		st := r.Status()
		if r.Note != "" {
			st += ": " + r.Note
		}
		cells = append(cells, []string{r.Figure, r.ValueText(), r.GoalText(), st})
	}
	width := make([]int, len(head))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	line := func(c []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, s := range c {
			pad := width[i] - utf8.RuneCountInString(s)
			if i == 1 {
				b.WriteString(" " + strings.Repeat(" ", pad) + s + " |")
			} else {
				b.WriteString(" " + s + strings.Repeat(" ", pad) + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(cells[0])
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	sep[1] = sep[1][:len(sep[1])-1] + ":"
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
}
