package hostops

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrNotReport means the output is not the report of the expected op.
var ErrNotReport = errors.New("not a patchfleet op report")

// Report is what every op's result has in common.
type Report struct {
	// Complete is true when the end marker was seen: the script ran to its
	// end. A dropped connection leaves a report without it.
	Complete bool
	// Problems lists what could not be read; the rest is still reported.
	Problems []string
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// section is one step of the report.
type section struct {
	name   string
	body   []string
	stderr []string
	status int // -1 when the status line is missing
}

// trimBody drops the empty lines that end a section's body: pf_run prints a
// newline after every body, in case the output lacked one.
func (s *section) trimBody() {
	for len(s.body) > 0 && s.body[len(s.body)-1] == "" {
		s.body = s.body[:len(s.body)-1]
	}
}

func (s *section) stdout() string { return joinLines(s.body) }
func (s *section) errout() string { return joinLines(s.stderr) }

func joinLines(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

type report struct {
	Report
	sections map[string]*section
}

// get returns a section, recording a problem when it is missing.
func (r *report) get(name string) *section {
	if s := r.sections[name]; s != nil {
		return s
	}
	if r.Complete {
		r.problem("section %s missing", name)
	}
	return nil
}

// ok reports whether a section is there and its step exited 0.
func (r *report) ok(name string) (*section, bool) {
	s := r.get(name)
	if s == nil {
		return nil, false
	}
	if s.status != 0 {
		msg := firstLine(s.stderr)
		if msg != "" {
			msg = ": " + msg
		}
		r.problem("section %s: exit status %d%s", name, s.status, msg)
		return s, false
	}
	return s, true
}

// maxReport bounds what a parser reads; apt's output of a full upgrade is
// well under this.
const maxReport = 64 << 20

// parseReport splits the output of op's script into its sections.
func parseReport(out []byte, op string) (report, error) {
	if len(out) > maxReport {
		return report{}, fmt.Errorf("%w: %d bytes, more than %d", ErrNotReport, len(out), maxReport)
	}
	text := strings.ToValidUTF8(string(out), "\uFFFD")
	text = strings.TrimSuffix(text, "\n")
	lines := strings.Split(text, "\n")
	want := markerPrefix + "op " + op + " "
	start := -1
	for i, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if v, ok := strings.CutPrefix(l, want); ok {
			if v != FormatVersion {
				return report{}, fmt.Errorf("%w: %s format %.16q, want %s", ErrNotReport, op, v, FormatVersion)
			}
			start = i
			break
		}
	}
	if start < 0 {
		return report{}, fmt.Errorf("%w: no %q line", ErrNotReport, strings.TrimSpace(want))
	}
	r := report{sections: map[string]*section{}}
	if start > 0 {
		r.problem("%d lines before the report header ignored", start)
	}
	var cur *section
	inStderr := false
	for i, l := range lines[start+1:] {
		l = strings.TrimSuffix(l, "\r")
		n := start + i + 2
		rest, isMarker := strings.CutPrefix(l, markerPrefix)
		if !isMarker {
			switch {
			case cur == nil || cur.status >= 0:
				r.problem("line %d: text outside a section", n)
			case inStderr:
				cur.stderr = append(cur.stderr, l)
			default:
				cur.body = append(cur.body, l)
			}
			continue
		}
		kind, arg, _ := strings.Cut(rest, " ")
		switch kind {
		case "section":
			if arg == "" || strings.ContainsFunc(arg, unicode.IsControl) {
				r.problem("line %d: bad section name %.64q", n, arg)
				cur = nil
				continue
			}
			if _, dup := r.sections[arg]; dup {
				r.problem("line %d: duplicate section %s ignored", n, arg)
				cur = nil
				continue
			}
			cur = &section{name: arg, status: -1}
			r.sections[arg] = cur
			inStderr = false
		case "stderr":
			if cur == nil || cur.status >= 0 {
				r.problem("line %d: stderr marker outside a section", n)
				continue
			}
			cur.trimBody()
			inStderr = true
		case "status":
			if cur == nil || cur.status >= 0 {
				r.problem("line %d: status marker outside a section", n)
				continue
			}
			cur.trimBody()
			st, err := strconv.Atoi(arg)
			if err != nil || st < 0 || st > 255 {
				r.problem("line %d: bad exit status %.16q", n, arg)
				st = 255
			}
			cur.status = st
		case "end":
			r.Complete = true
			return r, nil
		default:
			r.problem("line %d: unknown marker %.32q", n, kind)
		}
	}
	r.problem("report truncated: no end marker")
	return r, nil
}

// firstLine returns the first non-blank line, trimmed and bounded, for a
// problem or an error message.
func firstLine(ls []string) string {
	for _, l := range ls {
		if t := clean(l); t != "" {
			return t
		}
	}
	return ""
}

// clean trims a line, drops control characters and bounds it.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 300 {
		cut := 300
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
