package view

import (
	"fmt"
	"time"
)

// Ago renders how long before now t was, coarsely: "3 min ago", "5 h ago", "2 d ago".
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + Duration(-d)
	}
	if d < time.Minute {
		return "just now"
	}
	return Duration(d) + " ago"
}

// Duration renders a duration coarsely, in its largest useful unit.
func Duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	default:
		return fmt.Sprintf("%d d", int(d.Hours()/24))
	}
}

// Clip shortens s to n runes with an ellipsis.
func Clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Short shortens a plan hash or id for display.
func Short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
