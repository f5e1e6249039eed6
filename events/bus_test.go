package events

import "testing"

func TestBusConfigInboxPrefix(t *testing.T) {
	for _, c := range []struct {
		prefix string
		ok     bool
	}{
		{"", true}, {UserInbox("advisory-ingest"), true}, {"_INBOX.planner", true},
		{"_INBOX.>", false}, {"_INBOX_*", false}, {"_INBOX.", false}, {".x", false}, {"a..b", false}, {"_INBOX planner", false},
	} {
		err := BusConfig{URL: "nats://127.0.0.1:4222", InboxPrefix: c.prefix}.Validate()
		if (err == nil) != c.ok {
			t.Errorf("inbox prefix %q: %v", c.prefix, err)
		}
	}
}
