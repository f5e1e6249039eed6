package hostfacts

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/patchfleet/patchfleet/events/deb"
)

// ErrNotReport means the output is not a scan report at all.
var ErrNotReport = errors.New("not a patchfleet scan report")

// line is one line of the report with its 1-based number.
type line struct {
	n    int
	text string
}

type section struct {
	name   string
	header int // line number of the section marker
	body   []line
	stderr []line
	status int // -1 until the status marker is seen
	// The index in the report's lines that would extend body or stderr in
	// place; -1 once it is a copy (see grow).
	bodyNext, stderrNext int
}

// grow adds lines[i] to ls. A section's body lines follow one another in the
// report, as do its stderr lines, so ls is a view of lines that grows without
// copying (a package list is thousands of lines); its capacity is its length,
// so nothing appended to it can overwrite lines. Only when a stray marker
// came between two lines does ls become a copy.
func grow(ls []line, next *int, lines []line, i int) []line {
	switch {
	case len(ls) == 0:
		*next = i + 1
		return lines[i : i+1 : i+1]
	case i == *next:
		*next = i + 1
		return lines[i-len(ls) : i+1 : i+1]
	}
	*next = -1
	return append(ls, lines[i])
}

// Parse reads the output of the scan script, from a live scan or an
// offline report.
//
// It returns an error only when the output is not a report of a format it
// knows. Everything else — a malformed dpkg line, a failed probe, an
// invalid package name, a truncated report — becomes a Problem in
// Facts.Problems, and the rest is still read: an inventory that lost one
// line should still record the other seven hundred, and the problems are
// reported alongside rather than instead.
func Parse(output []byte) (Facts, error) { return parse(output, nil) }

// Parse reads a report as the package-level Parse does, reusing the package lists it
// remembers (shared: see Parser).
func (m *Parser) Parse(output []byte) (Facts, error) { return parse(output, m) }

func parse(output []byte, memo *Parser) (Facts, error) {
	lines := splitLines(string(output))
	start := -1
	for i, l := range lines {
		if v, ok := strings.CutPrefix(l.text, markerPrefix+"scan "); ok {
			if v != FormatVersion {
				return Facts{}, fmt.Errorf("%w: format %.16q, want %s at line %d", ErrNotReport, v, FormatVersion, l.n)
			}
			start = i
			break
		}
	}
	if start < 0 {
		return Facts{}, fmt.Errorf("%w: no %sscan line", ErrNotReport, markerPrefix)
	}

	var f Facts
	p := &parser{facts: &f, memo: memo}
	if start > 0 {
		// A login banner or shell noise before the report is harmless.
		p.problem(lines[0].n, "", fmt.Sprintf("%d lines before the scan header ignored", start))
	}
	sections, ended := p.split(lines[start+1:])
	if !ended {
		p.problem(0, "", "report truncated: no end marker")
	}

	byName := map[string]*section{}
	for _, s := range sections {
		if _, dup := byName[s.name]; dup {
			p.problem(s.header, s.name, "duplicate section ignored")
			continue
		}
		byName[s.name] = s
	}
	for _, name := range []string{"os-release", "kernel", "arch", "dpkg-arch", "boot-id", "hostname",
		"packages", "reboot-required", "reboot-required-pkgs"} {
		s := byName[name]
		if s == nil {
			p.problem(0, name, "section missing")
			continue
		}
		if !p.ok(s) {
			continue
		}
		switch name {
		case "os-release":
			p.osRelease(s)
		case "kernel":
			f.Kernel = p.single(s, validKernel)
		case "arch":
			f.Arch = p.single(s, validArch)
		case "dpkg-arch":
			f.DpkgArch = p.single(s, deb.ValidArchitecture)
		case "boot-id":
			f.BootID = p.single(s, validBootID)
		case "hostname":
			f.Hostname = p.single(s, validHostname)
		case "packages":
			p.packages(s)
		case "reboot-required":
			switch v := p.single(s, nil); v {
			case "yes":
				f.RebootRequired = true
			case "no", "":
			default:
				p.problem(s.header, s.name, fmt.Sprintf("want yes or no, got %.32q", v))
			}
		case "reboot-required-pkgs":
			p.rebootPackages(s)
		}
	}
	if s := byName["held"]; s != nil && p.ok(s) {
		// Reports of earlier scripts list held packages (apt-mark showhold).
		p.held(s)
	} else {
		// dpkg's selection state says the same thing.
		for _, pkg := range f.Packages {
			if strings.HasPrefix(pkg.Status, "h") {
				f.Held = append(f.Held, pkg.Name)
			}
		}
	}
	p.components(sections)
	return f, nil
}

