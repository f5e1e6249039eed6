// Package signature verifies Slack's request signatures: v0=HMAC-SHA256(signing secret,
// "v0:" + timestamp + ":" + body), hex, in X-Slack-Signature, with the timestamp in
// X-Slack-Request-Timestamp. A request older (or newer) than MaxAge is refused, so a
// captured request cannot be replayed later.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers Slack signs its requests with.
const (
	HeaderSignature = "X-Slack-Signature"
	HeaderTimestamp = "X-Slack-Request-Timestamp"
)

// MaxAge is how far a request's timestamp may be from now.
const MaxAge = 5 * time.Minute

// Errors of Verify; all of them mean 401.
var (
	ErrMissing  = errors.New("request is not signed")
	ErrStale    = errors.New("request timestamp is too old or in the future")
	ErrMismatch = errors.New("signature does not match")
)

// Sign returns the v0 signature of body sent at timestamp (Unix seconds, as sent).
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("v0:" + timestamp + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's signature and timestamp against now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time) error {
	if timestamp == "" || signature == "" {
		return ErrMissing
	}
	if len(secret) == 0 {
		return fmt.Errorf("%w: no signing secret configured", ErrMismatch)
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not a number", ErrStale, timestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxAge || d < -MaxAge {
		return ErrStale
	}
	if !strings.HasPrefix(signature, "v0=") {
		return fmt.Errorf("%w: unknown signature version", ErrMismatch)
	}
	want := Sign(secret, timestamp, body)
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return ErrMismatch
	}
	return nil
}
