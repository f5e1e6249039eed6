// Package source reads advisory feeds: a JSON file, a directory of them, an
// OSV zip dump (all.zip), or an HTTP(S) URL polled with conditional
// requests. It detects each document's format (an OSV record, the Debian
// security tracker export, a page of Ubuntu's notices API) and hands over
// normalised advisories one at a time; nothing is kept once handed over, so
// a dump of any size is read in bounded memory. It does no publishing and
// no storage: that is the caller's.
package source

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/advisory"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/debtracker"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/dsalist"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/osv"
	"github.com/patchfleet/patchfleet/services/advisory-ingest/internal/usn"
)

// Format names a feed format.
type Format string

const (
	FormatAuto          Format = "" // detect from content
	FormatOSV           Format = "osv"
	FormatDebianTracker Format = "debian-tracker"
	FormatUbuntuNotices Format = "ubuntu-notices"
	FormatDebianDSAList Format = "debian-dsa-list" // the tracker's data/DSA/list, not JSON
)

// DefaultMaxRecordBytes bounds one OSV record; the largest real ones (kernel
// USNs) are a few hundred KiB.
const DefaultMaxRecordBytes = 16 << 20

// Options tune reading.
type Options struct {
	Format         Format // FormatAuto unless the caller knows better
	MaxRecordBytes int64  // 0: DefaultMaxRecordBytes
	// Unchanged, if set, is asked about each OSV record before it is parsed, with the
	// record's RawDigest; true skips it. A caller that stored the digest of a record it
	// ingested can so re-read an unchanged dump without parsing it.
	Unchanged func(origin string, digest []byte) bool
}

func (o Options) maxRecord() int64 {
	if o.MaxRecordBytes > 0 {
		return o.MaxRecordBytes
	}
	return DefaultMaxRecordBytes
}

// Record is one advisory and where it was read from: a file path, a path
// and zip entry ("all.zip!DSA-135.json"), or a URL; "#id" follows when the
// document holds many advisories.
type Record struct {
	Advisory advisory.Advisory
	Origin   string
	// RawDigest is RawDigest of the record's bytes, for an OSV record (one record per
	// document); nil for documents holding many advisories.
	RawDigest []byte
}

// BadRecord is a record, or a whole document, that could not be used. Err
// names the record and the reason.
type BadRecord struct {
	Origin string
	Err    error
}

// Skipped reports a record that is well formed but concerns nothing
// Patchfleet handles (another ecosystem, no affected release): worth a debug
// line, not an alarm.
func (b BadRecord) Skipped() bool { return errors.Is(b.Err, advisory.ErrNoAffected) }

func (b BadRecord) Error() string { return b.Origin + ": " + b.Err.Error() }

// Yield receives each good record; an error it returns stops reading and is
// returned. Bad receives each bad record; reading goes on.
type (
	Yield func(Record) error
	Bad   func(BadRecord)
)

// ReadPath reads a file (JSON or zip) or, recursively, every *.json file of
// a directory in lexical order. A document that cannot be read at all is a
// BadRecord too, so one broken file does not hide the others. The error is
// the context's, yield's, or a path that cannot be opened.
func ReadPath(ctx context.Context, path string, opts Options, yield Yield, bad Bad) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read feed %s: %w", path, err)
	}
	if !info.IsDir() {
		return readFile(ctx, path, opts, yield, bad)
	}
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			bad(BadRecord{Origin: p, Err: err})
			return nil
		}
		if d.IsDir() || !strings.EqualFold(filepath.Ext(p), ".json") {
			return nil
		}
		return readFile(ctx, p, opts, yield, bad)
	})
}

func readFile(ctx context.Context, path string, opts Options, yield Yield, bad Bad) error {
	f, err := os.Open(path)
	if err != nil {
		bad(BadRecord{Origin: path, Err: err})
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		bad(BadRecord{Origin: path, Err: err})
		return nil
	}
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 && string(magic[:]) == "PK\x03\x04" {
		return ReadZip(ctx, f, info.Size(), path, opts, yield, bad)
	}
	return ReadDocument(ctx, f, path, info.ModTime(), opts, yield, bad)
}

