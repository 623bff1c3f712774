package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion of the projection file. A file with another version is refused with a
// KindConflict error that says to run `kycstate rebuild`.
const SchemaVersion = 1

// Options tunes opening the file.
type Options struct {
	LockTimeout time.Duration // how long to wait for another process's lock; default 1 s
	ReadOnly    bool
}

// Buckets of the projection file.
var (
	bucketMeta      = []byte("meta")      // schema version, checkpoint
	bucketStates    = []byte("states")    // applicantId -> state record (state + its history seqs)
	bucketHistory   = []byte("history")   // seq -> record; append-only
	bucketExt       = []byte("ext")       // externalUserId 0x00 applicantId -> appKey
	bucketStatus    = []byte("status")    // status 0x00 applicantId -> empty
	bucketAnomalies = []byte("anomalies") // seq -> empty; the record is in history
	bucketChanges   = []byte("changes")   // seq -> change; append-only
	// bucketExtIndex is the blind index of sealed externalUserIds (stored version 2):
	// extIndex 0x00 applicantId -> appKey. bucketApps lists the appKeys it holds entries
	// of, so a lookup without an appKey knows which (appKey, externalUserId) to hash.
	bucketExtIndex = []byte("extIndex")
	bucketApps     = []byte("apps") // appKey -> empty

	allBuckets = [][]byte{bucketMeta, bucketStates, bucketHistory, bucketExt, bucketStatus,
		bucketAnomalies, bucketChanges, bucketExtIndex, bucketApps}
	// laterBuckets came after schema version 1 without changing it: a writable open adds
	// them to an older file, and a read-only one reads their absence as empty.
	laterBuckets = [][]byte{bucketExtIndex, bucketApps}

	keySchema     = []byte("schema")
	keyCheckpoint = []byte("checkpoint")
)

// initialMmapSize is mapped at open whatever the file's size. bbolt remaps as the file
// grows, and a remap waits for every read transaction to end; mapping generously up front
// means readers never hold up the projector. It costs address space, not memory.
const initialMmapSize = 1 << 30

// Projection is the bbolt file folded from the event log: current state per applicant,
// history by stream sequence, indexes by externalUserId and status, anomalies, the change
// feed and the checkpoint. Reads return copies and never block the writer.
type Projection struct {
	path     string
	db       *bolt.DB
	file     *os.File // the file bbolt opened, kept to release the lock if bbolt breaks
	readOnly bool

	checkpoint atomic.Uint64 // the committed checkpoint; advanced only after a commit

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced each time the checkpoint advances
	closed   chan struct{}
	closeErr error
	isClosed bool

	// broken is set once bbolt panicked on this file. bbolt may then hold its internal
	// locks, so the file is never touched again: every call reports the corruption.
	broken atomic.Bool

	// states caches what State read, for the applicants read again and again (a product
	// service polling a status): a hit costs no read transaction. Apply drops the entries
	// of the applicants a batch changed before the checkpoint advances.
	states stateCache

	// beforeCommit, set only by tests in this package, runs after a batch is folded and
	// written and before its commit; an error rolls the batch back as a failed commit would.
	beforeCommit func() error
}

// Open opens or creates the file. A file locked by another process gives a
// KindConflict error saying it is in use; an unknown schema version, KindConflict saying
// to rebuild. A damaged file gives KindInternal saying it is corrupted.
func Open(path string, opts Options) (*Projection, error) {
	const op = "projection.Open"
	db, file, err := openBolt(op, path, boltOpts{lockTimeout: opts.LockTimeout, readOnly: opts.ReadOnly})
	if err != nil {
		return nil, err
	}
	p := &Projection{path: path, db: db, file: file, readOnly: opts.ReadOnly,
		advanced: make(chan struct{}), closed: make(chan struct{})}
	cp, err := p.prepare(op)
	if err != nil {
		if p.broken.Load() {
			releaseBroken(file)
		} else {
			db.Close()
		}
		return nil, err
	}
	p.checkpoint.Store(cp)
	return p, nil
}

// boltOpts are the ways this package opens a bbolt file.
type boltOpts struct {
	lockTimeout time.Duration // default 1 s
	readOnly    bool
	noSync      bool // a bulk load: one Sync at the end
	exclusive   bool // create the file; fail if it exists
}

