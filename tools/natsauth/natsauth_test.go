package natsauth

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/patchfleet/patchfleet/events"
)

// The committed deployments/nats files are what the generator writes today: a change to the
// catalog or the roles that was not regenerated fails here.
func TestCommittedConfigIsCurrent(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "deployments", "nats")
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%v (run: cd tools && go run ./natsauth/cmd/natsauth generate ../deployments/nats)", err)
			continue
		}
		if string(got) != want {
			t.Errorf("deployments/nats/%s is stale: run cd tools && go run ./natsauth/cmd/natsauth generate ../deployments/nats", name)
		}
	}
}

func TestEveryEventHasAPublisherAndNamesAreUnique(t *testing.T) {
	published := map[string][]string{}
	durables := map[string]string{}
	users := map[string]bool{}
	for _, r := range Roles() {
		if users[r.User] {
			t.Errorf("user %s twice", r.User)
		}
		users[r.User] = true
		// One subject token: _INBOX_<user>.> must not cover another user's inbox.
		if r.User == "" || strings.ContainsAny(r.User, ".*> \t\r\n") {
			t.Errorf("user %q is not one subject token", r.User)
		}
		if _, err := r.Permissions(); err != nil {
			t.Error(err)
		}
		for _, typ := range r.Publishes {
			published[typ] = append(published[typ], r.User)
		}
		for _, c := range r.Consumers {
			if other, ok := durables[c.Name]; ok {
				t.Errorf("durable consumer %s belongs to %s and %s", c.Name, other, r.User)
			}
			durables[c.Name] = r.User
		}
	}
	for _, s := range events.Catalog() {
		if len(published[s.Type]) == 0 {
			t.Errorf("nobody may publish %s", s.Type)
		}
	}
	// The work queue has exactly one producer: a job request from anyone else would run.
	if got := published["UpgradeRequested"]; !slices.Equal(got, []string{"planner"}) {
		t.Errorf("UpgradeRequested publishers = %v, want [planner]", got)
	}
}

func TestUnknownEventIsAnError(t *testing.T) {
	r := Role{User: "x", Publishes: []string{"NoSuchEvent"}}
	if _, err := r.Permissions(); err == nil {
		t.Fatal("an event type outside the catalog was accepted")
	}
}
