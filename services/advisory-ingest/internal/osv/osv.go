// Package osv reads advisories in the OSV schema (1.x) as published by
// osv.dev for Debian, by Canonical for Ubuntu (USN-…, UBUNTU-CVE-…) and by
// GitHub for RubyGems, and normalises them. It decodes with encoding/json
// into the few fields Patchfleet uses rather than a full OSV model: every
// field used is checked, everything else is ignored.
package osv

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

// decodeOptions keep encoding/json's leniency where real feeds need it (duplicate keys,
// invalid UTF-8 replaced, keys matched case-insensitively); the decoder is
// github.com/go-json-experiment/json, the reference implementation of encoding/json/v2, which
// decodes in one pass where encoding/json validates the whole record first.
var decodeOptions = json.JoinOptions(
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
	json.MatchCaseInsensitiveNames(true),
)

type record struct {
	ID               string         `json:"id"`
	Modified         string         `json:"modified"`
	Published        string         `json:"published"`
	Withdrawn        string         `json:"withdrawn"`
	Aliases          []string       `json:"aliases"`
	Related          []string       `json:"related"`
	Upstream         []string       `json:"upstream"`
	Summary          string         `json:"summary"`
	Details          string         `json:"details"`
	Severity         []severity     `json:"severity"`
	Affected         []affected     `json:"affected"`
	References       []reference    `json:"references"`
	DatabaseSpecific jsontext.Value `json:"database_specific"`
}

type severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

type reference struct {
	Type string `json:"type"`
	URL  string `json:"url"`
}

type affected struct {
	Package struct {
		Ecosystem string `json:"ecosystem"`
		Name      string `json:"name"`
		// purl is not used: real feeds carry malformed ones
		// ("?arch=src?distro=jammy"), and package.name says the same.
	} `json:"package"`
	Severity          []severity     `json:"severity"`
	Ranges            []rangeJSON    `json:"ranges"`
	Versions          []string       `json:"versions"`
	EcosystemSpecific jsontext.Value `json:"ecosystem_specific"`
	DatabaseSpecific  jsontext.Value `json:"database_specific"`
}

type rangeJSON struct {
	Type   string         `json:"type"`
	Events []stringObject `json:"events"`
}

// ecosystemSpecific is Ubuntu's per-package block.
type ecosystemSpecific struct {
	Binaries       []stringObject `json:"binaries"`
	UbuntuPriority string         `json:"ubuntu_priority"`
}

// binaries lists Ubuntu's binary packages. Each element comes in one of two shapes,
// {"binary_name": n, "binary_version": v} (current) and {"name1": v1, "name2": v2} (older
// records).
func binaries(list []stringObject) []events.BinaryPackage {
	var out []events.BinaryPackage
	for _, m := range list {
		if name, ok := m.get("binary_name"); ok {
			version, _ := m.get("binary_version")
			out = append(out, events.BinaryPackage{Name: name, Version: version})
			continue
		}
		for _, f := range m {
			out = append(out, events.BinaryPackage{Name: f.name, Version: f.value})
		}
	}
	return out
}

// stringObject is a JSON object of strings, its members in their order, decoded without a map:
// OSV's range events ({"introduced": "1.0"}) and Ubuntu's binaries are many small objects
// per record, and a map apiece cost more than the rest of a record's decoding. As in a
// map, null is empty and a repeated name keeps its last value.
type stringObject []member

type member struct{ name, value string }

func (m stringObject) get(name string) (string, bool) {
	for _, f := range m {
		if f.name == name {
			return f.value, true
		}
	}
	return "", false
}

