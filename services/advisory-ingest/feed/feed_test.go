package feed

import (
	"context"
	"testing"
	"time"
)

func TestReadSamplesAsSubmissions(t *testing.T) {
	var subs []Submission
	var bads []Bad
	err := Read(context.Background(), "../testdata", Options{}, func(s Submission) error {
		subs = append(subs, s)
		return nil
	}, func(b Bad) { bads = append(bads, b) })
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 21 {
		t.Errorf("%d submissions, want 21", len(subs))
	}
	for _, b := range bads {
		if !b.Skipped {
			t.Errorf("bad record: %v", b)
		}
	}
	for _, s := range subs {
		if err := s.Event.Validate(); err != nil {
			t.Errorf("%s: %v", s.Event.Origin, err)
		}
		if got := ContentHash(s.Event); got != s.Hash {
			t.Errorf("%s: hash of the submission %s, of the advisory %s", s.Event.AdvisoryID, got, s.Hash)
		}
		m1, err := Message(s, "test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m2, _ := Message(s, "test", time.Now().Add(time.Hour))
		if m1.ID != m2.ID || m1.Subject != "pf.feeds.AdvisorySubmitted.v1" {
			t.Errorf("%s: ids %s, %s on %s", s.Event.AdvisoryID, m1.ID, m2.ID, m1.Subject)
		}
	}
}

func TestReadRefusesUnknownFormat(t *testing.T) {
	err := Read(context.Background(), "../testdata", Options{Format: "rss"}, func(Submission) error { return nil }, func(Bad) {})
	if err == nil {
		t.Fatal("unknown format accepted")
	}
}
