package projection

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the version of everything the projection file stores; a file keeps
// the version it was written at in its meta bucket. It covers the buckets below with
// their keys (seqs as 8 bytes big-endian, states by applicant key, index keys as value
// 0x00 applicant key; domain.ApplicantKey: an Allpass applicant's id) and the
// layouts of codec.go: states, history records and changes. A change to any of them bumps
// it: testdata/projection/codec_schema<N>.golden pins the values' bytes at version N, so
// an encoding that changes while the version stays fails TestCodecGolden.
//
// A build refuses a file of a newer version, as written by a newer kycstate, rather than
// take a value it cannot decode for damage; it reads every version from oldestSchema on.
//
//	4: states and records in format 5, changes in format 3 (the provider, DESIGN.md
//	   section 13); states of other providers than Allpass under their applicant key
//	   (provider.app.id) and the ids bucket. A file raised from 3 (or earlier) gains
//	   the empty ids bucket and keeps its values, read as Allpass's: every applicant
//	   then was, and an Allpass applicant's key is its id, so no key changes.
//	   A record's outcome may be unauthenticated (DESIGN.md section 15), which a build
//	   of version 3 does not know; states of version 3 events hold a blind index the
//	   projection computed (Indexer), and their records none.
//	3: states and records in format 4 (content ids and the time flag, DESIGN.md
//	   section 15), changes in format 2. A file raised from 2 keeps its format 3
//	   values, read as holding no content ids, as the events they came from.
//	2: states and records in format 3, changes in format 2; every bucket below.
//	1: states and records in formats 1 to 3, changes in 1 or 2, the format byte telling
//	   them apart; extIndex and apps may be missing.
const SchemaVersion = 4

// oldestSchema is the oldest version this build reads. A writable open raises an older
// file it reads to SchemaVersion before anything is written (upgradeSchema), since what
// it writes then is in this build's formats.
const oldestSchema = 1

// Options tunes opening the file.
type Options struct {
	LockTimeout time.Duration // how long to wait for another process's lock; default 1 s
	ReadOnly    bool
	// Indexer gives Apply the blind index of the externalUserIds that version 3 events
	// carry sealed (the key ring); nil: their states get none, and cannot be found by
	// externalUserId.
	Indexer Indexer
}

// Buckets of the projection file.
var (
	bucketMeta      = []byte("meta")      // schema version, checkpoint
	bucketStates    = []byte("states")    // applicant key -> state record (state + its history seqs)
	bucketHistory   = []byte("history")   // seq -> record; append-only
	bucketExt       = []byte("ext")       // externalUserId 0x00 applicant key -> appKey
	bucketStatus    = []byte("status")    // status 0x00 applicant key -> empty
	bucketAnomalies = []byte("anomalies") // seq -> empty; the record is in history
	bucketChanges   = []byte("changes")   // seq -> change; append-only
	// bucketExtIndex is the blind index of sealed externalUserIds (stored version 2):
	// extIndex 0x00 applicantId -> appKey. bucketApps lists the appKeys it holds entries
	// of, so a lookup without an appKey knows which (appKey, externalUserId) to hash.
	bucketExtIndex = []byte("extIndex")
	bucketApps     = []byte("apps") // appKey -> empty
	// bucketIDs finds the applicants of providers other than Allpass by their provider's
	// id alone: id 0x00 applicant key -> empty. An Allpass applicant needs no entry: its
	// key is its id.
	bucketIDs = []byte("ids")

	allBuckets = [][]byte{bucketMeta, bucketStates, bucketHistory, bucketExt, bucketStatus,
		bucketAnomalies, bucketChanges, bucketExtIndex, bucketApps, bucketIDs}
	// laterBuckets came after schema version 1 began: upgradeSchema adds them to an
	// older file, and a read-only open reads their absence as empty.
	laterBuckets = [][]byte{bucketExtIndex, bucketApps, bucketIDs}

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
	ix       Indexer

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
// KindConflict error saying it is in use; a file of a newer schema version, KindConflict
// saying to upgrade; one older than this build reads, KindConflict saying to rebuild. A
// damaged file gives KindInternal saying it is corrupted.
func Open(path string, opts Options) (*Projection, error) {
	const op = "projection.Open"
	db, file, err := openBolt(op, path, boltOpts{lockTimeout: opts.LockTimeout, readOnly: opts.ReadOnly})
	if err != nil {
		return nil, err
	}
	p := &Projection{path: path, db: db, file: file, readOnly: opts.ReadOnly, ix: opts.Indexer,
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
		if err := p.update(op, upgradeSchema); err != nil {
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

// upgradeSchema raises a file of a version from oldestSchema up to SchemaVersion: it adds
// the buckets the file lacks and stamps the version in one transaction. A build that
// reads only the older version then refuses the file as newer, instead of failing on the
// first value written in a newer format. Any other file is left as it is, for
// checkSchema to report.
func upgradeSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	v, ok := keySeq(meta.Get(keySchema))
	if !ok || v < oldestSchema || v >= SchemaVersion {
		return nil
	}
	for _, name := range laterBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return meta.Put(keySchema, seqKey(SchemaVersion))
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
	if v > SchemaVersion {
		return 0, domain.E("", domain.KindConflict, fmt.Sprintf("projection %s was written by a newer kycstate (schema %d); upgrade, or run this build's kycstate rebuild to go back to schema %d", path, v, SchemaVersion))
	}
	if v < oldestSchema {
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
