package query

import (
	"context"
	"time"

	"github.com/patchfleet/patchfleet/events"
)

// Advisory-ingest's request/reply subjects (the micro service "advisories"). The same
// queries are served over HTTP: GET /advisories/{id}, GET /advisories?cve=…,
// GET /advisories?since=…&cursor=…&limit=….
const (
	ServiceAdvisories      = "advisories"
	SubjectAdvisory        = "pf.query.advisories.get"
	SubjectAdvisoriesByCVE = "pf.query.advisories.cve"
	SubjectAdvisoriesSince = "pf.query.advisories.since"
)

// AdvisoryRequest asks for one advisory by id.
type AdvisoryRequest struct {
	ID string `json:"id"`
}

// AdvisoriesByCVERequest asks for the advisories that name a CVE (as an alias, or as their
// own id).
type AdvisoriesByCVERequest struct {
	CVE   string `json:"cve"`
	Limit int    `json:"limit,omitempty"` // default 100, at most 1000
}

// AdvisoriesSinceRequest asks for the advisories modified at or after Since, oldest first,
// paginated with an opaque cursor.
type AdvisoriesSinceRequest struct {
	Since  time.Time `json:"since"`
	Cursor string    `json:"cursor,omitempty"`
	Limit  int       `json:"limit,omitempty"` // default 100, at most 1000
}

// Advisory is an advisory's current revision as stored by advisory-ingest: the content of
// its last SecurityAdvisoryPublished, and whether it has since been withdrawn.
type Advisory struct {
	events.SecurityAdvisoryPublished
	ContentHash string     `json:"content_hash"`
	Origin      string     `json:"origin"` // where it was last read: file, zip entry, URL, FEEDS event
	Withdrawn   *time.Time `json:"withdrawn,omitempty"`
}

// AdvisoriesResponse is a list, or a page, of advisories.
type AdvisoriesResponse struct {
	Advisories []Advisory `json:"advisories"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// Advisory returns one advisory; a RemoteError with Code 404 if it is unknown.
func (c Client) Advisory(ctx context.Context, req AdvisoryRequest) (Advisory, error) {
	var out Advisory
	return out, c.call(ctx, SubjectAdvisory, req, &out)
}

// AdvisoriesByCVE returns the advisories about a CVE.
func (c Client) AdvisoriesByCVE(ctx context.Context, req AdvisoriesByCVERequest) (AdvisoriesResponse, error) {
	var out AdvisoriesResponse
	return out, c.call(ctx, SubjectAdvisoriesByCVE, req, &out)
}

// AdvisoriesSince returns one page of advisories modified since a time.
func (c Client) AdvisoriesSince(ctx context.Context, req AdvisoriesSinceRequest) (AdvisoriesResponse, error) {
	var out AdvisoriesResponse
	return out, c.call(ctx, SubjectAdvisoriesSince, req, &out)
}
