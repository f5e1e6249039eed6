package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Poller reads a feed from an HTTP(S) URL again and again. Each poll is a
// conditional request (If-None-Match / If-Modified-Since from the last good
// response), so an unchanged feed costs a 304 and yields nothing. The body
// is spooled to a temporary file, which lets a zip dump be read entry by
// entry and keeps memory bounded whatever its size.
type Poller struct {
	URL        string
	Options    Options
	Client     *http.Client  // nil: a client with a 5 minute timeout
	Interval   time.Duration // between successful polls; 0: 1 hour
	MinBackoff time.Duration // first retry after a failure; 0: 10 s
	MaxBackoff time.Duration // cap; 0: Interval
	MaxBytes   int64         // largest body accepted; 0: 4 GiB
	TempDir    string        // for the spooled body; "": os.TempDir()

	etag, lastModified string
}

// State is the validators of the last good response (ETag, Last-Modified), to be kept
// across restarts so a restarted poller does not fetch an unchanged feed again.
func (p *Poller) State() (etag, lastModified string) { return p.etag, p.lastModified }

// SetState restores State; the next poll is conditional on it.
func (p *Poller) SetState(etag, lastModified string) { p.etag, p.lastModified = etag, lastModified }

// Poll makes one conditional request and reads what changed. changed is
// false on 304. The validators are kept only once the whole body was read
// and handed over, so a poll that failed half way is repeated in full.
func (p *Poller) Poll(ctx context.Context, yield Yield, bad Bad) (changed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return false, fmt.Errorf("poll %s: %w", p.URL, err)
	}
	if p.etag != "" {
		req.Header.Set("If-None-Match", p.etag)
	}
	if p.lastModified != "" {
		req.Header.Set("If-Modified-Since", p.lastModified)
	}
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Minute}
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("poll %s: %w", p.URL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return false, nil
	case resp.StatusCode != http.StatusOK:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return false, fmt.Errorf("poll %s: status %s", p.URL, resp.Status)
	}

	f, err := os.CreateTemp(p.TempDir, "advisory-feed-*")
	if err != nil {
		return false, fmt.Errorf("poll %s: spool: %w", p.URL, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	limit := p.MaxBytes
	if limit <= 0 {
		limit = 4 << 30
	}
	n, err := io.Copy(f, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return false, fmt.Errorf("poll %s: read body: %w", p.URL, err)
	}
	if n > limit {
		return false, fmt.Errorf("poll %s: body larger than %d bytes", p.URL, limit)
	}

	modified := time.Now().UTC()
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		modified = lm.UTC()
	}
	var magic [4]byte
	if m, _ := f.ReadAt(magic[:], 0); m == 4 && string(magic[:]) == "PK\x03\x04" {
		err = ReadZip(ctx, f, n, p.URL, p.Options, yield, bad)
	} else {
		err = ReadDocument(ctx, io.NewSectionReader(f, 0, n), p.URL, modified, p.Options, yield, bad)
	}
	if err != nil {
		return false, err
	}
	p.etag, p.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return true, nil
}

// Run polls until ctx is done: every Interval after a good poll, and after
// a failure with exponential backoff from MinBackoff up to MaxBackoff.
// failed, if not nil, hears about every failed poll. It returns ctx's error,
// or yield's.
func (p *Poller) Run(ctx context.Context, yield Yield, bad Bad, failed func(error)) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	minB, maxB := p.MinBackoff, p.MaxBackoff
	if minB <= 0 {
		minB = 10 * time.Second
	}
	if maxB <= 0 {
		maxB = interval
	}
	failures := 0
	for {
		stopped := false
		_, err := p.Poll(ctx, func(r Record) error {
			if err := yield(r); err != nil {
				stopped = true
				return err
			}
			return nil
		}, bad)
		if stopped {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := interval
		if err != nil {
			failures++
			wait = Backoff(minB, maxB, failures)
			if failed != nil {
				failed(err)
			}
		} else {
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Backoff is the wait after the n-th consecutive failure (n ≥ 1): first,
// doubled each time, capped at most.
func Backoff(first, most time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}
