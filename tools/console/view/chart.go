package view

import (
	"fmt"
	"time"

	"github.com/patchfleet/patchfleet/events/query"
)

// DayCount is how many distinct hosts were exposed at the end of a day (today: now).
type DayCount struct {
	Day   time.Time
	Hosts int
}

// ExposedPerDay counts, for each of the last days days (UTC), the hosts exposed to at least
// one advisory at the end of that day: exposed since before it and not patched by then.
func ExposedPerDay(recs []query.ComplianceRecord, now time.Time, days int) []DayCount {
	if days <= 0 {
		return nil
	}
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	out := make([]DayCount, days)
	for i := range out {
		day := today.AddDate(0, 0, i-days+1)
		at := day.AddDate(0, 0, 1)
		if at.After(now) {
			at = now
		}
		hosts := map[string]bool{}
		for _, r := range recs {
			if r.ExposedSince.IsZero() || r.ExposedSince.After(at) {
				continue
			}
			if end := r.Ended(); !end.IsZero() && !end.After(at) {
				continue
			}
			hosts[r.HostID] = true
		}
		out[i] = DayCount{Day: day, Hosts: len(hosts)}
	}
	return out
}

// Chart is a bar chart drawn as inline SVG (attributes only, so the CSP needs no inline
// styles).
type Chart struct {
	Width, Height int
	Bars          []ChartBar
	Labels        []ChartLabel // x-axis dates
	Max           int
	MaxY          float64 // y of the max grid line
	BaseY         float64
	Empty         bool
}

// ChartBar is one day's bar.
type ChartBar struct {
	X, Y, W, H float64
	Title      string
}

// ChartLabel is a text under the axis.
type ChartLabel struct {
	X    float64
	Text string
}

// BarChart lays out series in a w×h box (with room for labels).
func BarChart(series []DayCount, w, h int) Chart {
	c := Chart{Width: w, Height: h, Empty: true}
	const left, bottom, top = 36.0, 20.0, 10.0
	plotW, plotH := float64(w)-left-24, float64(h)-bottom-top
	c.BaseY, c.MaxY = top+plotH, top
	for _, d := range series {
		c.Max = max(c.Max, d.Hosts)
		if d.Hosts > 0 {
			c.Empty = false
		}
	}
	if len(series) == 0 {
		return c
	}
	scale := max(c.Max, 1)
	slot := plotW / float64(len(series))
	for i, d := range series {
		bh := plotH * float64(d.Hosts) / float64(scale)
		x := left + float64(i)*slot
		c.Bars = append(c.Bars, ChartBar{X: round1(x + slot*0.15), Y: round1(top + plotH - bh), W: round1(slot * 0.7), H: round1(bh),
			Title: fmt.Sprintf("%s: %d %s exposed", d.Day.Format("Mon 2 Jan"), d.Hosts, plural(d.Hosts, "host", "hosts"))})
		if i%7 == (len(series)-1)%7 { // a label a week, ending today
			c.Labels = append(c.Labels, ChartLabel{X: round1(x + slot/2), Text: d.Day.Format("2 Jan")})
		}
	}
	return c
}

func round1(f float64) float64 { return float64(int(f*10+0.5)) / 10 }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