// openBolt opens path with bbolt, turning a held lock into KindConflict and a damaged
// file (including bbolt panicking or faulting on it) into KindInternal.
func openBolt(op, path string, o boltOpts) (db *bolt.DB, file *os.File, err error) {
	lockTimeout := o.lockTimeout
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	if o.readOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil, domain.E(op, domain.KindNotFound, fmt.Sprintf("projection %s does not exist", path))
		}
	}
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		if o.exclusive {
			flag |= os.O_CREATE | os.O_EXCL
		}
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				releaseBroken(file)
			}
			db, file, err = nil, nil, corrupted(op, path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		ReadOnly:        o.readOnly,
		InitialMmapSize: initialMmapSize,
		FreelistType:    bolt.FreelistMapType,
		NoSync:          o.noSync,
		OpenFile:        openFile,
	})
	switch {
	case err == nil:
		return db, file, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, nil, domain.E(op, domain.KindConflict,
			fmt.Sprintf("projection %s is in use by another process (lock not obtained in %s)", path, lockTimeout))
	case o.exclusive && errors.Is(err, os.ErrExist):
		return nil, nil, domain.E(op, domain.KindConflict, fmt.Sprintf("%s was created by another process meanwhile", path))
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), file != nil:
		// Once the file is open, any failure to read it is damage (too small, bad meta).
		return nil, nil, corrupted(op, path, err)
	}
	return nil, nil, domain.E(op, domain.KindUnavailable, err)
}

// prepare creates the buckets of a new file, checks the schema version of an existing
// one, checks that the file holds every page its meta page claims, and returns the
// checkpoint.
func (p *Projection) prepare(op string) (cp uint64, err error) {
	if fi, statErr := os.Stat(p.path); statErr == nil {
		if err := p.view(op, func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return fmt.Errorf("%w: file has %d bytes, its pages need %d", errCorruptValue, fi.Size(), tx.Size())
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	fresh := false
	if err := p.view(op, func(tx *bolt.Tx) error {
		// A file with no bucket at all is new; one with other buckets is someone else's.
		k, _ := tx.Cursor().First()
		fresh = k == nil
		return nil
	}); err != nil {
		return 0, err
	}
	if fresh && !p.readOnly {
		if err := p.update(op, func(tx *bolt.Tx) error { return createBuckets(tx) }); err != nil {
			return 0, err
		}
	}
	if !fresh && !p.readOnly {
		if err := p.update(op, func(tx *bolt.Tx) error {
			if tx.Bucket(bucketMeta) == nil {
				return nil // not ours: checkSchema says so
			}
			for _, name := range laterBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	err = p.view(op, func(tx *bolt.Tx) error {
		var err error
		cp, err = checkSchema(tx, p.path)
		return err
	})
	if err != nil {
		return 0, err
	}
	return cp, nil
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keySchema) == nil {
		if err := meta.Put(keySchema, seqKey(SchemaVersion)); err != nil {
			return err
		}
		return meta.Put(keyCheckpoint, seqKey(0))
	}
	return nil
}

// checkSchema returns the checkpoint of a file this build can read.
func checkSchema(tx *bolt.Tx, path string) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, domain.E("", domain.KindConflict, fmt.Sprintf("%s is not a kycstate projection (a bbolt file without its meta bucket); it is left as it is", path))
	}
	v, ok := keySeq(meta.Get(keySchema))
	if !ok {
		return 0, fmt.Errorf("%w: schema version missing", errCorruptValue)
	}
	if v != SchemaVersion {
		return 0, domain.E("", domain.KindConflict, fmt.Sprintf("projection %s has schema version %d, this build reads %d: run kycstate rebuild", path, v, SchemaVersion))
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil && !slices.ContainsFunc(laterBuckets, func(b []byte) bool { return bytes.Equal(b, name) }) {
			return 0, fmt.Errorf("%w: bucket %s missing", errCorruptValue, name)
		}
	}
	cp, ok := keySeq(meta.Get(keyCheckpoint))
	if !ok {
		return 0, fmt.Errorf("%w: checkpoint missing", errCorruptValue)
	}
	return cp, nil
}

// releaseBroken gives up a file bbolt panicked on. bbolt may still hold its internal
// locks, so its Close could block forever: the lock on the file is released and the file
// closed directly, and bbolt's map (address space, not memory) is left until exit.
func releaseBroken(f *os.File) error {
	unlockFile(f)
	return f.Close()
}

// corrupted is the error for a file bbolt or the decoders cannot read.
func corrupted(op, path string, cause any) error {
	return domain.E(op, domain.KindInternal, fmt.Sprintf("projection file %s corrupted (%v): run kycstate rebuild", path, cause))
}

// Close closes the file. Safe to call twice. Waiters in WaitFor return.
func (p *Projection) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return p.closeErr
	}
	p.isClosed = true
	close(p.closed)
	if p.broken.Load() {
		p.closeErr = releaseBroken(p.file)
	} else {
		p.closeErr = p.db.Close()
	}
	return p.closeErr
}