type parser struct {
	facts *Facts
	memo  *Parser // nil: remember nothing
}

func (p *parser) problem(n int, sect, reason string) {
	p.facts.Problems = append(p.facts.Problems, Problem{Line: n, Section: sect, Reason: reason})
}

func splitLines(s string) []line {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	out := make([]line, 0, strings.Count(s, "\n")+1)
	n := 0
	for text := range strings.SplitSeq(s, "\n") {
		n++
		// Reports mailed or edited on other systems may gain CRs.
		out = append(out, line{n, strings.TrimSuffix(text, "\r")})
	}
	return out
}

// trimBody drops the empty lines that end a section's body: the script
// prints a newline after every body, in case the output lacked one.
func (s *section) trimBody() {
	for len(s.body) > 0 && s.body[len(s.body)-1].text == "" {
		s.body = s.body[:len(s.body)-1]
	}
	s.body = slices.Clip(s.body)
}

// split groups lines into sections and reports whether the end marker was
// seen.
func (p *parser) split(lines []line) ([]*section, bool) {
	var (
		out      []*section
		cur      *section
		inStderr bool
	)
	for i, l := range lines {
		rest, isMarker := strings.CutPrefix(l.text, markerPrefix)
		if !isMarker {
			switch {
			case cur == nil:
				p.problem(l.n, "", "text outside any section")
			case cur.status >= 0:
				p.problem(l.n, cur.name, "text after the section's status")
			case inStderr:
				cur.stderr = grow(cur.stderr, &cur.stderrNext, lines, i)
			default:
				cur.body = grow(cur.body, &cur.bodyNext, lines, i)
			}
			continue
		}
		kind, arg, _ := strings.Cut(rest, " ")
		switch kind {
		case "section":
			if cur != nil && cur.status < 0 {
				p.problem(cur.header, cur.name, "no status line")
			}
			if arg == "" || !utf8.ValidString(arg) || strings.ContainsFunc(arg, unicode.IsControl) {
				p.problem(l.n, "", fmt.Sprintf("bad section name %.64q", arg))
				cur = nil
				continue
			}
			cur = &section{name: arg, header: l.n, status: -1}
			out = append(out, cur)
			inStderr = false
		case "stderr":
			if cur == nil || cur.status >= 0 {
				p.problem(l.n, "", "stderr marker outside a section")
				continue
			}
			cur.trimBody()
			inStderr = true
		case "status":
			if cur == nil || cur.status >= 0 {
				p.problem(l.n, "", "status marker outside a section")
				continue
			}
			cur.trimBody()
			st, err := strconv.Atoi(arg)
			if err != nil || st < 0 || st > 255 {
				p.problem(l.n, cur.name, fmt.Sprintf("bad exit status %.16q", arg))
				st = 255
			}
			cur.status = st
		case "end":
			if cur != nil && cur.status < 0 {
				p.problem(cur.header, cur.name, "no status line")
			}
			return out, true
		default:
			p.problem(l.n, "", fmt.Sprintf("unknown marker %.32q", kind))
		}
	}
	if cur != nil && cur.status < 0 {
		p.problem(cur.header, cur.name, "no status line")
	}
	return out, false
}

// ok reports whether a host section's probe succeeded, recording a problem
// with its stderr when it did not.
func (p *parser) ok(s *section) bool {
	if s.status == 0 {
		return true
	}
	if s.status < 0 {
		return false // reported as "no status line" already
	}
	reason := fmt.Sprintf("exit status %d", s.status)
	if msg := stderrSummary(s); msg != "" {
		reason += ": " + msg
	}
	p.problem(s.header, s.name, reason)
	return false
}

