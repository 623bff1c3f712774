package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// Builder writes a projection file from sequence 1 as a bulk load: it folds events in
// memory in bounded chunks and writes each chunk in key order in one large transaction,
// with no fsync until Finish. The file it builds is identical, byte for byte in every
// bucket's contents, to one built by Projection.Apply over the same events.
//
// History, changes and anomalies are appended chunk by chunk. States are kept in memory,
// encoded (about 450 bytes per applicant), and written with the indexes once, in key
// order, at Finish; past a budget of 64 MiB (some 150,000 applicants) they are written
// to the file and later chunks fold those applicants from there, as Apply does. Memory
// is so bounded by the chunk and the budget, not by the log. A Builder belongs to one
// goroutine.
//
// Until states are first written to the file, the fold needs nothing from it: the
// writer's puts are recorded, and a goroutine of the Builder's own (a chunkWriter)
// replays each chunk into the file in one transaction while the next chunk folds. The
// replay makes the same puts in the same order as a writer on the transaction would,
// so the file is the same. From the first spill on, chunks fold and write in the
// calling goroutine as before, since the fold reads states the previous chunk wrote.
type Builder struct {
	path    string
	db      *bolt.DB
	tx      *bolt.Tx   // the open transaction, once states are in the file
	ops     *[]chunkOp // the open chunk's recorded puts, until then
	cw      *chunkWriter
	w       *writer
	folder  *domain.Folder
	ix      Indexer
	park    *parking
	spilled bool // some states are in the file: chunks read and rewrite them there
	events  int  // folded in the open chunk
	err     error
	done    bool

	// Chunk bounds: a transaction commits after this many events or touched applicants.
	chunkEvents     int
	chunkApplicants int
}

// defaultParkBudget bounds the states a Builder keeps in memory (see parking).
const defaultParkBudget = 64 << 20

// Default chunk bounds. A chunk costs roughly 600 bytes per event in memory (the encoded
// records, bbolt's nodes and the pages written at commit) plus about 1 KiB per touched
// applicant, so about 50 MB at these values, twice that in Go heap between collections.
// Twice the first values (25,000 and 10,000) gave 85,800 -> 96,700 events/s on a 1M-event
// rebuild with no rise in peak RSS; four times gave nothing more (bench/run --only rebuild).
const (
	defaultChunkEvents     = 50_000
	defaultChunkApplicants = 20_000
)