// Path returns the file's path.
func (p *Projection) Path() string { return p.path }

// Checkpoint returns the last stream sequence applied (0 for a new file).
func (p *Projection) Checkpoint() uint64 { return p.checkpoint.Load() }

// Apply folds events (in stream order) with f and commits states, history, indexes,
// anomalies, changes and the new checkpoint in one bbolt transaction. Events at or below
// the checkpoint are skipped, so replaying a batch after a crash applies nothing twice.
// Only after the commit does Checkpoint advance and waiters wake. It returns the records
// written, in order.
//
// Errors: KindConflict on a read-only projection, KindInternal when the file is damaged,
// KindUnavailable when it is closed or the commit fails; nothing is applied then.
func (p *Projection) Apply(events []domain.Event, f *domain.Folder) ([]domain.Record, error) {
	const op = "projection.Projection.Apply"
	if p.readOnly {
		return nil, domain.E(op, domain.KindConflict, "projection opened read-only")
	}
	if len(events) == 0 || events[len(events)-1].Seq <= p.Checkpoint() {
		return nil, nil
	}
	var (
		recs []domain.Record
		cp   uint64
	)
	var touched []domain.ApplicantID
	err := p.update(op, func(tx *bolt.Tx) error {
		w, err := newWriter(tx, f, nil, nil)
		if err != nil {
			return err
		}
		defer func() {
			for id := range w.touched {
				touched = append(touched, id)
			}
		}()
		recs = make([]domain.Record, 0, len(events))
		for i := range events {
			rec, ok, err := w.event(&events[i])
			if err != nil {
				return err
			}
			if ok {
				recs = append(recs, rec)
			}
		}
		if len(recs) == 0 {
			return errNothingToApply
		}
		if err := w.flush(); err != nil {
			return err
		}
		cp = w.checkpoint
		if p.beforeCommit != nil {
			return p.beforeCommit()
		}
		return nil
	})
	// Whatever came of the batch (a commit that failed may still have reached the file),
	// its applicants' cached states go before the checkpoint advances: a reader that
	// waited for cp never gets a state from before it.
	p.states.drop(touched)
	if errors.Is(err, errNothingToApply) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.advance(cp)
	return recs, nil
}

// errNothingToApply rolls back a transaction whose events were all applied before.
var errNothingToApply = errors.New("nothing to apply")

// advance publishes a committed checkpoint and wakes every waiter.
func (p *Projection) advance(cp uint64) {
	for {
		old := p.checkpoint.Load()
		if cp <= old || p.checkpoint.CompareAndSwap(old, cp) {
			break
		}
	}
	p.mu.Lock()
	close(p.advanced)
	p.advanced = make(chan struct{})
	p.mu.Unlock()
}

// WaitFor blocks until the checkpoint reaches seq or ctx ends; it returns the checkpoint.
// It also returns when the projection is closed.
func (p *Projection) WaitFor(ctx context.Context, seq uint64) uint64 {
	for {
		p.mu.Lock()
		ch := p.advanced
		p.mu.Unlock()
		// Read after taking the channel: an advance after this load closes ch.
		cp := p.Checkpoint()
		if cp >= seq {
			return cp
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return p.Checkpoint()
		case <-p.closed:
			return p.Checkpoint()
		}
	}
}

