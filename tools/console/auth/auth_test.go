package auth

import (
	"strings"
	"testing"
	"time"
)

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		raw, err string
		n        int
	}{
		{"alice=0123456789abcdef", "", 1},
		{"# comment, with a comma\nalice=0123456789abcdef, bob = fedcba9876543210\n\n", "", 2},
		{"alice=short", "entry 1 (alice): token shorter than 16", 0},
		{"=0123456789abcdef", "entry 1: want name=token", 0},
		{"alice", "entry 1: want name=token", 0},
		{"a=0123456789abcdef\nb=0123456789abcdef", "entry 2 (b): token used twice", 0},
	} {
		tok, err := ParseTokens(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTokens(%q): %v, want %q", tc.raw, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
				t.Errorf("error %q names the token", err)
			}
			continue
		}
		if err != nil || tok.Len() != tc.n {
			t.Errorf("ParseTokens(%q): %v, %d tokens, want %d", tc.raw, err, tok.Len(), tc.n)
		}
	}
}

func TestLookup(t *testing.T) {
	tok, err := ParseTokens("alice=0123456789abcdef,bob=fedcba9876543210")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"0123456789abcdef": "alice", "fedcba9876543210": "bob", "0123456789abcdeF": "", "": "", "alice": ""} {
		name, ok := tok.Lookup(in)
		if name != want || ok != (want != "") {
			t.Errorf("Lookup(%q) = %q %v, want %q", in, name, ok, want)
		}
	}
}

func TestSessions(t *testing.T) {
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSessions(time.Hour)
	s.Now = func() time.Time { return clock }
	a, b := s.Create("alice"), s.Create("alice")
	if a.ID == b.ID || a.CSRF == b.CSRF || len(a.ID) < 40 || len(a.CSRF) < 40 {
		t.Fatalf("sessions are not random: %+v %+v", a, b)
	}
	if got, ok := s.Get(a.ID); !ok || got.Name != "alice" {
		t.Fatalf("Get: %+v %v", got, ok)
	}
	if !ValidCSRF(a, a.CSRF) || ValidCSRF(a, b.CSRF) || ValidCSRF(a, "") || ValidCSRF(Session{}, "") {
		t.Error("ValidCSRF accepts the wrong token")
	}
	s.Flash(a.ID, "done")
	if s.TakeFlash(a.ID) != "done" || s.TakeFlash(a.ID) != "" {
		t.Error("flash is not taken once")
	}
	s.Delete(b.ID)
	if _, ok := s.Get(b.ID); ok {
		t.Error("a deleted session lives on")
	}
	clock = clock.Add(2 * time.Hour)
	if _, ok := s.Get(a.ID); ok {
		t.Error("an expired session lives on")
	}
	if _, ok := s.Get(""); ok {
		t.Error("the empty id is a session")
	}
}
