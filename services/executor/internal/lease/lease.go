// Package lease keeps a host to one job at a time across every executor instance: a row per
// host in PostgreSQL names the holder and the job, and expires unless its holder renews it.
// The database's clock decides expiry, so executors on different machines agree.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/patchfleet/patchfleet/db/executordb"
)

// Busy is returned when another live holder has the host.
type Busy struct {
	HostID, Holder, JobID string
	Until                 time.Time
}

func (b *Busy) Error() string {
	return fmt.Sprintf("host %s is leased by %s for job %s until %s", b.HostID, b.Holder, b.JobID, b.Until.UTC().Format(time.RFC3339))
}

// Leases takes and renews host leases for one executor instance (Holder).
type Leases struct {
	Pool   *pgxpool.Pool
	Holder string
	TTL    time.Duration
}

// Lease is a held host lease.
type Lease struct {
	l             *Leases
	HostID, JobID string
	lost          chan struct{}
	stop          context.CancelFunc
	done          chan struct{}
}

// Acquire takes the host's lease for jobID, or returns *Busy. The lease is renewed every
// TTL/3 until Release; Lost is closed if a renewal finds it taken over.
func (l *Leases) Acquire(ctx context.Context, hostID, jobID string) (*Lease, error) {
	q := executordb.New(l.Pool)
	_, err := q.AcquireLease(ctx, executordb.AcquireLeaseParams{HostID: hostID, Holder: l.Holder, JobID: jobID, TtlSeconds: l.TTL.Seconds()})
	if errors.Is(err, pgx.ErrNoRows) {
		cur, gerr := q.GetLease(ctx, hostID)
		if gerr != nil {
			return nil, fmt.Errorf("lease host %s for job %s: %w", hostID, jobID, gerr)
		}
		return nil, &Busy{HostID: hostID, Holder: cur.Holder, JobID: cur.JobID, Until: cur.ExpiresAt}
	}
	if err != nil {
		return nil, fmt.Errorf("lease host %s for job %s: %w", hostID, jobID, err)
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h := &Lease{l: l, HostID: hostID, JobID: jobID, lost: make(chan struct{}), stop: stop, done: make(chan struct{})}
	go h.renew(rctx)
	return h, nil
}

// Lost is closed when the lease could not be renewed before it expired, or was taken over.
func (h *Lease) Lost() <-chan struct{} { return h.lost }

func (h *Lease) renew(ctx context.Context) {
	defer close(h.done)
	q := executordb.New(h.l.Pool)
	t := time.NewTicker(h.l.TTL / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := q.RenewLease(ctx, executordb.RenewLeaseParams{HostID: h.HostID, Holder: h.l.Holder, JobID: h.JobID, TtlSeconds: h.l.TTL.Seconds()})
		switch {
		case err == nil && n == 1:
			last = time.Now()
		case err == nil || time.Since(last) > h.l.TTL:
			// Taken over, or expired while the database was unreachable: another executor
			// may be on the host now.
			close(h.lost)
			return
		}
	}
}

// Release gives the lease up.
func (h *Lease) Release(ctx context.Context) error {
	h.stop()
	<-h.done
	err := executordb.New(h.l.Pool).ReleaseLease(context.WithoutCancel(ctx), executordb.ReleaseLeaseParams{HostID: h.HostID, Holder: h.l.Holder, JobID: h.JobID})
	if err != nil {
		return fmt.Errorf("release lease of host %s (job %s): %w", h.HostID, h.JobID, err)
	}
	return nil
}