// stderrSummary keeps the first line of stderr, trimmed, for a problem.
func stderrSummary(s *section) string {
	for _, l := range s.stderr {
		if t := strings.TrimSpace(l.text); t != "" {
			t = strings.ToValidUTF8(t, "?")
			t = strings.Map(func(r rune) rune {
				if unicode.IsControl(r) {
					return -1
				}
				return r
			}, t)
			if len(t) > 200 {
				t = t[:200] + "..."
			}
			return t
		}
	}
	return ""
}

// single reads a one-line section and validates it; nil valid only checks
// that it is one printable line.
func (p *parser) single(s *section, valid func(string) error) string {
	var vals []line
	for _, l := range s.body {
		if strings.TrimSpace(l.text) != "" {
			vals = append(vals, l)
		}
	}
	if len(vals) == 0 {
		if valid != nil {
			p.problem(s.header, s.name, "empty")
		}
		return ""
	}
	if len(vals) > 1 {
		p.problem(vals[1].n, s.name, "more than one line")
		return ""
	}
	v := strings.TrimSpace(vals[0].text)
	if valid != nil {
		if err := valid(v); err != nil {
			p.problem(vals[0].n, s.name, err.Error())
			return ""
		}
	}
	return v
}

func (p *parser) packages(s *section) {
	if p.memo == nil {
		p.parsePackages(s)
		return
	}
	k := p.memo.key(s.body)
	if pkgs, ok := p.memo.recall(k, s.body); ok {
		p.facts.Packages = pkgs
		return
	}
	problems := len(p.facts.Problems)
	p.parsePackages(s)
	if len(p.facts.Problems) == problems {
		// Only a clean list is remembered: problems name line numbers, which differ
		// between reports.
		p.memo.remember(k, s.body, p.facts.Packages)
	}
}

func (p *parser) parsePackages(s *section) {
	type key struct{ name, arch string }
	seen := make(map[key]int, len(s.body))
	if p.facts.Packages == nil {
		p.facts.Packages = make([]Package, 0, len(s.body))
	}
	for _, l := range s.body {
		if l.text == "" {
			continue
		}
		pkg, skip, err := parsePackageLine(l.text)
		if err != nil {
			p.problem(l.n, s.name, err.Error())
			continue
		}
		if skip {
			continue
		}
		k := key{pkg.Name, pkg.Arch}
		if first, dup := seen[k]; dup {
			p.problem(l.n, s.name, fmt.Sprintf("package %s:%s already listed on line %d", pkg.Name, pkg.Arch, first))
			continue
		}
		seen[k] = l.n
		p.facts.Packages = append(p.facts.Packages, pkg)
	}
}

// parsePackageLine reads one line of
//
//	${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${db:Status-Abbrev}
//
// skip is true for packages dpkg only remembers (state not-installed),
// which have no version and are not on the host.
func parsePackageLine(text string) (pkg Package, skip bool, err error) {
	var fields [6]string // a fixed array, not strings.Split's slice: a scan has hundreds of lines
	n, rest := 0, text
	for {
		field, after, more := strings.Cut(rest, "\t")
		if n < len(fields) {
			fields[n] = field
		}
		n++
		if !more {
			break
		}
		rest = after
	}
	if n != len(fields) {
		return Package{}, false, fmt.Errorf("want 6 tab-separated fields, got %d", n)
	}
	name, version, arch, srcName, srcVersion, status := fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
	status = strings.TrimRight(status, " ")
	if err := validStatus(status); err != nil {
		return Package{}, false, fmt.Errorf("package %.64q: %w", name, err)
	}
	if err := deb.ValidPackageName(name); err != nil {
		return Package{}, false, err
	}
	if status[1] == 'n' {
		return Package{}, true, nil
	}
	if err := deb.ValidVersion(version); err != nil {
		return Package{}, false, fmt.Errorf("package %s: %w", name, err)
	}
	if err := deb.ValidArchitecture(arch); err != nil {
		return Package{}, false, fmt.Errorf("package %s: %w", name, err)
	}
	// Old dpkg leaves source:Package empty, and source:Version too when the
	// source is the binary's namesake.
	if srcName == "" {
		srcName = name
	} else if err := deb.ValidPackageName(srcName); err != nil {
		return Package{}, false, fmt.Errorf("package %s: source: %w", name, err)
	}
	if srcVersion == "" {
		srcVersion = version
	} else if err := deb.ValidVersion(srcVersion); err != nil {
		return Package{}, false, fmt.Errorf("package %s: source: %w", name, err)
	}
	return Package{
		Name:          name,
		Version:       version,
		Arch:          arch,
		SourceName:    srcName,
		SourceVersion: srcVersion,
		Status:        status,
		Installed:     strings.IndexByte("itW", status[1]) >= 0,
	}, false, nil
}