// ReadZip reads an OSV dump: every *.json entry is a document. Entries are read and parsed
// on several goroutines (one per CPU, at most 4) but handed over in the order of the dump,
// from the caller's goroutine, as a sequential read would; at most a few entries per
// goroutine are held at a time. opts.Unchanged may be called concurrently.
func ReadZip(ctx context.Context, r io.ReaderAt, size int64, origin string, opts Options, yield Yield, bad Bad) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		bad(BadRecord{Origin: origin, Err: fmt.Errorf("open zip: %w", err)})
		return nil
	}
	var files []*zip.File
	for _, zf := range zr.File {
		if !zf.FileInfo().IsDir() && strings.EqualFold(filepath.Ext(zf.Name), ".json") {
			files = append(files, zf)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), 4)
	if workers < 2 || len(files) < 2 {
		for _, zf := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := readEntry(ctx, zf, origin, opts, yield, bad); err != nil {
				return err
			}
		}
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // no worker reads r once ReadZip has returned
	}()
	slots := make(chan *entrySlot, 4*workers) // in dump order, bounding what is held
	jobs := make(chan *entrySlot, 4*workers)
	wg.Go(func() {
		defer close(slots)
		defer close(jobs)
		for _, zf := range files {
			s := &entrySlot{file: zf, done: make(chan struct{})}
			select {
			case slots <- s:
			case <-ctx.Done():
				return
			}
			jobs <- s // never blocks for long: jobs is as large as slots
		}
	})
	for range workers {
		wg.Go(func() {
			for s := range jobs {
				s.err = readEntry(ctx, s.file, origin, opts, func(rec Record) error {
					s.out = append(s.out, entryItem{rec: &rec})
					return nil
				}, func(b BadRecord) { s.out = append(s.out, entryItem{bad: &b}) })
				close(s.done)
			}
		})
	}
	for s := range slots {
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.err != nil {
			return s.err
		}
		for _, it := range s.out {
			if it.bad != nil {
				bad(*it.bad)
				continue
			}
			if err := yield(*it.rec); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// entrySlot is one zip entry's outcome, filled by a worker and handed over in order.
type entrySlot struct {
	file *zip.File
	done chan struct{}
	out  []entryItem
	err  error
}

type entryItem struct {
	rec *Record
	bad *BadRecord
}

func readEntry(ctx context.Context, zf *zip.File, origin string, opts Options, yield Yield, bad Bad) error {
	entry := origin + "!" + zf.Name
	var digest []byte
	if opts.Unchanged != nil {
		// The entry's CRC-32 and size from the zip directory stand for its bytes, so an
		// unchanged entry is skipped without being decompressed — most of what re-reading a
		// dump costs. A changed record keeping its size and CRC-32 is a one in 2^32 accident;
		// decompressing checks the CRC, so what is read is what the digest describes.
		digest = entryDigest(zf.CRC32, zf.UncompressedSize64)
		if opts.Unchanged(entry, digest) {
			return nil
		}
	}
	rc, err := zf.Open()
	if err != nil {
		bad(BadRecord{Origin: entry, Err: err})
		return nil
	}
	defer rc.Close()
	return readDocument(ctx, rc, int64(zf.UncompressedSize64), entry, zf.Modified, digest, opts, yield, bad)
}

// ReadDocument reads one JSON document in any supported format. modified
// stamps tracker advisories, whose export carries no dates.
func ReadDocument(ctx context.Context, r io.Reader, origin string, modified time.Time, opts Options, yield Yield, bad Bad) error {
	return readDocument(ctx, r, 0, origin, modified, nil, opts, yield, bad)
}

// readers are the documents' small read buffers (the JSON decoders buffer for
// themselves), reused: a dump has one document per record.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// readDocument is ReadDocument with the document's size when known (a zip
// entry's), to read an OSV record into a buffer of the right size at once, and its digest
// when the caller has checked it already (a zip entry's).
func readDocument(ctx context.Context, r io.Reader, size int64, origin string, modified time.Time, digest []byte, opts Options, yield Yield, bad Bad) error {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	format := opts.Format
	if format == FormatAuto {
		head, _ := br.Peek(4 << 10)
		var err error
		if format, err = Detect(head); err != nil {
			bad(BadRecord{Origin: origin, Err: err})
			return nil
		}
	}
	var stop error // yield's error, which must end reading
	emit := func(many bool) func(advisory.Advisory) error {
		return func(a advisory.Advisory) error {
			if err := ctx.Err(); err != nil {
				stop = err
				return err
			}
			o := origin
			if many {
				o += "#" + a.ID
			}
			if err := yield(Record{Advisory: a, Origin: o}); err != nil {
				stop = err
				return err
			}
			return nil
		}
	}
	var err error
	switch format {
	case FormatOSV:
		var buf bytes.Buffer
		if size > 0 && size <= opts.maxRecord() {
			buf.Grow(int(size) + bytes.MinRead) // ReadFrom needs MinRead spare to not grow
		}
		_, rerr := buf.ReadFrom(io.LimitReader(br, opts.maxRecord()+1))
		data := buf.Bytes()
		switch {
		case rerr != nil:
			err = rerr
		case int64(len(data)) > opts.maxRecord():
			err = fmt.Errorf("osv record larger than %d bytes", opts.maxRecord())
		default:
			if opts.Unchanged != nil && digest == nil {
				if digest = RawDigest(data); opts.Unchanged(origin, digest) {
					return nil
				}
			}
			a, perr := osv.Parse(data)
			if perr != nil {
				bad(BadRecord{Origin: origin, Err: perr})
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := yield(Record{Advisory: a, Origin: origin, RawDigest: digest}); err != nil {
				return err
			}
		}
	case FormatDebianTracker:
		if modified.IsZero() {
			modified = time.Now()
		}
		err = debtracker.Decode(br, debtracker.Options{Modified: modified}, emit(true), func(e *debtracker.RecordError) {
			bad(BadRecord{Origin: origin + "#" + e.Record, Err: e})
		})
	case FormatDebianDSAList:
		err = dsalist.Decode(br, emit(true), func(e *dsalist.RecordError) {
			bad(BadRecord{Origin: origin + "#" + e.Record, Err: e})
		})
	case FormatUbuntuNotices:
		_, err = usn.Decode(br, emit(true), func(e *usn.RecordError) {
			bad(BadRecord{Origin: origin + "#" + e.Record, Err: e})
		})
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	if stop != nil {
		return stop
	}
	if err != nil {
		bad(BadRecord{Origin: origin, Err: err})
	}
	return nil
}

// RawDigest is a SHA-256 of a raw record together with the parser's version: equal digests
// mean the record parses to the same advisory, so its stored outcome still holds. The
// version is the build's VCS revision when known (any code change re-parses everything
// once), else parserVersion, which must change whenever parsing or normalising does.
func RawDigest(raw []byte) []byte {
	h := sha256.New()
	h.Write(digestSeed)
	h.Write(raw)
	return h.Sum(nil)
}

// entryDigest is RawDigest's counterpart for a zip entry, from its CRC-32 and size.
func entryDigest(crc uint32, size uint64) []byte {
	h := sha256.New()
	h.Write(digestSeed)
	h.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32([]byte("zip-entry:"), crc), size))
	return h.Sum(nil)
}

// parserVersion changes whenever a parser or the normalisation produces different output.
const parserVersion = "osv-1"

var digestSeed = func() []byte {
	seed := parserVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				seed += ";" + s.Key + "=" + s.Value
			}
		}
	}
	return []byte(seed + "\x00")
}()

