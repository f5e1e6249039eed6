// Package usn reads pages of Ubuntu's security notices API
// (https://ubuntu.com/security/notices.json?limit=&offset=), Canonical's
// non-OSV format: a notice (USN-…) lists, per release codename, the source
// and binary packages that carry the fix.
package usn

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

type notice struct {
	ID              string                `json:"id"`
	Title           string                `json:"title"`
	Summary         string                `json:"summary"`
	Description     string                `json:"description"`
	Published       string                `json:"published"`
	Priority        string                `json:"priority"`
	CVEIDs          []string              `json:"cves_ids"`
	References      []json.RawMessage     `json:"references"`
	ReleasePackages map[string][]pkgEntry `json:"release_packages"`
	Releases        []struct {
		Codename string `json:"codename"`
		Version  string `json:"version"`
	} `json:"releases"`
}

type pkgEntry struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	IsSource   bool   `json:"is_source"`
	SourceLink string `json:"source_link"`
}

// Page is the paging envelope of a response.
type Page struct {
	Offset, Limit, Total int
}

// RecordError reports one notice that could not be used.
type RecordError struct {
	Record string // notice id, or "notices[i]" when it has none
	Err    error
}

func (e *RecordError) Error() string { return fmt.Sprintf("ubuntu notices %s: %v", e.Record, e.Err) }
func (e *RecordError) Unwrap() error { return e.Err }

// Decode reads one response, streaming the notices list: each notice is
// decoded, normalised and handed to emit before the next is read. A notice
// that names no source package with a release (the oldest notices list only
// binaries) is skipped as advisory.ErrNoAffected through bad.
func Decode(r io.Reader, emit func(advisory.Advisory) error, bad func(*RecordError)) (Page, error) {
	var page Page
	dec := json.NewDecoder(r)
	if err := delim(dec, '{'); err != nil {
		return page, fmt.Errorf("ubuntu notices: %w", err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return page, fmt.Errorf("ubuntu notices: %w", err)
		}
		key, _ := tok.(string)
		var n *int
		switch key {
		case "notices":
			if err := notices(dec, emit, bad); err != nil {
				return page, err
			}
			continue
		case "offset":
			n = &page.Offset
		case "limit":
			n = &page.Limit
		case "total_results":
			n = &page.Total
		}
		if n == nil {
			var skip json.RawMessage
			err = dec.Decode(&skip)
		} else {
			err = dec.Decode(n)
		}
		if err != nil {
			return page, fmt.Errorf("ubuntu notices: %s: %w", key, err)
		}
	}
	if err := delim(dec, '}'); err != nil {
		return page, fmt.Errorf("ubuntu notices: %w", err)
	}
	return page, nil
}

func notices(dec *json.Decoder, emit func(advisory.Advisory) error, bad func(*RecordError)) error {
	if err := delim(dec, '['); err != nil {
		return fmt.Errorf("ubuntu notices: notices: %w", err)
	}
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("ubuntu notices: notices[%d]: %w", i, err)
		}
		var n notice
		if err := json.Unmarshal(raw, &n); err != nil {
			bad(&RecordError{Record: fmt.Sprintf("notices[%d]", i), Err: err})
			continue
		}
		a, err := normalise(n)
		if err != nil {
			id := n.ID
			if id == "" {
				id = fmt.Sprintf("notices[%d]", i)
			}
			bad(&RecordError{Record: id, Err: err})
			continue
		}
		if err := emit(a); err != nil {
			return err
		}
	}
	return delim(dec, ']')
}

func delim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("at offset %d: got %v, want %q", dec.InputOffset(), tok, want)
	}
	return nil
}

func normalise(n notice) (advisory.Advisory, error) {
	if n.ID == "" {
		return advisory.Advisory{}, errors.New("id is missing")
	}
	a := advisory.Advisory{
		ID:         n.ID,
		Source:     advisory.SourceUbuntuNotices,
		Aliases:    n.CVEIDs,
		Title:      strings.TrimSpace(n.Title),
		Summary:    advisory.Truncate(n.Description),
		Severity:   advisory.FromUbuntuPriority(n.Priority),
		References: []string{"https://ubuntu.com/security/notices/" + n.ID},
	}
	if a.Severity != events.SeverityUnknown {
		a.SourceSeverity = strings.ToLower(n.Priority)
	}
	if a.Title == "" {
		a.Title = strings.TrimSpace(n.Summary)
	}
	if n.Published == "" {
		return advisory.Advisory{}, errors.New("published is missing")
	}
	var err error
	// The API writes times without a zone; they are UTC.
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", time.RFC3339Nano} {
		if a.Published, err = time.Parse(layout, n.Published); err == nil {
			break
		}
	}
	if err != nil {
		return advisory.Advisory{}, fmt.Errorf("published %.40q is not a time", n.Published)
	}
	a.Published = a.Published.UTC()
	// The API has no modification time; a re-issued notice changes content,
	// which the content hash notices.
	a.Modified = a.Published

	versions := map[string]string{}
	for _, r := range n.Releases {
		versions[r.Codename] = r.Version
	}
	codenames := make([]string, 0, len(n.ReleasePackages))
	for c := range n.ReleasePackages {
		codenames = append(codenames, c)
	}
	slices.Sort(codenames)
	for _, codename := range codenames {
		release, ok := versions[codename]
		if !ok {
			release, ok = advisory.UbuntuRelease(codename)
		}
		if !ok {
			a.Notes = append(a.Notes, fmt.Sprintf("release %.32q unknown, skipped", codename))
			continue
		}
		affected, notes := releaseAffected(release, n.ReleasePackages[codename])
		a.Affected = append(a.Affected, affected...)
		for _, note := range notes {
			a.Notes = append(a.Notes, codename+": "+note)
		}
	}
	a = a.Normalized()
	if err := a.Validate(); err != nil {
		return advisory.Advisory{}, err
	}
	return a, nil
}

// releaseAffected turns one release's package list into affected source
// packages. A binary belongs to the source its source_link names
// (https://launchpad.net/ubuntu/+source/<name>), or to the only source
// listed; otherwise it cannot be placed and is noted.
func releaseAffected(release string, pkgs []pkgEntry) ([]events.Affected, []string) {
	var out []events.Affected
	index := map[string]int{}
	for _, p := range pkgs {
		if p.IsSource {
			index[p.Name] = len(out)
			out = append(out, events.Affected{
				Ecosystem: events.EcosystemUbuntu, Release: release, Package: p.Name, FixedVersion: p.Version,
			})
		}
	}
	var notes []string
	for _, p := range pkgs {
		if p.IsSource {
			continue
		}
		src := sourceFromLink(p.SourceLink)
		i, ok := index[src]
		if !ok && len(out) == 1 {
			i, ok = 0, true
		}
		if !ok {
			notes = append(notes, fmt.Sprintf("binary %.64q has no known source package, skipped", p.Name))
			continue
		}
		out[i].Binaries = append(out[i].Binaries, events.BinaryPackage{Name: p.Name, Version: p.Version})
	}
	return out, notes
}

func sourceFromLink(link string) string {
	_, after, ok := strings.Cut(link, "/+source/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(after, "/")
	return name
}
