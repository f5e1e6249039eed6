// Package dsalist reads the Debian security tracker's DSA list
// (data/DSA/list): one entry per advisory, a header line with the date, id
// and title, then the CVEs in braces and one "[codename] - package version"
// line per fixed release.
package dsalist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

// RecordError reports one entry that could not be used.
type RecordError struct {
	Record string // advisory id, or "line N"
	Line   int
	Err    error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("debian dsa list %s (line %d): %v", e.Record, e.Line, e.Err)
}
func (e *RecordError) Unwrap() error { return e.Err }

var (
	headerRE = regexp.MustCompile(`^\[(\d{2} [A-Z][a-z]{2} \d{4})\] ((?:DSA|DLA)-[0-9]+(?:-[0-9]+)?) ?(.*)$`)
	fixedRE  = regexp.MustCompile(`^\[([a-z]+)\] - (\S+) (\S+)`)
)

// LooksLike reports whether a document starts like a DSA list.
func LooksLike(head []byte) bool {
	line, _, _ := bytes.Cut(bytes.TrimLeft(head, "\n"), []byte("\n"))
	// Every document is asked first: the cheap test spares JSON ones the regexp.
	return len(line) > 0 && line[0] == '[' && headerRE.Match(line)
}

type entry struct {
	a    advisory.Advisory
	line int
	err  error
}

// Decode reads the list, handing each advisory to emit in list order.
// Entries that fix nothing in a known release (end-of-life notices, key
// changes) come to bad as advisory.ErrNoAffected.
func Decode(r io.Reader, emit func(advisory.Advisory) error, bad func(*RecordError)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var cur *entry
	flush := func() error {
		if cur == nil {
			return nil
		}
		e := cur
		cur = nil
		if e.err == nil {
			e.a = e.a.Normalized()
			e.err = e.a.Validate()
		}
		if e.err != nil {
			bad(&RecordError{Record: e.a.ID, Line: e.line, Err: e.err})
			return nil
		}
		return emit(e.a)
	}
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := headerRE.FindStringSubmatch(line); m != nil {
			if err := flush(); err != nil {
				return err
			}
			cur = &entry{line: n, a: advisory.Advisory{
				ID: m[2], Source: advisory.SourceDebianDSAList, Title: strings.TrimSpace(m[3]),
				Severity:   events.SeverityUnknown,
				References: []string{"https://security-tracker.debian.org/tracker/" + m[2]},
			}}
			t, err := time.Parse("02 Jan 2006", m[1])
			if err != nil {
				cur.err = fmt.Errorf("date %q: %w", m[1], err)
				continue
			}
			// The list has only a date; it is both published and modified.
			cur.a.Published, cur.a.Modified = t, t
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "NOTE:") {
			continue
		}
		if cur == nil {
			bad(&RecordError{Record: fmt.Sprintf("line %d", n), Line: n, Err: errors.New("text before the first advisory")})
			continue
		}
		if cur.err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(trimmed, "{") && strings.HasSuffix(trimmed, "}"):
			cur.a.Aliases = append(cur.a.Aliases, strings.Fields(trimmed[1:len(trimmed)-1])...)
		case fixedRE.MatchString(trimmed):
			m := fixedRE.FindStringSubmatch(trimmed)
			if strings.HasPrefix(m[3], "<") { // <not-affected>, <end-of-life>, <unfixed>
				continue
			}
			release, ok := advisory.DebianRelease(m[1])
			if !ok {
				cur.a.Notes = append(cur.a.Notes, fmt.Sprintf("line %d: release %q unknown, skipped", n, m[1]))
				continue
			}
			cur.a.Affected = append(cur.a.Affected, events.Affected{
				Ecosystem: events.EcosystemDebian, Release: release, Package: m[2], FixedVersion: m[3],
			})
		default:
			cur.err = fmt.Errorf("line %d: unexpected %.64q", n, trimmed)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("debian dsa list: %w", err)
	}
	return flush()
}