var (
	osvKeys = map[string]bool{"id": true, "schema_version": true, "modified": true, "published": true,
		"withdrawn": true, "aliases": true, "related": true, "upstream": true, "summary": true,
		"details": true, "severity": true, "affected": true, "references": true, "credits": true,
		"database_specific": true}
	noticesKeys = map[string]bool{"notices": true, "offset": true, "limit": true, "total_results": true}
)

// Detect tells the format from the start of a document: an OSV record
// starts with one of the schema's top-level keys, a notices page with its
// paging keys, the tracker export with a package name whose value is an
// object, and the DSA list with a "[dd Mon yyyy] DSA-…" line.
func Detect(head []byte) (Format, error) {
	if dsalist.LooksLike(head) {
		return FormatDebianDSAList, nil
	}
	dec := json.NewDecoder(bytes.NewReader(head))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", errors.New("detect format: not a JSON object")
	}
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("detect format: %w", err)
	}
	key, ok := tok.(string)
	switch {
	case !ok:
		return "", errors.New("detect format: empty object")
	case osvKeys[key]:
		return FormatOSV, nil
	case noticesKeys[key]:
		return FormatUbuntuNotices, nil
	}
	if tok, err := dec.Token(); err == nil && tok == json.Delim('{') {
		return FormatDebianTracker, nil
	}
	return "", fmt.Errorf("detect format: first key %.32q is neither OSV, tracker nor notices", key)
}
