// Package feed reads advisory feeds — a JSON file, a directory of them, an OSV zip dump or
// an HTTP(S) URL, in any format advisory-ingest reads — and hands over each advisory as the
// AdvisorySubmitted event an external publisher puts on the FEEDS stream.
//
// It is advisory-ingest's own reader (internal/source and the parsers), exposed here for
// tools/feedpub: the parsers stay internal to the service, and what other programs see is
// the contract's event, not the service's model.
package feed

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/source"
)

// Formats lists the formats Options.Format accepts ("" detects them per document).
var Formats = []string{string(source.FormatOSV), string(source.FormatDebianTracker), string(source.FormatUbuntuNotices), string(source.FormatDebianDSAList)}

// Options tune reading.
type Options struct {
	Format     string       // "" to detect, or one of Formats
	HTTPClient *http.Client // for URLs; nil: a client with a 5 minute timeout
}

// Submission is one advisory read from a feed.
type Submission struct {
	Event events.AdvisorySubmitted
	// Hash is the advisory's content hash, as advisory-ingest computes it: equal for two
	// reads of an unchanged advisory.
	Hash string
}

// Bad is a record, or a whole document, that could not be used.
type Bad struct {
	Origin string
	Err    error
	// Skipped: well formed, but about nothing Patchfleet handles (another ecosystem).
	Skipped bool
}

func (b Bad) Error() string { return b.Origin + ": " + b.Err.Error() }

// Read reads location — a path, or an http(s):// URL fetched once — and calls yield for each
// good advisory and bad for each record that is not; an error from yield stops reading and
// is returned.
func Read(ctx context.Context, location string, opts Options, yield func(Submission) error, bad func(Bad)) error {
	switch f := source.Format(opts.Format); f {
	case source.FormatAuto, source.FormatOSV, source.FormatDebianTracker, source.FormatUbuntuNotices, source.FormatDebianDSAList:
	default:
		return fmt.Errorf("read %s: unknown format %q (want one of %s)", location, opts.Format, strings.Join(Formats, ", "))
	}
	sopts := source.Options{Format: source.Format(opts.Format)}
	y := func(r source.Record) error {
		return yield(Submission{Event: r.Advisory.Submission(r.Origin), Hash: r.Advisory.ContentHash()})
	}
	b := func(br source.BadRecord) { bad(Bad{Origin: br.Origin, Err: br.Err, Skipped: br.Skipped()}) }
	if strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://") {
		p := &source.Poller{URL: location, Options: sopts, Client: opts.HTTPClient}
		_, err := p.Poll(ctx, y, b)
		return err
	}
	return source.ReadPath(ctx, location, sopts, y, b)
}

// Message is s as an event ready for the FEEDS stream. Its id is derived from the advisory
// id and content hash, so publishing an unchanged advisory again is deduplicated by
// JetStream (within its duplicate window) and, after that, recognised as unchanged by
// advisory-ingest.
func Message(s Submission, producer string, now time.Time) (events.Message, error) {
	return events.NewDerived(s.Event, events.Origin{Producer: producer, CorrelationID: s.Event.AdvisoryID}, now, s.Event.AdvisoryID, s.Hash)
}

// ContentHash is the content hash advisory-ingest computes for a submitted advisory.
func ContentHash(e events.AdvisorySubmitted) string {
	return advisory.FromSubmission(e).ContentHash()
}
