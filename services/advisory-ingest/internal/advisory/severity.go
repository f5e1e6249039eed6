package advisory

import (
	"fmt"
	"strings"

	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"

	"github.com/patchfleet/patchfleet/events"
)

// CVSS scoring uses github.com/pandatix/go-cvss: maintained, specification
// conformant for v3.0, v3.1 and v4.0 (v4.0 scoring needs the spec's macro
// vector table, which is not something to retype), and without dependencies
// beyond the standard library at run time.

// FromCVSS computes the base score of a CVSS v3.0, v3.1 or v4.0 vector and
// maps its qualitative rating to a severity (None becomes negligible).
func FromCVSS(vector string) (events.Severity, float64, error) {
	var score float64
	var rating string
	var err error
	switch {
	case strings.HasPrefix(vector, "CVSS:3.1/"):
		var v *gocvss31.CVSS31
		if v, err = gocvss31.ParseVector(vector); err == nil {
			score = v.BaseScore()
			rating, err = gocvss31.Rating(score)
		}
	case strings.HasPrefix(vector, "CVSS:3.0/"):
		var v *gocvss30.CVSS30
		if v, err = gocvss30.ParseVector(vector); err == nil {
			score = v.BaseScore()
			rating, err = gocvss30.Rating(score)
		}
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		var v *gocvss40.CVSS40
		if v, err = gocvss40.ParseVector(vector); err == nil {
			score = v.Score()
			rating, err = gocvss40.Rating(score)
		}
	default:
		return events.SeverityUnknown, 0, fmt.Errorf("cvss vector %.64q: unsupported version", vector)
	}
	if err != nil {
		return events.SeverityUnknown, 0, fmt.Errorf("cvss vector %.64q: %w", vector, err)
	}
	if rating == "NONE" {
		return events.SeverityNegligible, score, nil
	}
	return events.Severity(strings.ToLower(rating)), score, nil
}

// FromUbuntuPriority maps an Ubuntu CVE priority (negligible, low, medium,
// high, critical; "untriaged" and anything else → unknown).
func FromUbuntuPriority(p string) events.Severity {
	switch s := events.Severity(strings.ToLower(strings.TrimSpace(p))); s {
	case events.SeverityNegligible, events.SeverityLow, events.SeverityMedium, events.SeverityHigh, events.SeverityCritical:
		return s
	}
	return events.SeverityUnknown
}

// FromDebianUrgency maps a Debian security tracker urgency. The tracker marks
// urgencies it derived from NVD with "**" ("high**"); the marker is dropped.
// "unimportant" is negligible; "not yet assigned" and "end-of-life" say
// nothing about severity.
func FromDebianUrgency(u string) events.Severity {
	u = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(u), "*"))
	switch u {
	case "unimportant":
		return events.SeverityNegligible
	case "low", "medium", "high":
		return events.Severity(u)
	}
	return events.SeverityUnknown
}

// FromGitHub maps GitHub's advisory severity (LOW, MODERATE, HIGH, CRITICAL).
func FromGitHub(s string) events.Severity {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "LOW":
		return events.SeverityLow
	case "MODERATE", "MEDIUM":
		return events.SeverityMedium
	case "HIGH":
		return events.SeverityHigh
	case "CRITICAL":
		return events.SeverityCritical
	}
	return events.SeverityUnknown
}

// Max returns the more severe of two severities.
func Max(a, b events.Severity) events.Severity {
	if b.Rank() > a.Rank() {
		return b
	}
	return a
}