// validStatus checks a db:Status-Abbrev: desired action (unknown, install,
// hold, remove, purge), state, and an optional error flag (R:
// reinstall required).
func validStatus(s string) error {
	if len(s) != 2 && len(s) != 3 {
		return fmt.Errorf("status %.16q: want 2 or 3 characters", s)
	}
	if strings.IndexByte("uihrp", s[0]) < 0 {
		return fmt.Errorf("status %q: unknown desired action %q", s, s[0])
	}
	if strings.IndexByte("ncHUFWti", s[1]) < 0 {
		return fmt.Errorf("status %q: unknown state %q", s, s[1])
	}
	if len(s) == 3 && s[2] != 'R' {
		return fmt.Errorf("status %q: unknown error flag %q", s, s[2])
	}
	return nil
}

func (p *parser) held(s *section) {
	for _, l := range s.body {
		name := strings.TrimSpace(l.text)
		if name == "" {
			continue
		}
		if _, _, err := deb.SplitArchQualifier(name); err != nil {
			p.problem(l.n, s.name, err.Error())
			continue
		}
		p.facts.Held = append(p.facts.Held, name)
	}
}

func (p *parser) rebootPackages(s *section) {
	seen := map[string]bool{}
	for _, l := range s.body {
		name := strings.TrimSpace(l.text)
		if name == "" {
			continue
		}
		if err := deb.ValidPackageName(name); err != nil {
			p.problem(l.n, s.name, err.Error())
			continue
		}
		if !seen[name] {
			seen[name] = true
			p.facts.RebootPackages = append(p.facts.RebootPackages, name)
		}
	}
}

func (p *parser) components(sections []*section) {
	seen := map[string]bool{}
	for _, s := range sections {
		rest, ok := strings.CutPrefix(s.name, "component ")
		if !ok {
			continue
		}
		if seen[rest] {
			continue // reported as a duplicate section already
		}
		seen[rest] = true
		name, app, _ := strings.Cut(rest, " ")
		i := slices.IndexFunc(probes, func(pr Probe) bool { return pr.Name == name })
		if i < 0 {
			continue // a newer script's probe; nothing to read it with
		}
		c := Component{Name: name, App: app}
		var out strings.Builder
		for _, l := range s.body {
			out.WriteString(l.text)
			out.WriteByte('\n')
		}
		m := probes[i].Pattern.FindStringSubmatch(out.String())
		switch {
		case m != nil && validComponentVersion(m[1]) == nil:
			// A match counts even on a non-zero status: weave prints its
			// version and then fails to reach Docker.
			c.Present, c.Version = true, m[1]
		case m != nil:
			p.problem(s.header, s.name, fmt.Sprintf("version %.64q has characters outside [A-Za-z0-9.+~-]", m[1]))
		case s.status == 127:
			// Absent: the executable or the app's Gemfile.lock is not there.
		case s.status == 124:
			p.problem(s.header, s.name, "timed out")
		case s.status != 0:
			p.ok(s)
		default:
			p.problem(s.header, s.name, "no version in the output")
		}
		p.facts.Components = append(p.facts.Components, c)
	}
}