// NewBuilder starts a new file at path (removed first if it exists). A path that another
// Builder or Projection holds open gives KindConflict. ix gives the blind index of sealed
// externalUserIds, as Options.Indexer does for Apply (nil: none).
func NewBuilder(path string, ix Indexer) (*Builder, error) {
	const op = "projection.NewBuilder"
	if err := removeUnused(op, path); err != nil {
		return nil, err
	}
	db, _, err := openBolt(op, path, boltOpts{exclusive: true, noSync: true})
	if err != nil {
		return nil, err
	}
	b := &Builder{path: path, db: db, folder: domain.NewFolder(), ix: ix,
		park:        &parking{states: make(map[domain.ApplicantKey][]byte), budget: defaultParkBudget},
		chunkEvents: defaultChunkEvents, chunkApplicants: defaultChunkApplicants}
	if err := db.Update(createBuckets); err != nil {
		db.Close()
		os.Remove(path)
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	if err := b.begin(); err != nil {
		b.stopWriter()
		db.Close()
		os.Remove(path)
		return nil, domain.E(op, domain.KindInternal, err)
	}
	return b, nil
}

// chunkOp is one recorded put or delete, into writerBuckets' field number b.
type chunkOp struct {
	key, val []byte
	b        uint8
	del      bool
}

// recorder is a bucket that records the writer's puts in the open chunk. Get finds
// nothing: it is used only while the file holds no states (the other buckets are only
// written), except that meta answers the checkpoint the chunk starts from.
type recorder struct {
	ops        *[]chunkOp
	b          uint8
	checkpoint []byte
}

func (r *recorder) Get(key []byte) []byte {
	if r.checkpoint != nil && bytes.Equal(key, keyCheckpoint) {
		return r.checkpoint
	}
	return nil
}

func (r *recorder) Put(key, val []byte) error {
	*r.ops = append(*r.ops, chunkOp{key: key, val: val, b: r.b})
	return nil
}

func (r *recorder) Delete(key []byte) error {
	*r.ops = append(*r.ops, chunkOp{key: key, b: r.b, del: true})
	return nil
}

// The order of writerBuckets' fields, as chunkOp.b numbers them.
func (bs *writerBuckets) list() [10]*bucket {
	return [10]*bucket{&bs.states, &bs.history, &bs.ext, &bs.status, &bs.anomalies, &bs.changes, &bs.meta, &bs.extIndex, &bs.apps, &bs.ids}
}

// chunkWriter replays recorded chunks into a file, one transaction each, in a goroutine
// that write starts and stop ends; the Builder calls stop on every way out (Finish,
// Abort, an error, the first spill). After an error it writes nothing more and write
// and stop return it.
type chunkWriter struct {
	chunks chan []chunkOp
	failed chan struct{} // closed once err is set
	done   chan struct{} // closed when the goroutine has returned
	err    error
}

// startWriter starts a chunkWriter on b.db; the Builder leaves b.db alone until stop.
// One chunk may wait while another is written: the fold runs at most one chunk ahead.
func (b *Builder) startWriter() {
	cw := &chunkWriter{chunks: make(chan []chunkOp, 1), failed: make(chan struct{}), done: make(chan struct{})}
	db := b.db
	go func() {
		defer close(cw.done)
		for ops := range cw.chunks {
			if cw.err != nil {
				continue // drained until stop
			}
			if err := writeChunk(db, ops); err != nil {
				cw.err = err
				close(cw.failed)
			}
		}
	}()
	b.cw = cw
}

// write hands over a chunk, waiting while the one before it waits.
func (cw *chunkWriter) write(ops []chunkOp) error {
	select {
	case cw.chunks <- ops:
		return nil
	case <-cw.failed:
		return cw.err
	}
}

// stopWriter waits for the chunks handed over to be written and the goroutine to end.
func (b *Builder) stopWriter() error {
	cw := b.cw
	if cw == nil {
		return nil
	}
	b.cw = nil
	close(cw.chunks)
	<-cw.done
	return cw.err
}

func writeChunk(db *bolt.DB, ops []chunkOp) error {
	tx, err := db.Begin(true)
	if err != nil {
		return err
	}
	bs, err := txBuckets(tx)
	if err != nil {
		tx.Rollback()
		return err
	}
	list := bs.list()
	for _, op := range ops {
		dst := *list[op.b]
		if op.del {
			err = dst.Delete(op.key)
		} else {
			err = dst.Put(op.key, op.val)
		}
		if err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// removeUnused removes path unless something holds its lock.
func removeUnused(op, path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, _, err := openBolt(op, path, boltOpts{lockTimeout: 100 * time.Millisecond, readOnly: true})
	if domain.KindOf(err) == domain.KindConflict {
		return err
	}
	if db != nil {
		db.Close()
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return domain.E(op, domain.KindUnavailable, err)
	}
	return nil
}

// reopen closes the file and opens it again, between chunks once states are in the file.
// bbolt reads through a shared map of the file, and each page it reads (with the kernel
// mapping its neighbours too) stays in the process's resident set until the map goes:
// the state and index pages rewritten (copy on write) to new places chunk after chunk
// and read again in the next one add up to most of the file. Reopening drops the map
// (the pages stay in the page cache) for about a millisecond per chunk.
//
// The lock is let go for that moment; a NewBuilder on the same path that slips in would
// leave this Builder a file without its buckets, which fails the build rather than
// mixing two.
func (b *Builder) reopen(op string) error {
	if err := b.db.Close(); err != nil {
		return err
	}
	db, _, err := openBolt(op, b.path, boltOpts{noSync: true})
	if err != nil {
		return err
	}
	b.db = db
	return nil
}

// begin opens the next chunk and its writer: recorded, until states are in the file.
func (b *Builder) begin() error {
	var cp uint64
	if b.w != nil {
		cp = b.w.checkpoint
	}
	b.events = 0
	if b.spilled {
		tx, err := b.db.Begin(true)
		if err != nil {
			return err
		}
		b.tx = tx
		b.w, err = newWriter(tx, b.folder, b.ix, nil, b.park)
		return err
	}
	if b.cw == nil {
		b.startWriter()
	}
	ops := make([]chunkOp, 0, 2*b.chunkEvents+16)
	b.ops = &ops
	var bs writerBuckets
	for i, dst := range bs.list() {
		r := &recorder{ops: b.ops, b: uint8(i)}
		if dst == &bs.meta {
			r.checkpoint = seqKey(cp)
		}
		*dst = r
	}
	var err error
	b.w, err = newBucketWriter(bs, b.folder, b.ix, nil, b.park)
	return err
}

// Add folds a batch of events (in stream order). Events at or below the sequence already
// folded are skipped, as Apply skips them. After an error the Builder only aborts.
func (b *Builder) Add(events []domain.Event) error {
	const op = "projection.Builder.Add"
	if b.err != nil {
		return b.err
	}
	if b.done {
		return domain.E(op, domain.KindConflict, "builder finished")
	}
	for i := range events {
		if _, _, err := b.w.event(&events[i]); err != nil {
			return b.fail(op, err)
		}
		b.events++
		if b.events >= b.chunkEvents || len(b.w.touched) >= b.chunkApplicants {
			if err := b.commit(b.park.full()); err != nil {
				return b.fail(op, err)
			}
			if b.spilled {
				if err := b.reopen(op); err != nil {
					return b.fail(op, err)
				}
			}
			if err := b.begin(); err != nil {
				return b.fail(op, err)
			}
		}
	}
	return nil
}

// commit writes (or parks) the chunk's states, and the checkpoint, and commits without
// fsync, or hands the recorded chunk to the chunkWriter. With spill, every parked state
// is written to the file as well, and the chunkWriter is stopped once it has written
// everything: later chunks read states from the file.
func (b *Builder) commit(spill bool) error {
	if err := b.w.flush(); err != nil {
		return err
	}
	if spill {
		if err := b.w.spill(); err != nil {
			return err
		}
	}
	if b.tx == nil {
		ops := *b.ops
		b.ops = nil
		if err := b.cw.write(ops); err != nil {
			return err
		}
		if spill {
			b.spilled = true
			return b.stopWriter()
		}
		return nil
	}
	b.spilled = b.spilled || spill
	tx := b.tx
	b.tx = nil
	return tx.Commit()
}

func (b *Builder) fail(op string, err error) error {
	var de *domain.Error
	switch {
	case errors.As(err, &de):
	case errors.Is(err, errCorruptValue):
		err = domain.E(op, domain.KindInternal, err)
	default:
		err = domain.E(op, domain.KindUnavailable, err)
	}
	b.err = err
	b.stopWriter() // its error, if any, is err or came after it
	return err
}

// Checkpoint returns the last sequence folded so far.
func (b *Builder) Checkpoint() uint64 {
	if b.w == nil {
		return 0
	}
	return b.w.checkpoint
}

// Finish writes what is buffered, syncs the file once and closes it.
func (b *Builder) Finish() error {
	const op = "projection.Builder.Finish"
	if b.err != nil {
		return b.err
	}
	if b.done {
		return nil
	}
	if err := b.commit(true); err != nil {
		return b.fail(op, err)
	}
	b.park = nil
	if err := b.db.Sync(); err != nil {
		return b.fail(op, err)
	}
	b.done = true
	if err := b.db.Close(); err != nil {
		return b.fail(op, err)
	}
	return nil
}

// Abort closes and removes the partial file.
func (b *Builder) Abort() error {
	b.stopWriter()
	if b.tx != nil {
		b.tx.Rollback()
		b.tx = nil
	}
	b.done = true
	if b.err == nil {
		b.err = domain.E("projection.Builder", domain.KindConflict, "builder aborted")
	}
	b.db.Close()
	if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return domain.E("projection.Builder.Abort", domain.KindUnavailable, err)
	}
	return nil
}

// RebuildOptions tunes Rebuild.
type RebuildOptions struct {
	// Progress, if not nil, is called now and then with the sequence reached and the
	// last sequence (from one goroutine at a time, not necessarily the caller's).
	Progress func(done, total uint64)
	// Indexer gives the blind index of sealed externalUserIds (NewBuilder). A rebuild
	// asks it about every applicant with one, so it should not fetch a key per question:
	// the key ring's snapshot (eventlog.Keyring.Snapshot) reads all keys at once.
	Indexer Indexer
}

// Rebuild folds the whole log into path+".rebuild" and renames it over path, atomically:
// a crash before the rename leaves the old file serving.
//
// A projection file that a process has open for writing (a running query node) gives
// KindConflict, and none can open it for writing until Rebuild returns; readers may
// stay. A leftover path+".rebuild" from a crashed rebuild is removed first; one that
// another rebuild holds open gives KindConflict.
//
// src is read from sequence 1 up to its last sequence at the time of the call; its
// errors are returned as they are (see domain.EventSource).
func Rebuild(ctx context.Context, src domain.EventSource, path string, opts RebuildOptions) error {
	last, err := src.LastSeq(ctx)
	if err != nil {
		return err
	}
	return rebuild(ctx, src.Read, last, path, opts)
}

// readFunc is domain.EventSource.Read's shape: rebuild and verify read through it, so
// their tests serve events from memory.
type readFunc func(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error

// rebuildBatch is how many events Rebuild asks the log for at a time.
const rebuildBatch = 1000

func rebuild(ctx context.Context, read readFunc, last uint64, path string, opts RebuildOptions) (err error) {
	const op = "projection.Rebuild"
	progress := opts.Progress
	if progress == nil {
		progress = func(uint64, uint64) {}
	}
	hold, err := holdUnused(op, path)
	if err != nil {
		return err
	}
	if hold != nil {
		defer hold.Close()
	}
	tmp := path + ".rebuild"
	b, err := NewBuilder(tmp, opts.Indexer)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			b.Abort()
		}
	}()
	progress(0, last)

	// Reading the log (fetching, decoding JSON) and folding into the file each take a
	// core: the log is read in this goroutine while the builder folds the batches before.
	// The builder goroutine is owned here: it ends when batches is closed, and its result
	// is awaited before returning.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []domain.Event, 8)
	built := make(chan error, 1)
	go func() {
		var err error
		for evs := range batches {
			if err != nil {
				continue // drain: the reader stops at the cancel
			}
			if err = b.Add(evs); err != nil {
				cancel()
				continue
			}
			if n := len(evs); n > 0 {
				progress(evs[n-1].Seq, max(last, evs[n-1].Seq))
			}
		}
		built <- err
	}()
	readErr := read(rctx, 1, rebuildBatch, func(evs []domain.Event) error {
		select {
		case batches <- evs:
			return nil
		case <-rctx.Done():
			return rctx.Err()
		}
	})
	close(batches)
	if err := <-built; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return domain.E(op, domain.KindUnavailable, err)
	}
	if readErr != nil {
		if domain.KindOf(readErr) == domain.KindOther {
			readErr = domain.E(op, domain.KindUnavailable, readErr)
		}
		return readErr
	}
	if err := b.Finish(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return domain.E(op, domain.KindUnavailable, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return domain.E(op, domain.KindUnavailable, fmt.Errorf("rename done, directory not synced: %w", err))
	}
	return nil
}

// holdUnused makes sure no process has path open for writing, and keeps it so until the
// returned file is closed: a projector writing to the old file would otherwise go on
// writing to a file no longer at path. The file's contents are not read, so a damaged
// file (the usual reason to rebuild) is no obstacle. A missing file gives nil.
func holdUnused(op, path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	ok, err := lockShared(f)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, domain.E(op, domain.KindUnavailable, err)
		}
		return nil, domain.E(op, domain.KindConflict, fmt.Sprintf("projection %s is in use by another process: stop it before rebuilding", path))
	}
	return f, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
