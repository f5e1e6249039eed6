// Package reboot waits for a rebooted host to come back: it probes the host's boot id with
// backoff until it differs from the one before the reboot, or the deadline passes. A new boot
// id is the only proof of a reboot; a host that answers with the old one has not rebooted yet.
package reboot

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrTimeout means the host did not come back with a new boot id before the deadline.
var ErrTimeout = errors.New("host did not come back with a new boot id in time")

// Backoff is the wait between probes: Min doubling up to Max.
type Backoff struct{ Min, Max time.Duration }

func (b Backoff) delay(attempt int) time.Duration {
	d := b.Min
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Probe returns the host's boot id, or an error while it is unreachable. A host key
// mismatch is returned as is (the probe's caller decides it is fatal via fatal).
type Probe func(ctx context.Context) (bootID string, err error)

// Wait probes until the boot id differs from old, the deadline passes (ErrTimeout, with the
// last probe error), ctx ends, or fatal says a probe error must stop the wait.
func Wait(ctx context.Context, probe Probe, old string, deadline time.Time, b Backoff, fatal func(error) bool) (string, error) {
	var last error
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		id, err := probe(pctx)
		cancel()
		switch {
		case err == nil && id != "" && id != old:
			return id, nil
		case err != nil && fatal != nil && fatal(err):
			return "", err
		case err != nil:
			last = err
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		left := time.Until(deadline)
		if left <= 0 {
			if last != nil {
				return "", fmt.Errorf("%w (last probe: %v)", ErrTimeout, last)
			}
			return "", ErrTimeout
		}
		wait := min(b.delay(attempt), left)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
}
