// Package window parses maintenance windows ("Sat 02:00-05:00 UTC", "Mon-Fri 22:00-04:00
// Europe/Berlin") and answers whether a time is inside one and when the next one opens.
//
// A window is a wall-clock interval in its own zone that starts on each of its days; when the
// end is not after the start it ends on the next day (crossing midnight). Occurrences are
// built with time.Date in the zone, so a window keeps its wall-clock times across DST changes:
// a window starting at a wall time the spring change skips starts at the normalised time.
package window

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is one maintenance window.
type Window struct {
	days       [7]bool // by time.Weekday: the days an occurrence starts on
	start, end int     // minutes after midnight
	loc        *time.Location
	text       string
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Parse reads "DAYS HH:MM-HH:MM ZONE". DAYS is a day ("Sat"), a range ("Mon-Fri", which may
// wrap: "Fri-Mon"), a comma list of those ("Sat,Sun") or "daily"; ZONE is "UTC" or an IANA
// name. The end may equal 24:00.
func Parse(s string) (Window, error) {
	fields := strings.Fields(s)
	if len(fields) != 3 {
		return Window{}, fmt.Errorf("window %q: want \"DAYS HH:MM-HH:MM ZONE\", e.g. \"Sat 02:00-05:00 UTC\"", s)
	}
	w := Window{text: strings.Join(fields, " ")}
	if err := w.parseDays(fields[0]); err != nil {
		return Window{}, fmt.Errorf("window %q: %w", s, err)
	}
	from, to, ok := strings.Cut(fields[1], "-")
	if !ok {
		return Window{}, fmt.Errorf("window %q: times %q: want HH:MM-HH:MM", s, fields[1])
	}
	var err error
	if w.start, err = clock(from, false); err != nil {
		return Window{}, fmt.Errorf("window %q: start: %w", s, err)
	}
	if w.end, err = clock(to, true); err != nil {
		return Window{}, fmt.Errorf("window %q: end: %w", s, err)
	}
	if w.start == w.end {
		return Window{}, fmt.Errorf("window %q: start and end are equal (an empty window)", s)
	}
	if w.loc, err = time.LoadLocation(fields[2]); err != nil || fields[2] == "Local" || fields[2] == "" {
		return Window{}, fmt.Errorf("window %q: zone %q is not UTC or an IANA time zone", s, fields[2])
	}
	return w, nil
}

func (w *Window) parseDays(s string) error {
	if strings.EqualFold(s, "daily") {
		w.days = [7]bool{true, true, true, true, true, true, true}
		return nil
	}
	for part := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, ok := dayNames[strings.ToLower(a)]
		if !ok {
			return fmt.Errorf("day %q: want Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range Mon-Fri, or daily", a)
		}
		to := from
		if isRange {
			if to, ok = dayNames[strings.ToLower(b)]; !ok {
				return fmt.Errorf("day %q: want Mon, Tue, Wed, Thu, Fri, Sat, Sun", b)
			}
		}
		for d := from; ; d = (d + 1) % 7 {
			w.days[d] = true
			if d == to {
				break
			}
		}
	}
	return nil
}

func clock(s string, allow24 bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q: want HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && (mm != 0 || !allow24) {
		return 0, fmt.Errorf("%q: not a time of day", s)
	}
	return hh*60 + mm, nil
}

// String returns the window as written (normalised spaces).
func (w Window) String() string { return w.text }

// occurrence returns the occurrence that starts on the calendar day of day (in w's zone).
func (w Window) occurrence(y int, m time.Month, d int) (start, end time.Time) {
	start = time.Date(y, m, d, 0, w.start, 0, 0, w.loc)
	endDay := d
	if w.end <= w.start {
		endDay++
	}
	end = time.Date(y, m, endDay, 0, w.end, 0, 0, w.loc)
	return start, end
}

// scan calls f for each occurrence starting from the day before t up to eight days after, in
// order, until f returns false.
func (w Window) scan(t time.Time, f func(start, end time.Time) bool) {
	lt := t.In(w.loc)
	for i := -1; i <= 8; i++ {
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+i, 12, 0, 0, 0, w.loc) // noon: never skipped by DST
		if !w.days[day.Weekday()] {
			continue
		}
		s, e := w.occurrence(day.Year(), day.Month(), day.Day())
		if !f(s, e) {
			return
		}
	}
}

// Contains reports whether t is inside an occurrence of w (start inclusive, end exclusive).
func (w Window) Contains(t time.Time) bool {
	in := false
	w.scan(t, func(s, e time.Time) bool {
		if !t.Before(s) && t.Before(e) {
			in = true
			return false
		}
		return s.Before(t) || s.Equal(t)
	})
	return in
}

// Next returns the start of the next occurrence that contains or follows t, and its end. If
// t is inside an occurrence, that occurrence is returned.
func (w Window) Next(t time.Time) (start, end time.Time) {
	w.scan(t, func(s, e time.Time) bool {
		if t.Before(e) {
			start, end = s, e
			return false
		}
		return true
	})
	return start, end
}

// Set is a fleet's windows. An empty set is always open.
type Set []Window

// ParseSet parses each window.
func ParseSet(ss []string) (Set, error) {
	out := make(Set, 0, len(ss))
	for _, s := range ss {
		w, err := Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Open reports whether t is inside one of the windows.
func (s Set) Open(t time.Time) bool {
	if len(s) == 0 {
		return true
	}
	for _, w := range s {
		if w.Contains(t) {
			return true
		}
	}
	return false
}

// NextOpen returns t if a window is open at t, or else the earliest time a window opens.
func (s Set) NextOpen(t time.Time) time.Time {
	if s.Open(t) {
		return t
	}
	var best time.Time
	for _, w := range s {
		start, _ := w.Next(t)
		if !start.IsZero() && (best.IsZero() || start.Before(best)) {
			best = start
		}
	}
	return best
}
