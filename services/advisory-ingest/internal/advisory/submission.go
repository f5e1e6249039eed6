package advisory

import "github.com/patchfleet/patchfleet/events"

// Submission is the advisory as an AdvisorySubmitted event, the form external feed
// publishers hand advisories to ingest in.
func (a Advisory) Submission(origin string) events.AdvisorySubmitted {
	n := a.Normalized()
	s := events.AdvisorySubmitted{
		AdvisoryID:     n.ID,
		Source:         n.Source,
		Origin:         origin,
		Aliases:        n.Aliases,
		Title:          n.Title,
		Summary:        n.Summary,
		Published:      n.Published,
		Modified:       n.Modified,
		Severity:       n.Severity,
		SourceSeverity: n.SourceSeverity,
		KnownExploited: n.KnownExploited,
		Affected:       n.Affected,
		References:     n.References,
	}
	if !n.Withdrawn.IsZero() {
		w := n.Withdrawn
		s.Withdrawn = &w
	}
	return s
}

// FromSubmission is the advisory an AdvisorySubmitted carries, normalised. The caller
// validates it: a publisher's advisory gets the same checks as a parsed one.
func FromSubmission(s events.AdvisorySubmitted) Advisory {
	a := Advisory{
		ID:             s.AdvisoryID,
		Source:         s.Source,
		Aliases:        s.Aliases,
		Title:          s.Title,
		Summary:        Truncate(s.Summary),
		Published:      s.Published,
		Modified:       s.Modified,
		Severity:       s.Severity,
		SourceSeverity: s.SourceSeverity,
		KnownExploited: s.KnownExploited,
		Affected:       s.Affected,
		References:     s.References,
	}
	if s.Withdrawn != nil {
		a.Withdrawn = *s.Withdrawn
	}
	return a.Normalized()
}
