package window

import (
	"testing"
	"time"
)

func at(t *testing.T, s, zone string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"", "Sat", "Sat 02:00-05:00", "Sat 02:00 UTC", "Xyz 02:00-05:00 UTC", "Sat 2:00-05:00 UTC",
		"Sat 02:00-05:60 UTC", "Sat 25:00-05:00 UTC", "Sat 02:00-02:00 UTC", "Sat 02:00-05:00 Mars/Base",
		"Sat 24:00-05:00 UTC", "Mon-Xyz 01:00-02:00 UTC", "Sat 02:00-05:00 Local",
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestContains(t *testing.T) {
	tests := []struct {
		window, time, zone string
		want               bool
	}{
		// 2026-03-07 is a Saturday.
		{"Sat 02:00-05:00 UTC", "2026-03-07 02:00", "UTC", true},
		{"Sat 02:00-05:00 UTC", "2026-03-07 04:59", "UTC", true},
		{"Sat 02:00-05:00 UTC", "2026-03-07 05:00", "UTC", false},
		{"Sat 02:00-05:00 UTC", "2026-03-07 01:59", "UTC", false},
		{"Sat 02:00-05:00 UTC", "2026-03-08 03:00", "UTC", false},
		{"Sat 02:00-05:00 UTC", "2026-03-07 03:00", "Europe/Berlin", true}, // 02:00 UTC
		{"Sat,Sun 02:00-05:00 UTC", "2026-03-08 03:00", "UTC", true},
		{"daily 01:00-02:00 UTC", "2026-03-10 01:30", "UTC", true},
		// Crossing midnight: Friday 22:00 Berlin to Saturday 04:00 Berlin.
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "2026-03-06 23:30", "Europe/Berlin", true},
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "2026-03-07 03:59", "Europe/Berlin", true},
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "2026-03-07 04:00", "Europe/Berlin", false},
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "2026-03-07 23:00", "Europe/Berlin", false}, // Saturday night
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "2026-03-09 01:00", "Europe/Berlin", false}, // Monday early: Sunday's would-be occurrence
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "2026-03-06 21:30", "UTC", true},            // 22:30 Berlin (UTC+1)
		{"Fri-Mon 10:00-11:00 UTC", "2026-03-09 10:30", "UTC", true},
		{"Fri-Mon 10:00-11:00 UTC", "2026-03-10 10:30", "UTC", false},
		{"Sat 22:00-24:00 UTC", "2026-03-07 23:59", "UTC", true},
		// DST: Berlin goes from 02:00 to 03:00 on 2026-03-29 (a Sunday); the window keeps wall time.
		{"Sun 01:00-04:00 Europe/Berlin", "2026-03-29 00:30", "UTC", true}, // 01:30 CET
		{"Sun 01:00-04:00 Europe/Berlin", "2026-03-29 01:30", "UTC", true}, // 03:30 CEST
		{"Sun 01:00-04:00 Europe/Berlin", "2026-03-29 02:00", "UTC", false},
		// Autumn: 2026-10-25 03:00 CEST -> 02:00 CET; a 02:00-03:00 window lasts two hours of real time.
		{"Sun 02:00-04:00 Europe/Berlin", "2026-10-25 02:30", "UTC", true}, // 03:30 CET
		{"Sun 02:00-04:00 Europe/Berlin", "2026-10-25 03:00", "UTC", false},
	}
	for _, tt := range tests {
		w, err := Parse(tt.window)
		if err != nil {
			t.Fatal(err)
		}
		tm := at(t, tt.time, tt.zone)
		if got := w.Contains(tm); got != tt.want {
			t.Errorf("%q contains %s (%s) = %v, want %v", tt.window, tt.time, tt.zone, got, tt.want)
		}
	}
}

func TestNextOpen(t *testing.T) {
	tests := []struct {
		windows []string
		time    string
		want    string // UTC
	}{
		{[]string{"Sat 02:00-05:00 UTC"}, "2026-03-04 10:00", "2026-03-07 02:00"},
		{[]string{"Sat 02:00-05:00 UTC"}, "2026-03-07 03:00", "2026-03-07 03:00"}, // inside: now
		{[]string{"Sat 02:00-05:00 UTC"}, "2026-03-07 05:00", "2026-03-14 02:00"},
		{[]string{"Sat 02:00-05:00 UTC", "Wed 12:00-13:00 UTC"}, "2026-03-04 10:00", "2026-03-04 12:00"},
		{[]string{"Mon-Fri 22:00-04:00 Europe/Berlin"}, "2026-03-07 10:00", "2026-03-09 21:00"},
		// The day of the spring change: Sunday 02:30 does not exist in Berlin; time.Date moves it to 03:30 CEST.
		{[]string{"Sun 02:30-04:00 Europe/Berlin"}, "2026-03-28 12:00", "2026-03-29 01:30"},
		{nil, "2026-03-04 10:00", "2026-03-04 10:00"},
	}
	for _, tt := range tests {
		s, err := ParseSet(tt.windows)
		if err != nil {
			t.Fatal(err)
		}
		got := s.NextOpen(at(t, tt.time, "UTC"))
		if want := at(t, tt.want, "UTC"); !got.Equal(want) {
			t.Errorf("%v next open after %s = %s, want %s", tt.windows, tt.time, got.UTC(), want)
		}
	}
}
