// Package auth is the console's sign-in: tokens mapped to people's names, server-side
// sessions behind a random cookie id, and a per-session CSRF token. It holds no IO beyond
// the random source, so its rules are tested directly.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// MinTokenLength keeps guessable tokens out.
const MinTokenLength = 16

// Tokens maps sign-in tokens to names. Only SHA-256 digests are kept, and a lookup compares
// against every entry in constant time.
type Tokens struct {
	entries []entry
}

type entry struct {
	digest [sha256.Size]byte
	name   string
}

// ParseTokens reads "name=token" entries separated by newlines or commas; blank lines and
// lines starting with # are ignored. Errors name the entry by position, never the token.
func ParseTokens(raw string) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]bool{}
	var errs []error
	n := 0
	var items []string
	for _, line := range strings.Split(raw, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			items = append(items, strings.Split(line, ",")...)
		}
	}
	for _, line := range items {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		n++
		name, tok, ok := strings.Cut(line, "=")
		name, tok = strings.TrimSpace(name), strings.TrimSpace(tok)
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("entry %d: want name=token", n))
			continue
		case len(tok) < MinTokenLength:
			errs = append(errs, fmt.Errorf("entry %d (%s): token shorter than %d characters", n, name, MinTokenLength))
			continue
		}
		d := sha256.Sum256([]byte(tok))
		if seen[d] {
			errs = append(errs, fmt.Errorf("entry %d (%s): token used twice", n, name))
			continue
		}
		seen[d] = true
		t.entries = append(t.entries, entry{digest: d, name: name})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Lookup returns the name a token belongs to. Every entry is compared, in constant time.
func (t *Tokens) Lookup(token string) (string, bool) {
	d := sha256.Sum256([]byte(token))
	name, found := "", 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			name, found = e.name, 1
		}
	}
	return name, found == 1 && token != ""
}

// NewToken returns a fresh random token (for a generated token file).
func NewToken() string { return random(24) }

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// Session is one signed-in person. The id travels in the cookie; everything else stays here.
type Session struct {
	ID      string
	Name    string
	CSRF    string
	Expires time.Time
	flash   string
}

// Sessions keeps sessions in memory; a restart signs everyone out.
type Sessions struct {
	TTL time.Duration
	Now func() time.Time

	mu   sync.Mutex
	byID map[string]*Session
}

// NewSessions returns an empty store whose sessions last ttl.
func NewSessions(ttl time.Duration) *Sessions {
	return &Sessions{TTL: ttl, Now: time.Now, byID: map[string]*Session{}}
}

// Create starts a session for name with a fresh id and CSRF token.
func (s *Sessions) Create(name string) Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	for id, v := range s.byID { // sweep expired ones
		if now.After(v.Expires) {
			delete(s.byID, id)
		}
	}
	v := &Session{ID: random(32), Name: name, CSRF: random(32), Expires: now.Add(s.TTL)}
	s.byID[v.ID] = v
	return *v
}

// Get returns a live session.
func (s *Sessions) Get(id string) (Session, bool) {
	if id == "" {
		return Session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[id]
	if !ok {
		return Session{}, false
	}
	if s.Now().After(v.Expires) {
		delete(s.byID, id)
		return Session{}, false
	}
	return *v, true
}

// Delete ends a session.
func (s *Sessions) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// Flash keeps a one-time message for the session's next page.
func (s *Sessions) Flash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.byID[id]; ok {
		v.flash = msg
	}
}

// TakeFlash returns and clears the session's message.
func (s *Sessions) TakeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[id]
	if !ok {
		return ""
	}
	m := v.flash
	v.flash = ""
	return m
}

// ValidCSRF compares a submitted token with the session's, in constant time.
func ValidCSRF(s Session, submitted string) bool {
	return s.CSRF != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(submitted)) == 1
}