func (m *stringObject) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		*m = nil
		return nil
	case '{':
	default:
		return fmt.Errorf("%v where an object of strings belongs", tok.Kind())
	}
	out := (*m)[:0]
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String() // before the next read voids tok
		if tok, err = dec.ReadToken(); err != nil {
			return err
		}
		if tok.Kind() != '"' {
			return fmt.Errorf("member %.32q is %v, want a string", name, tok.Kind())
		}
		f := member{name, tok.String()}
		if i := slices.IndexFunc(out, func(g member) bool { return g.name == f.name }); i >= 0 {
			out[i] = f
			continue
		}
		out = append(out, f)
	}
	*m = out
	_, err = dec.ReadToken()
	return err
}

// databaseSpecific holds GitHub's severity and Ubuntu's per-CVE severities.
type databaseSpecific struct {
	Severity jsontext.Value `json:"severity"`
	CVEsMap  struct {
		CVEs []struct {
			ID       string     `json:"id"`
			Severity []severity `json:"severity"`
		} `json:"cves"`
	} `json:"cves_map"`
}

// Parse reads one OSV record. The error names the record (its id when it
// has one) and the reason; a record that only names ecosystems Patchfleet
// does not handle fails with advisory.ErrNoAffected.
func Parse(data []byte) (advisory.Advisory, error) {
	var r record
	// Unmarshal, not a Decoder: it refuses anything after the record.
	if err := json.Unmarshal(data, &r, decodeOptions); err != nil {
		return advisory.Advisory{}, fmt.Errorf("osv record %s: decode: %w", idHint(data), err)
	}
	a, err := normalise(r)
	if err != nil {
		id := r.ID
		if id == "" {
			id = "(no id)"
		}
		return advisory.Advisory{}, fmt.Errorf("osv record %.64s: %w", id, err)
	}
	return a, nil
}

// idHint pulls the id out of a record that did not decode, so the error can
// still name it.
var idRE = regexp.MustCompile(`"id"\s*:\s*"([A-Za-z0-9._:+-]{1,64})"`)

func idHint(data []byte) string {
	if m := idRE.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return "(no id)"
}

func normalise(r record) (advisory.Advisory, error) {
	if r.ID == "" {
		return advisory.Advisory{}, errors.New("id is missing")
	}
	a := advisory.Advisory{
		ID:      r.ID,
		Source:  advisory.SourceOSV,
		Title:   strings.TrimSpace(r.Summary),
		Summary: advisory.Truncate(r.Details),
	}
	var err error
	if r.Modified == "" {
		return advisory.Advisory{}, errors.New("modified is missing")
	}
	if a.Modified, err = parseTime("modified", r.Modified); err != nil {
		return advisory.Advisory{}, err
	}
	if a.Published, err = parseTime("published", r.Published); err != nil {
		return advisory.Advisory{}, err
	}
	if a.Withdrawn, err = parseTime("withdrawn", r.Withdrawn); err != nil {
		return advisory.Advisory{}, err
	}
	a.Aliases = cves(r.ID, r.Aliases, r.Related, r.Upstream)
	for _, ref := range r.References {
		if ref.URL != "" {
			a.References = append(a.References, ref.URL)
		}
	}

	sev := severities{}
	sev.addCVSS(r.Severity, &a.Notes)
	sev.database(r.DatabaseSpecific, &a.Notes)
	for i, af := range r.Affected {
		out, priority, note, err := convert(af)
		if err != nil {
			return advisory.Advisory{}, fmt.Errorf("affected[%d] (%s %s): %w", i, af.Package.Ecosystem, af.Package.Name, err)
		}
		if note != "" {
			a.Notes = append(a.Notes, fmt.Sprintf("affected[%d]: %s", i, note))
			continue
		}
		sev.addCVSS(af.Severity, &a.Notes)
		sev.priority(priority)
		sev.database(af.DatabaseSpecific, &a.Notes)
		a.Affected = append(a.Affected, out)
	}
	a.Severity, a.SourceSeverity = sev.result()
	a = a.Normalized()
	if err := a.Validate(); err != nil {
		return advisory.Advisory{}, err
	}
	return a, nil
}

