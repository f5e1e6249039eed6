// Package debtracker reads the Debian security tracker's JSON export
// (https://security-tracker.debian.org/tracker/data/json): package → issue
// (CVE-… or TEMP-…) → {description, releases → {status, fixed_version,
// urgency}}. The export is about 50 MB, so it is decoded token by token and
// one source package at a time; what is kept is only the normalised result.
package debtracker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
)

// Options carries what the export itself does not say.
type Options struct {
	// Modified stamps every advisory: the export has no dates, so the
	// caller passes the snapshot's time (Last-Modified, file mtime). It is
	// not part of the content hash.
	Modified time.Time
}

type issue struct {
	Description string          `json:"description"`
	Releases    json.RawMessage `json:"releases"`
}

type release struct {
	Status       string `json:"status"`
	FixedVersion string `json:"fixed_version"`
	Urgency      string `json:"urgency"`
}

// RecordError reports one issue that could not be used.
type RecordError struct {
	Record string // issue id, or "package <name>" when the package itself was malformed
	Err    error
}

func (e *RecordError) Error() string { return fmt.Sprintf("debian tracker %s: %v", e.Record, e.Err) }
func (e *RecordError) Unwrap() error { return e.Err }

// Decode reads the export from r. The tracker lists an issue once per
// source package it touches, so one advisory per issue can only be complete
// at the end: advisories are handed to emit in id order once the document
// is read. A malformed issue is handed to bad and left out; a syntax error
// in the document ends decoding with an error.
func Decode(r io.Reader, opts Options, emit func(advisory.Advisory) error, bad func(*RecordError)) error {
	if opts.Modified.IsZero() {
		return errors.New("debian tracker: options: Modified is required")
	}
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return fmt.Errorf("debian tracker: %w", err)
	}
	acc := map[string]*advisory.Advisory{}
	failed := map[string]error{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("debian tracker: %w", err)
		}
		pkg, _ := tok.(string)
		var issues map[string]json.RawMessage
		if err := dec.Decode(&issues); err != nil {
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) {
				return fmt.Errorf("debian tracker: package %.64q: %w", pkg, err)
			}
			bad(&RecordError{Record: "package " + pkg, Err: err})
			continue
		}
		for id, raw := range issues {
			if _, ok := failed[id]; ok {
				continue
			}
			if err := add(acc, pkg, id, raw, opts); err != nil {
				failed[id] = fmt.Errorf("package %.64q: %w", pkg, err)
				delete(acc, id)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return fmt.Errorf("debian tracker: %w", err)
	}

	ids := make([]string, 0, len(acc)+len(failed))
	for id := range acc {
		ids = append(ids, id)
	}
	for id := range failed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err, ok := failed[id]; ok {
			bad(&RecordError{Record: name(id), Err: err})
			continue
		}
		a := acc[id].Normalized()
		if err := a.Validate(); err != nil {
			if errors.Is(err, advisory.ErrNoAffected) && len(a.Affected) == 0 {
				continue // every release resolved as not affected
			}
			bad(&RecordError{Record: name(id), Err: err})
			continue
		}
		if err := emit(a); err != nil {
			return err
		}
	}
	return nil
}

func name(id string) string {
	if id == "" {
		return "(no id)"
	}
	return id
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("at offset %d: got %v, want %q", dec.InputOffset(), tok, want)
	}
	return nil
}

// add folds one (package, issue) into the advisory for the issue.
func add(acc map[string]*advisory.Advisory, pkg, id string, raw json.RawMessage, opts Options) error {
	var is issue
	if err := json.Unmarshal(raw, &is); err != nil {
		return err
	}
	var rels map[string]release
	// The export writes an issue without releases as [] rather than {}.
	if trimmed := bytes.TrimSpace(is.Releases); len(trimmed) > 0 && trimmed[0] == '[' {
		var empty []json.RawMessage
		if err := json.Unmarshal(trimmed, &empty); err != nil || len(empty) != 0 {
			return errors.New("releases is a non-empty list")
		}
	} else if len(trimmed) > 0 {
		if err := json.Unmarshal(trimmed, &rels); err != nil {
			return fmt.Errorf("releases: %w", err)
		}
	}
	a, ok := acc[id]
	if !ok {
		a = &advisory.Advisory{
			ID:         id,
			Source:     advisory.SourceDebianTracker,
			Summary:    advisory.Truncate(is.Description),
			Modified:   opts.Modified.UTC(),
			Severity:   events.SeverityUnknown,
			References: []string{"https://security-tracker.debian.org/tracker/" + id},
		}
		acc[id] = a
	}
	names := make([]string, 0, len(rels))
	for name := range rels {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rel := rels[name]
		if sev := advisory.FromDebianUrgency(rel.Urgency); sev.Rank() > a.Severity.Rank() {
			a.Severity, a.SourceSeverity = sev, rel.Urgency
		}
		var fixed string
		switch rel.Status {
		case "resolved":
			if rel.FixedVersion == "0" || rel.FixedVersion == "" {
				continue // never affected in this release
			}
			fixed = rel.FixedVersion
		case "open":
		default: // undetermined: not known to be affected
			continue
		}
		r, ok := advisory.DebianRelease(name)
		if !ok {
			a.Notes = append(a.Notes, fmt.Sprintf("package %s: release %.32q unknown, skipped", pkg, name))
			continue
		}
		a.Affected = append(a.Affected, events.Affected{
			Ecosystem: events.EcosystemDebian, Release: r, Package: pkg, FixedVersion: fixed,
		})
	}
	return nil
}
