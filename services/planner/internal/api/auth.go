package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/events/query"
)

// Token is a bearer token the HTTP API accepts; the name says whose it is in logs.
type Token struct {
	Name   string
	Secret string
}

// MinTokenLength is the shortest secret accepted.
const MinTokenLength = 16

// ParseTokens reads "name:secret" or bare secrets, one per line; blank lines and # comments
// are skipped. where names the source in errors (a variable or a file), never the secret.
func ParseTokens(text, where string) ([]Token, error) {
	var out []Token
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		if !ok {
			name, secret = fmt.Sprintf("token-%d", len(out)+1), line
		}
		if len(secret) < MinTokenLength {
			return nil, fmt.Errorf("%s line %d: token %q is shorter than %d characters", where, n, name, MinTokenLength)
		}
		out = append(out, Token{Name: name, Secret: secret})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return out, nil
}

// authenticate accepts a request carrying one of the tokens. Tokens are compared as SHA-256
// digests in constant time, every token every time, so timing says nothing about them.
// Without tokens every request is refused.
func (a *API) authenticate(next http.Handler) http.Handler {
	digests := make([][32]byte, len(a.Tokens))
	for i, t := range a.Tokens {
		digests[i] = sha256.Sum256([]byte(t.Secret))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		given = strings.TrimSpace(given)
		got := sha256.Sum256([]byte(given))
		match := 0
		for _, d := range digests {
			match |= subtle.ConstantTimeCompare(got[:], d[:])
		}
		if !ok || given == "" || match != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="patchfleet-planner"`)
			ops.WriteJSON(w, http.StatusUnauthorized, query.Error{Code: http.StatusUnauthorized, Message: "a valid bearer token is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