// parseTime accepts RFC 3339 with or without fractional seconds, and the
// zone-less form some exporters write (read as UTC).
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %.40q is not an RFC 3339 time", field, s)
}

var cveRE = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,}$`)

// cves collects the CVE ids an advisory is about. Ubuntu lists them under
// related (CVE-…) or upstream (UBUNTU-CVE-…), Debian under related, GitHub
// under aliases.
func cves(self string, lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, id := range l {
			id = strings.TrimPrefix(strings.TrimSpace(id), "UBUNTU-")
			if cveRE.MatchString(id) && id != self {
				out = append(out, id)
			}
		}
	}
	return out
}

// convert maps one affected entry, with Ubuntu's priority for it if any. A
// non-empty note means "skipped, and why"; an error means the record is bad.
func convert(af affected) (out events.Affected, priority, note string, err error) {
	eco, release, pro, note := ecosystem(af.Package.Ecosystem)
	if note != "" {
		return events.Affected{}, "", note, nil
	}
	out = events.Affected{Ecosystem: eco, Release: release, Pro: pro, Package: strings.TrimSpace(af.Package.Name)}
	if out.Package == "" {
		return events.Affected{}, "", "", errors.New("package name is missing")
	}
	for _, rg := range af.Ranges {
		switch rg.Type {
		case "ECOSYSTEM":
		case "SEMVER":
			// Only gems use SEMVER ranges in the feeds we read; a SEMVER
			// range for a distribution package would compare wrongly.
			if eco != events.EcosystemRubyGems {
				continue
			}
		default: // GIT ranges name commits, not packages.
			continue
		}
		ranges, err := convertEvents(rg.Events)
		if err != nil {
			return events.Affected{}, "", "", err
		}
		out.Ranges = append(out.Ranges, ranges...)
	}
	out.Versions = af.Versions
	out.FixedVersion = advisory.HighestFixed(eco, out.Ranges)
	if len(af.EcosystemSpecific) > 0 && eco == events.EcosystemUbuntu {
		var es ecosystemSpecific
		if err := json.Unmarshal(af.EcosystemSpecific, &es, decodeOptions); err != nil {
			return events.Affected{}, "", "", fmt.Errorf("ecosystem_specific: %w", err)
		}
		out.Binaries = binaries(es.Binaries)
		priority = es.UbuntuPriority
	}
	return out, priority, "", nil
}

// convertEvents turns an OSV event list into ranges: each introduced opens a
// range, the next fixed or last_affected closes it. An open range at the end
// is affected up to the newest version.
func convertEvents(evs []stringObject) ([]events.VersionRange, error) {
	var out []events.VersionRange
	var cur *events.VersionRange
	for i, ev := range evs {
		if len(ev) != 1 {
			return nil, fmt.Errorf("range event %d has %d keys, want 1", i, len(ev))
		}
		for _, f := range ev {
			k, v := f.name, f.value
			switch k {
			case "introduced":
				if cur != nil {
					out = append(out, *cur)
				}
				if v == "0" {
					v = ""
				}
				cur = &events.VersionRange{Introduced: v}
			case "fixed", "last_affected":
				if cur == nil {
					// Tolerate a closing event without an introduced one:
					// affected from the beginning.
					cur = &events.VersionRange{}
				}
				if k == "fixed" {
					cur.Fixed = v
				} else {
					cur.LastAffected = v
				}
				out = append(out, *cur)
				cur = nil
			case "limit":
			default:
				return nil, fmt.Errorf("range event %d: unknown kind %.32q", i, k)
			}
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, nil
}

var ubuntuVersion = regexp.MustCompile(`^[0-9]{2}\.[0-9]{2}$`)

// ecosystem maps an OSV ecosystem: "Debian:12", "Debian:3.0",
// "Ubuntu:22.04:LTS", "Ubuntu:24.10", "Ubuntu:Pro:16.04:LTS", "RubyGems".
// Variants Patchfleet cannot match to a host (FIPS, real-time kernels, a
// Debian ecosystem without release) come back as a note.
func ecosystem(s string) (eco, release string, pro bool, note string) {
	parts := strings.Split(s, ":")
	switch parts[0] {
	case "RubyGems":
		if len(parts) != 1 {
			return "", "", false, fmt.Sprintf("ecosystem %.64q: unexpected qualifier", s)
		}
		return events.EcosystemRubyGems, "", false, ""
	case "Debian":
		if len(parts) != 2 {
			return "", "", false, fmt.Sprintf("ecosystem %.64q: no single Debian release", s)
		}
		r, ok := advisory.DebianRelease(parts[1])
		if !ok {
			return "", "", false, fmt.Sprintf("ecosystem %.64q: unknown Debian release", s)
		}
		return events.EcosystemDebian, r, false, ""
	case "Ubuntu":
		for _, p := range parts[1:] {
			switch {
			case p == "Pro":
				pro = true
			case p == "LTS":
			case ubuntuVersion.MatchString(p) && release == "":
				release = p
			default:
				return "", "", false, fmt.Sprintf("ecosystem %.64q: unsupported Ubuntu variant %.32q", s, p)
			}
		}
		if release == "" {
			return "", "", false, fmt.Sprintf("ecosystem %.64q: no Ubuntu release", s)
		}
		return events.EcosystemUbuntu, release, pro, ""
	}
	return "", "", false, fmt.Sprintf("ecosystem %.64q not handled", s)
}

// severities gathers every severity a record states and picks one: the
// distribution's own priority first (it is what Ubuntu's hosts get patched
// by), then the highest CVSS rating, then GitHub's label.
type severities struct {
	ubuntu, cvss, github events.Severity
	ubuntuRaw            string
	cvssRaw              string
	githubRaw            string
}

func (s *severities) addCVSS(list []severity, notes *[]string) {
	for _, sv := range list {
		switch sv.Type {
		case "CVSS_V3", "CVSS_V4":
			got, _, err := advisory.FromCVSS(sv.Score)
			if err != nil {
				*notes = append(*notes, err.Error())
				continue
			}
			if s.cvssRaw == "" || got.Rank() > s.cvss.Rank() {
				s.cvss, s.cvssRaw = got, sv.Score
			}
		case "Ubuntu":
			s.priority(sv.Score)
		}
	}
}

func (s *severities) priority(p string) {
	got := advisory.FromUbuntuPriority(p)
	if got == events.SeverityUnknown {
		return
	}
	if s.ubuntuRaw == "" || got.Rank() > s.ubuntu.Rank() {
		s.ubuntu, s.ubuntuRaw = got, strings.ToLower(p)
	}
}

// database reads severities from database_specific, which is free-form: a
// shape we do not expect is noted, never a reason to drop the record.
func (s *severities) database(raw jsontext.Value, notes *[]string) {
	if len(raw) == 0 || string(raw) == "null" {
		return
	}
	var db databaseSpecific
	if err := json.Unmarshal(raw, &db, decodeOptions); err != nil {
		*notes = append(*notes, fmt.Sprintf("database_specific ignored: %v", err))
		return
	}
	if len(db.Severity) > 0 {
		var label string
		if json.Unmarshal(db.Severity, &label, decodeOptions) == nil && label != "" {
			if got := advisory.FromGitHub(label); got != events.SeverityUnknown {
				s.github, s.githubRaw = got, label
			}
		}
	}
	for _, c := range db.CVEsMap.CVEs {
		s.addCVSS(c.Severity, notes)
	}
}

func (s severities) result() (events.Severity, string) {
	switch {
	case s.ubuntuRaw != "":
		return s.ubuntu, s.ubuntuRaw
	case s.cvssRaw != "":
		return s.cvss, s.cvssRaw
	case s.githubRaw != "":
		return s.github, s.githubRaw
	}
	return events.SeverityUnknown, ""
}
