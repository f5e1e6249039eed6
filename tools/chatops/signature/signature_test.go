package signature

import (
	"errors"
	"testing"
	"time"
)

// Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
const (
	docSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	docTimestamp = "1531420618"
	docBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	docSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

func TestSignDocumentedExample(t *testing.T) {
	if got := Sign([]byte(docSecret), docTimestamp, []byte(docBody)); got != docSignature {
		t.Fatalf("Sign = %s, want %s", got, docSignature)
	}
}

func TestVerify(t *testing.T) {
	at := time.Unix(1531420618, 0)
	tests := []struct {
		name      string
		secret    string
		timestamp string
		signature string
		body      string
		now       time.Time
		want      error
	}{
		{"documented example", docSecret, docTimestamp, docSignature, docBody, at, nil},
		{"four minutes later", docSecret, docTimestamp, docSignature, docBody, at.Add(4 * time.Minute), nil},
		{"stale", docSecret, docTimestamp, docSignature, docBody, at.Add(5*time.Minute + time.Second), ErrStale},
		{"from the future", docSecret, docTimestamp, docSignature, docBody, at.Add(-6 * time.Minute), ErrStale},
		{"tampered body", docSecret, docTimestamp, docSignature, docBody + "&x=1", at, ErrMismatch},
		{"other secret", "another-secret", docTimestamp, docSignature, docBody, at, ErrMismatch},
		{"replayed with a new timestamp", docSecret, "1531420700", docSignature, docBody, at, ErrMismatch},
		{"unsigned", docSecret, "", "", docBody, at, ErrMissing},
		{"no signature", docSecret, docTimestamp, "", docBody, at, ErrMissing},
		{"bad timestamp", docSecret, "yesterday", docSignature, docBody, at, ErrStale},
		{"other version", docSecret, docTimestamp, "v1=" + docSignature[3:], docBody, at, ErrMismatch},
		{"no secret configured", "", docTimestamp, docSignature, docBody, at, ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify([]byte(tt.secret), tt.timestamp, tt.signature, []byte(tt.body), tt.now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}