// State returns an applicant's current state.
func (p *Projection) State(id domain.ApplicantID) (domain.State, bool, error) {
	const op = "projection.Projection.State"
	if st, ok := p.states.get(id); ok {
		return st, true, nil
	}
	gen := p.states.generation()
	var (
		rec   stateRec
		found bool
	)
	err := p.view(op, func(tx *bolt.Tx) error {
		var err error
		rec, found, err = getState(tx, id)
		return err
	})
	if err != nil || !found {
		return domain.State{}, false, err
	}
	p.states.put(id, rec.State, gen)
	return rec.State, true, nil
}

// History returns up to limit records of an applicant with seq > after, in order, and
// the seq to continue from (0 when there are no more). limit <= 0 returns all of them,
// which is what folding history to a point in time (Folder.Refold) needs. An unknown
// applicant has no history (no error).
func (p *Projection) History(id domain.ApplicantID, after uint64, limit int) ([]domain.Record, uint64, error) {
	const op = "projection.Projection.History"
	var (
		recs []domain.Record
		next uint64
	)
	err := p.view(op, func(tx *bolt.Tx) error {
		st, found, err := getState(tx, id)
		if err != nil || !found {
			return err
		}
		seqs := st.Seqs
		i, _ := slices.BinarySearch(seqs, after+1)
		if after == ^uint64(0) {
			i = len(seqs)
		}
		seqs = seqs[i:]
		if limit > 0 && len(seqs) > limit {
			seqs = seqs[:limit]
			next = seqs[limit-1]
		}
		recs, err = getRecords(tx, seqs)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return recs, next, nil
}

// ByExternalUserID returns the applicants carrying ext (of app, if app is not empty), in
// applicant id order, at most limit of them (all when limit <= 0). externalUserIds longer
// than 1 KiB are not indexed.
func (p *Projection) ByExternalUserID(ext domain.ExternalUserID, app domain.AppKey, limit int) ([]domain.State, error) {
	const op = "projection.Projection.ByExternalUserID"
	if ext == "" {
		return nil, nil
	}
	var out []domain.State
	err := p.view(op, func(tx *bolt.Tx) error {
		prefix := indexKey(string(ext), "")
		c := tx.Bucket(bucketExt).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			id, ok := indexID(k, prefix)
			if !ok || (app != "" && string(v) != string(app)) {
				continue
			}
			st, found, err := getState(tx, id)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%w: ext index names unknown applicant %s", errCorruptValue, id)
			}
			out = append(out, st.State)
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ByExternalUserIndex returns the applicants whose sealed externalUserId has the blind
// index index(appKey): of app if it is not empty, else of every app the index holds, in
// applicant id order, at most limit of them (all when limit <= 0). index is the key
// ring's (the projection holds no key); the caller checks each match by opening its id,
// as two ids could in principle share an index.
func (p *Projection) ByExternalUserIndex(index func(domain.AppKey) domain.ExternalUserIndex, app domain.AppKey, limit int) ([]domain.State, error) {
	const op = "projection.Projection.ByExternalUserIndex"
	var out []domain.State
	err := p.view(op, func(tx *bolt.Tx) error {
		b, apps := tx.Bucket(bucketExtIndex), tx.Bucket(bucketApps)
		if b == nil || apps == nil {
			return nil
		}
		var keys []domain.AppKey
		if app != "" {
			keys = []domain.AppKey{app}
		} else if err := apps.ForEach(func(k, _ []byte) error {
			keys = append(keys, domain.AppKey(k))
			return nil
		}); err != nil {
			return err
		}
		c := b.Cursor()
		for _, a := range keys {
			prefix := indexKey(string(index(a)), "")
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				id, ok := indexID(k, prefix)
				if !ok || string(v) != string(a) {
					continue
				}
				st, found, err := getState(tx, id)
				if err != nil {
					return err
				}
				if !found {
					return fmt.Errorf("%w: ext index names unknown applicant %s", errCorruptValue, id)
				}
				out = append(out, st.State)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b domain.State) int { return strings.Compare(string(a.ApplicantID), string(b.ApplicantID)) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// States returns up to limit applicants' states in applicant id order after the cursor
// ("" from the start), and the next cursor ("" at the end): what a sweep over every
// applicant (retention) reads, a page per transaction.
func (p *Projection) States(cursor domain.ApplicantID, limit int) ([]domain.State, domain.ApplicantID, error) {
	const op = "projection.Projection.States"
	limit = max(limit, 1)
	var (
		out  []domain.State
		next domain.ApplicantID
	)
	err := p.view(op, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketStates).Cursor()
		k, v := c.First()
		if cursor != "" {
			k, v = c.Seek([]byte(cursor))
			if k != nil && string(k) == string(cursor) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				next = out[len(out)-1].ApplicantID
				break
			}
			st, err := decodeState(v)
			if err != nil {
				return err
			}
			out = append(out, st.State)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// ByStatus returns up to limit applicants in status s, ordered by applicant id, after the
// cursor (an applicant id, "" from the start), and the next cursor ("" at the end).
// limit <= 0 returns all of them.
func (p *Projection) ByStatus(s domain.Status, cursor domain.ApplicantID, limit int) ([]domain.State, domain.ApplicantID, error) {
	const op = "projection.Projection.ByStatus"
	if !s.Valid() {
		return nil, "", domain.E(op, domain.KindInvalid, fmt.Sprintf("unknown status %q", s))
	}
	var (
		out  []domain.State
		next domain.ApplicantID
	)
	err := p.view(op, func(tx *bolt.Tx) error {
		prefix := indexKey(string(s), "")
		c := tx.Bucket(bucketStatus).Cursor()
		k, _ := c.Seek(indexKey(string(s), cursor))
		if cursor != "" && k != nil && bytes.Equal(k, indexKey(string(s), cursor)) {
			k, _ = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id, ok := indexID(k, prefix)
			if !ok {
				return fmt.Errorf("%w: status index key %q", errCorruptValue, k)
			}
			if limit > 0 && len(out) == limit {
				next = out[len(out)-1].ApplicantID
				break
			}
			st, found, err := getState(tx, id)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%w: status index names unknown applicant %s", errCorruptValue, id)
			}
			out = append(out, st.State)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Anomalies returns up to limit irregular events with seq > after, and the next cursor
// (0 when there are no more). limit <= 0 returns all of them.
func (p *Projection) Anomalies(after uint64, limit int) ([]domain.Record, uint64, error) {
	const op = "projection.Projection.Anomalies"
	var (
		recs []domain.Record
		next uint64
	)
	err := p.view(op, func(tx *bolt.Tx) error {
		seqs, more, err := seqsAfter(tx.Bucket(bucketAnomalies), after, limit)
		if err != nil {
			return err
		}
		if more {
			next = seqs[len(seqs)-1]
		}
		recs, err = getRecords(tx, seqs)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return recs, next, nil
}

// Changes returns up to limit status changes with seq > after, in stream order. limit
// <= 0 returns all of them.
func (p *Projection) Changes(after uint64, limit int) ([]domain.Change, error) {
	const op = "projection.Projection.Changes"
	var out []domain.Change
	err := p.view(op, func(tx *bolt.Tx) error {
		if after == ^uint64(0) {
			return nil
		}
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) == limit {
				break
			}
			ch, err := decodeChange(v)
			if err != nil {
				return err
			}
			if s, ok := keySeq(k); !ok || s != ch.Seq {
				return fmt.Errorf("%w: change key %x holds seq %d", errCorruptValue, k, ch.Seq)
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Digests calls fn for every applicant with its digest, in applicant id order. It reads
// in short transactions and calls fn outside them, so a slow fn holds up nothing; an
// applicant first applied while it runs may or may not be included.
func (p *Projection) Digests(fn func(domain.ApplicantID, domain.Digest) error) error {
	const op = "projection.Projection.Digests"
	type entry struct {
		id domain.ApplicantID
		dg domain.Digest
	}
	const chunk = 1024
	buf := make([]entry, 0, chunk)
	var after []byte
	for {
		buf = buf[:0]
		err := p.view(op, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketStates).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(buf) < chunk; k, v = c.Next() {
				dg, err := stateDigest(v)
				if err != nil {
					return err
				}
				buf = append(buf, entry{domain.ApplicantID(k), dg})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range buf {
			if err := fn(e.id, e.dg); err != nil {
				return err
			}
		}
		if len(buf) < chunk {
			return nil
		}
		after = []byte(buf[len(buf)-1].id)
	}
}

// view runs fn in a read transaction. bbolt panics (or faults, on a truncated map) on
// some damaged pages: that, like a value that does not decode, is reported as corruption.
func (p *Projection) view(op string, fn func(*bolt.Tx) error) (err error) {
	if err := p.usable(op); err != nil {
		return err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer p.recoverCorrupt(op, &err)
	return p.txErr(op, p.db.View(fn))
}

// update is view for a write transaction.
func (p *Projection) update(op string, fn func(*bolt.Tx) error) (err error) {
	if err := p.usable(op); err != nil {
		return err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer p.recoverCorrupt(op, &err)
	return p.txErr(op, p.db.Update(fn))
}

// Err reports a projection that can no longer serve: once bbolt has failed on a damaged
// page, every call fails, so readiness checks use this to take the node out of service.
func (p *Projection) Err() error { return p.usable("projection.Projection") }

func (p *Projection) usable(op string) error {
	if p.broken.Load() {
		return corrupted(op, p.path, "an earlier read failed")
	}
	return nil
}

func (p *Projection) recoverCorrupt(op string, err *error) {
	if r := recover(); r != nil {
		p.broken.Store(true)
		*err = corrupted(op, p.path, r)
	}
}

// txErr classifies what a transaction returned.
func (p *Projection) txErr(op string, err error) error {
	var de *domain.Error
	switch {
	case err == nil, errors.Is(err, errNothingToApply):
		return err
	case errors.As(err, &de):
		if de.Op == "" {
			de.Op = op
		}
		return err
	case errors.Is(err, errCorruptValue):
		return corrupted(op, p.path, err)
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return domain.E(op, domain.KindUnavailable, "projection is closed")
	case errors.Is(err, bolterrors.ErrDatabaseReadOnly):
		return domain.E(op, domain.KindConflict, "projection opened read-only")
	}
	return domain.E(op, domain.KindUnavailable, err)
}

// getState reads and decodes an applicant's state record.
func getState(tx *bolt.Tx, id domain.ApplicantID) (stateRec, bool, error) {
	if id == "" {
		return stateRec{}, false, nil
	}
	v := tx.Bucket(bucketStates).Get([]byte(id))
	if v == nil {
		return stateRec{}, false, nil
	}
	st, err := decodeState(v)
	if err != nil {
		return st, false, err
	}
	if st.ApplicantID != id {
		return st, false, fmt.Errorf("%w: state under %s names %s", errCorruptValue, id, st.ApplicantID)
	}
	return st, true, nil
}

// getRecords reads history records by seq.
func getRecords(tx *bolt.Tx, seqs []uint64) ([]domain.Record, error) {
	h := tx.Bucket(bucketHistory)
	out := make([]domain.Record, 0, len(seqs))
	var key [8]byte
	for _, s := range seqs {
		v := h.Get(appendSeqKey(key[:0], s))
		if v == nil {
			return nil, fmt.Errorf("%w: history record %d missing", errCorruptValue, s)
		}
		r, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		if r.Seq != s {
			return nil, fmt.Errorf("%w: history key %d holds seq %d", errCorruptValue, s, r.Seq)
		}
		out = append(out, r)
	}
	return out, nil
}

// seqsAfter lists up to limit seq keys of b above after, and whether more follow.
func seqsAfter(b *bolt.Bucket, after uint64, limit int) ([]uint64, bool, error) {
	if after == ^uint64(0) {
		return nil, false, nil
	}
	var out []uint64
	c := b.Cursor()
	for k, _ := c.Seek(seqKey(after + 1)); k != nil; k, _ = c.Next() {
		if limit > 0 && len(out) == limit {
			return out, true, nil
		}
		s, ok := keySeq(k)
		if !ok {
			return nil, false, fmt.Errorf("%w: seq key %x", errCorruptValue, k)
		}
		out = append(out, s)
	}
	return out, false, nil
}
