package provider

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq6QHhzQXFvEU7uL6G3qT3cm9sF7SwSx8g2BZ5Rxk2g"

func TestParseProvision(t *testing.T) {
	for _, tc := range []struct {
		out     string
		wantErr bool
		id      string
		port    int
	}{
		{`{"host_id":"web-7","name":"web-7.example.net","address":"203.0.113.7","port":2222,"host_key":"` + key + `"}`, false, "web-7", 2222},
		{`{"name":"web-8","address":"203.0.113.8","host_key":"` + key + `"}` + "\n", false, "web-8", 22},
		{`{"name":"web-8","address":"203.0.113.8"}`, true, "", 0},
		{`{"name":"web-8","address":"203.0.113.8","host_key":"not a key"}`, true, "", 0},
		{`{"name":"web-8","address":"203.0.113.8","port":70000,"host_key":"` + key + `"}`, true, "", 0},
		{`{"name":"web-8","address":"203.0.113.8","host_key":"` + key + `","extra":1}`, true, "", 0},
		{`{"name":"web\u0000","address":"x","host_key":"` + key + `"}`, true, "", 0},
		{`{"name":"a","address":"b","host_key":"` + key + `"} {"name":"c"}`, true, "", 0},
		{`web-7 203.0.113.7`, true, "", 0},
		{``, true, "", 0},
	} {
		h, err := ParseProvision([]byte(tc.out))
		if (err != nil) != tc.wantErr || err == nil && (h.ID != tc.id || h.Port != tc.port) {
			t.Errorf("ParseProvision(%q) = %+v, %v", tc.out, h, err)
		}
	}
}

func TestHooksRunArgvWithoutAShellAndTimeOut(t *testing.T) {
	var log bytes.Buffer
	h := Hooks{Provision: []string{"printf", `{"name":"%s","address":"127.0.0.1","host_key":"` + key + `"}`},
		Switch: []string{"sh", "-c", `test "$1" = 'a;b' && test "$2" = '$(x)'`, "switch"}, Retire: []string{"sleep"}, Timeout: 300 * time.Millisecond}
	n, err := h.ProvisionHost(context.Background(), "old; reboot", &log)
	if err != nil || n.Name != "old; reboot" {
		t.Fatalf("provision: %+v %v\n%s", n, err, log.String())
	}
	if err := h.SwitchTo(context.Background(), "a;b", "$(x)", &log); err != nil {
		t.Errorf("switch got its arguments altered: %v", err)
	}
	start := time.Now()
	if err := h.RetireHost(context.Background(), "30", &log); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("retire: %v after %s, want a timeout", err, time.Since(start))
	}
	for _, s := range []string{"provider hook provision old; reboot", "hook provision: {", "provider hook retire failed"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, log.String())
		}
	}
}
