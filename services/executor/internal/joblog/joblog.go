// Package joblog keeps the full command log of every job: chunks in PostgreSQL (bounded per
// job), and the same bytes published live on core NATS (pf.logs.<host>) for anyone following
// the host while the job runs. Live output is best effort; the stored log is the record.
package joblog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/db/executordb"
)

// SubjectPrefix + the host's subject token carries a host's live output.
const SubjectPrefix = "pf.logs."

// Subject returns the live-log subject of a host. Characters that NATS gives a meaning to
// (dots, wildcards, spaces) become '_'.
func Subject(hostID string) string {
	return SubjectPrefix + strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f {
			return '_'
		}
		return r
	}, hostID)
}

// HeaderJobID names the job a live chunk belongs to.
const HeaderJobID = "Patchfleet-Job-Id"

const (
	chunkSize     = 32 << 10
	flushInterval = time.Second
)

// Writer collects one job's log. It is safe for concurrent use.
type Writer struct {
	pool    *pgxpool.Pool
	nc      *nats.Conn
	subject string
	jobID   string
	limit   int64
	log     *slog.Logger

	mu        sync.Mutex
	buf       bytes.Buffer
	seq       int32
	stored    int64
	truncated bool
	stop      chan struct{}
	done      chan struct{}
}

// Open continues the log of jobID (a resumed job appends to what was stored), keeping at most
// limit bytes in the database. A job's first attempt has no log yet: resumed says whether
// to look for one.
func Open(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, jobID, hostID string, limit int64, resumed bool, log *slog.Logger) (*Writer, error) {
	var size executordb.JobLogSizeRow
	if resumed {
		var err error
		if size, err = executordb.New(pool).JobLogSize(ctx, jobID); err != nil {
			return nil, fmt.Errorf("open log of job %s: %w", jobID, err)
		}
	}
	w := &Writer{pool: pool, nc: nc, subject: Subject(hostID), jobID: jobID, limit: limit, log: log,
		seq: size.LastSeq, stored: size.Bytes, truncated: size.Bytes >= limit,
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.flusher()
	return w, nil
}

func (w *Writer) flusher() {
	defer close(w.done)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.flush(context.Background())
		}
	}
}

// Write publishes p live and queues it for the database.
func (w *Writer) Write(p []byte) (int, error) {
	if w.nc != nil {
		m := nats.NewMsg(w.subject)
		m.Header.Set(HeaderJobID, w.jobID)
		m.Data = p
		_ = w.nc.PublishMsg(m) // best effort: followers may miss a chunk, the stored log does not
	}
	w.mu.Lock()
	room := w.limit - w.stored - int64(w.buf.Len())
	switch {
	case w.truncated:
	case int64(len(p)) <= room:
		w.buf.Write(p)
	default:
		w.buf.Write(p[:max(room, 0)])
		fmt.Fprintf(&w.buf, "\n[log truncated at %d bytes]\n", w.limit)
		w.truncated = true
	}
	full := w.buf.Len() >= chunkSize
	w.mu.Unlock()
	if full {
		w.flush(context.Background())
	}
	return len(p), nil
}

// Printf writes one line of the executor's own narration ("==> step ...").
func (w *Writer) Printf(format string, args ...any) {
	fmt.Fprintf(w, "==> "+format+"\n", args...)
}

func (w *Writer) flush(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() == 0 {
		return
	}
	data := bytes.Clone(w.buf.Bytes())
	err := executordb.New(w.pool).AppendLog(ctx, executordb.AppendLogParams{JobID: w.jobID, Seq: w.seq + 1, Data: data})
	if err != nil {
		// Keep the bytes and try again at the next flush.
		w.log.Warn("store job log chunk", "job_id", w.jobID, "err", err)
		return
	}
	w.seq++
	w.stored += int64(len(data))
	w.buf.Reset()
}

// Flush stores what was written so far.
func (w *Writer) Flush(ctx context.Context) { w.flush(context.WithoutCancel(ctx)) }

// Close stores what is left.
func (w *Writer) Close(ctx context.Context) {
	close(w.stop)
	<-w.done
	w.flush(context.WithoutCancel(ctx))
}

// Read returns a job's stored log.
func Read(ctx context.Context, pool *pgxpool.Pool, jobID string) ([]byte, error) {
	rows, err := executordb.New(pool).JobLog(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", jobID, err)
	}
	var b bytes.Buffer
	for _, r := range rows {
		b.Write(r.Data)
	}
	return b.Bytes(), nil
}
