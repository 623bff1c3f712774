package projection

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// writer folds events into one write transaction. Projection.Apply uses one per batch and
// Builder one per chunk of a rebuild: both go through the same code, which is what makes
// their files identical bucket for bucket.
//
// Per event it appends to history, anomalies and changes (keys are stream sequences, so
// these are appends at the right edge of their B+trees, packed full). States and index
// entries are kept in memory, so an applicant seen several times in the transaction folds
// from its newest state, and written once, in key order, by flush.
type writer struct {
	folder *domain.Folder
	ix     Indexer // nil: states of version 3 events get no blind index
	writerBuckets
	checkpoint uint64 // the last sequence folded (the file's checkpoint when the writer starts)

	touched map[domain.ApplicantKey]*touched
	mem     *arena
	scratch []byte

	// park, for a Builder, keeps states in memory rather than in the file (see parking).
	park *parking

	// index changes of one flush or spill, applied in key order: bbolt keeps a node's
	// entries in one slice until the commit splits it, so entries put out of order into
	// a large node cost a copy of the slice each.
	extOps, extIndexOps, statusOps, idOps []indexOp
	// appsIndexed are the appKeys known to be in the apps bucket in this transaction.
	appsIndexed map[domain.AppKey]bool
}

// bucket is what a writer uses of a bbolt bucket. A Builder hands its writer recorders
// instead, which another goroutine replays into the file (rebuild.go).
type bucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
}

// writerBuckets are the buckets a writer writes to.
type writerBuckets struct {
	states, history, ext, status, anomalies, changes, meta bucket
	extIndex, apps, ids                                    bucket
}

// txBuckets returns tx's buckets for a writer. Keys only ever grow in history, anomalies
// and changes: their pages are packed full, with no later splits.
func txBuckets(tx *bolt.Tx) (writerBuckets, error) {
	var bs writerBuckets
	for _, x := range []struct {
		dst  *bucket
		name []byte
		full bool
	}{
		{&bs.states, bucketStates, false}, {&bs.history, bucketHistory, true},
		{&bs.ext, bucketExt, false}, {&bs.status, bucketStatus, false},
		{&bs.anomalies, bucketAnomalies, true}, {&bs.changes, bucketChanges, true},
		{&bs.meta, bucketMeta, false},
		{&bs.extIndex, bucketExtIndex, false}, {&bs.apps, bucketApps, false},
		{&bs.ids, bucketIDs, false},
	} {
		b := tx.Bucket(x.name)
		if b == nil {
			return bs, fmt.Errorf("%w: bucket %s is missing", errCorruptValue, x.name)
		}
		if x.full {
			b.FillPercent = 1.0
		}
		*x.dst = b
	}
	return bs, nil
}

type indexOp struct {
	key, val []byte
	del      bool
}

// touched is an applicant's state being folded, whether it is stored in the file, and
// what the indexes in the file hold for it, so that flush replaces index entries that
// changed.
type touched struct {
	rec           stateRec
	inFile        bool
	indexedExt    domain.ExternalUserID
	indexedIdx    domain.ExternalUserIndex
	indexedStatus domain.Status
	// indexedFor is the sealed externalUserId the state's blind index was last worked
	// out for (or found without one): the Indexer is asked again only when it changes.
	indexedFor domain.SealedExternalUserID
}

// Indexer gives the blind index of an applicant's sealed externalUserId (DESIGN.md
// section 15): version 3 events carry the id sealed under the applicant's data key and
// no index, so that the log never links the applicant to its id once the key is gone.
// The key ring (eventlog.Keyring) implements it: it opens the sealed id with the data
// key and hashes it with the ring's keyed HMAC.
type Indexer interface {
	// SealedIndex returns the blind index of sealed, the externalUserId of applicant
	// (app, id) of provider p (each provider's applicants have their own data keys). Errors: KindNotFound when the applicant's data key is destroyed or was
	// never made, KindInternal when sealed does not open under it: the state then has no
	// index (nothing can compute it). Any other error (KindUnavailable: the key store
	// does not answer) fails the batch, which is retried.
	SealedIndex(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, sealed domain.SealedExternalUserID) (domain.ExternalUserIndex, error)
}

// parking holds a Builder's states in memory, encoded, until they are written in one
// sorted pass: to an empty bucket that is an append at its right edge, and the index
// entries, built from final states only, likewise. Reading and rewriting states in the
// file chunk after chunk would instead rewrite (copy on write) most state pages every
// chunk and read them back through bbolt's map, which counts in the resident set.
// Past budget bytes the parked states are written to the file (spilled), and from
// then on those applicants fold from the file as in Apply.
type parking struct {
	states map[domain.ApplicantKey][]byte
	bytes  int
	budget int
}

// parkOverhead approximates what a map entry costs beyond its key and value bytes.
const parkOverhead = 96

func (pk *parking) full() bool { return pk.bytes > pk.budget }

// maxApplicantID bounds applicant ids and appKeys; ingest lets only UUIDs (Allpass) and
// subject tokens of at most 64 characters (the other providers) through.
const maxApplicantID = 128

func newWriter(tx *bolt.Tx, f *domain.Folder, ix Indexer, mem *arena, park *parking) (*writer, error) {
	bs, err := txBuckets(tx)
	if err != nil {
		return nil, err
	}
	return newBucketWriter(bs, f, ix, mem, park)
}

// newBucketWriter starts a writer at the checkpoint in bs.meta.
func newBucketWriter(bs writerBuckets, f *domain.Folder, ix Indexer, mem *arena, park *parking) (*writer, error) {
	w := &writer{
		folder:        f,
		ix:            ix,
		writerBuckets: bs,
		touched:       make(map[domain.ApplicantKey]*touched),
		appsIndexed:   map[domain.AppKey]bool{},
		mem:           mem,
		park:          park,
	}
	if w.mem == nil {
		w.mem = &arena{}
	}
	cp, ok := keySeq(w.meta.Get(keyCheckpoint))
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint missing", errCorruptValue)
	}
	w.checkpoint = cp
	return w, nil
}

// event folds one event. Events at or below the checkpoint are skipped (ok false).
func (w *writer) event(e *domain.Event) (rec domain.Record, ok bool, err error) {
	if e.Seq <= w.checkpoint {
		return rec, false, nil
	}
	if e.ApplicantID == "" || len(e.ApplicantID) > maxApplicantID || slices.Contains([]byte(e.ApplicantID), 0) {
		return rec, false, domain.E("", domain.KindInvalid, fmt.Sprintf("event %d has no valid applicant id", e.Seq))
	}
	if len(e.AppKey) > maxApplicantID || (e.ExternalUserIndex != "" && e.AppKey == "") {
		// The appKey is a key of the apps bucket once the event carries a blind index.
		return rec, false, domain.E("", domain.KindInvalid, fmt.Sprintf("event %d has no valid appKey", e.Seq))
	}
	p := domain.ProviderOf(e.Provider)
	if !p.Valid() {
		return rec, false, domain.E("", domain.KindInvalid, fmt.Sprintf("event %d has an unknown provider", e.Seq))
	}
	if p != domain.ProviderAllpass && (!domain.IsSubjectToken(string(e.AppKey)) || !domain.IsSubjectToken(string(e.ApplicantID))) {
		// An applicant key is provider.app.id: a '.' in app or id could name another's,
		// and the log stores no other provider's event with ids other than subject tokens.
		return rec, false, domain.E("", domain.KindInvalid, fmt.Sprintf("event %d has no valid app or applicant id", e.Seq))
	}
	t, err := w.load(e.Key())
	if err != nil {
		return rec, false, err
	}
	// In place: the touched state is the writer's own, decoded for this transaction.
	rec = w.folder.Fold(&t.rec.State, e)
	next := &t.rec.State
	t.rec.Seqs = append(t.rec.Seqs, e.Seq)

	key := w.mem.seqKey(e.Seq)
	w.scratch = appendRecord(w.scratch[:0], &rec)
	if err := w.history.Put(key, w.mem.copy(w.scratch)); err != nil {
		return rec, false, err
	}
	if rec.Outcome == domain.OutcomeIrregular {
		if err := w.anomalies.Put(key, []byte{}); err != nil {
			return rec, false, err
		}
	}
	if rec.StatusChanged() {
		c := domain.Change{Seq: e.Seq, ApplicantID: next.ApplicantID, AppKey: next.AppKey, Provider: next.Provider,
			ExternalUserID: next.ExternalUserID, SealedExternalUserID: next.SealedExternalUserID,
			From: rec.From, To: rec.To, At: rec.EventAt}
		w.scratch = appendChange(w.scratch[:0], &c)
		if err := w.changes.Put(key, w.mem.copy(w.scratch)); err != nil {
			return rec, false, err
		}
	}
	w.checkpoint = e.Seq
	return rec, true, nil
}

func (w *writer) load(id domain.ApplicantKey) (*touched, error) {
	if t := w.touched[id]; t != nil {
		return t, nil
	}
	t := &touched{}
	if b, ok := w.park.get(id); ok {
		rec, err := decodeState(b)
		if err != nil {
			return nil, err
		}
		t.rec, t.indexedFor = rec, rec.SealedExternalUserID
	} else if v := w.states.Get([]byte(id)); v != nil {
		rec, err := decodeState(v)
		if err != nil {
			return nil, err
		}
		if rec.Key() != id {
			return nil, fmt.Errorf("%w: state under %s names %s", errCorruptValue, id, rec.Key())
		}
		t.rec, t.inFile, t.indexedExt, t.indexedIdx, t.indexedStatus = rec, true, rec.ExternalUserID, rec.ExternalUserIndex, rec.Status
		t.indexedFor = rec.SealedExternalUserID
	}
	w.touched[id] = t
	return t, nil
}

func (pk *parking) get(id domain.ApplicantKey) ([]byte, bool) {
	if pk == nil {
		return nil, false
	}
	b, ok := pk.states[id]
	return b, ok
}

func (pk *parking) put(id domain.ApplicantKey, enc []byte) {
	if old, ok := pk.states[id]; ok {
		pk.bytes -= len(old)
	} else {
		pk.bytes += len(id) + parkOverhead
	}
	pk.states[id] = enc
	pk.bytes += len(enc)
}

// flush writes the touched states and their index changes in key order (or parks them),
// and the checkpoint. The writer can go on folding afterwards (in the same transaction).
func (w *writer) flush() error {
	ids := make([]domain.ApplicantKey, 0, len(w.touched))
	for id := range w.touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		t := w.touched[id]
		if err := w.index(t); err != nil {
			return err
		}
		w.scratch = appendState(w.scratch[:0], &t.rec)
		if w.park != nil && !t.inFile {
			w.park.put(id, bytes.Clone(w.scratch))
			continue
		}
		if err := w.store(id, w.scratch, &t.rec.State, !t.inFile, t.indexedExt, t.indexedIdx, t.indexedStatus); err != nil {
			return err
		}
		t.inFile, t.indexedExt, t.indexedIdx, t.indexedStatus = true, t.rec.ExternalUserID, t.rec.ExternalUserIndex, t.rec.Status
	}
	if err := w.applyIndexOps(); err != nil {
		return err
	}
	return w.meta.Put(keyCheckpoint, w.mem.seqKey(w.checkpoint))
}

// index gives a state whose sealed externalUserId changed since it was loaded its blind
// index, from the Indexer: once per flush at most, not per event, and only for a state
// whose id came sealed without an index (version 3). A version 2 event brings its index
// in clear, and the fold copies it.
func (w *writer) index(t *touched) error {
	st := &t.rec.State
	if st.SealedExternalUserID == "" || st.ExternalUserIndex != "" || st.SealedExternalUserID == t.indexedFor {
		return nil
	}
	if w.ix == nil {
		return nil
	}
	idx, err := w.ix.SealedIndex(context.Background(), st.Provider, st.AppKey, st.ApplicantID, st.SealedExternalUserID)
	switch domain.KindOf(err) {
	case domain.KindNotFound, domain.KindInternal:
		idx, err = "", nil // erased, no key, or not its own: no index, for good
	}
	if err != nil {
		return err
	}
	st.ExternalUserIndex, t.indexedFor = idx, st.SealedExternalUserID
	return nil
}

// spill writes every parked state to the file, with its index entries, in key order.
// The touched states must have been flushed.
func (w *writer) spill() error {
	if w.park == nil || len(w.park.states) == 0 {
		return nil
	}
	ids := make([]domain.ApplicantKey, 0, len(w.park.states))
	for id := range w.park.states {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		enc := w.park.states[id]
		rec, err := decodeState(enc)
		if err != nil {
			return err
		}
		if err := w.store(id, enc, &rec.State, true, "", "", domain.StatusNone); err != nil {
			return err
		}
		if t := w.touched[id]; t != nil {
			t.inFile, t.indexedExt, t.indexedIdx, t.indexedStatus = true, rec.ExternalUserID, rec.ExternalUserIndex, rec.Status
		}
	}
	w.park.states, w.park.bytes = make(map[domain.ApplicantKey][]byte), 0
	return w.applyIndexOps()
}

func (w *writer) applyIndexOps() error {
	for _, x := range []struct {
		b   bucket
		ops *[]indexOp
	}{{w.ext, &w.extOps}, {w.extIndex, &w.extIndexOps}, {w.status, &w.statusOps}, {w.ids, &w.idOps}} {
		slices.SortFunc(*x.ops, func(a, b indexOp) int { return bytes.Compare(a.key, b.key) })
		for _, op := range *x.ops {
			var err error
			if op.del {
				err = x.b.Delete(op.key)
			} else {
				err = x.b.Put(op.key, op.val)
			}
			if err != nil {
				return err
			}
		}
		*x.ops = (*x.ops)[:0]
	}
	return nil
}

// store puts an applicant's encoded state in the file and queues the index changes from
// indexedExt, indexedIdx and indexedStatus (what the file's indexes hold for it) to its
// current ones. fresh says the file holds no state of the applicant yet: one of a
// provider other than Allpass is then entered in the ids index, once.
func (w *writer) store(id domain.ApplicantKey, enc []byte, st *domain.State, fresh bool, indexedExt domain.ExternalUserID, indexedIdx domain.ExternalUserIndex, indexedStatus domain.Status) error {
	if err := w.states.Put(w.mem.copyString(string(id)), w.mem.copy(enc)); err != nil {
		return err
	}
	if fresh && st.Provider != domain.ProviderAllpass {
		w.idOps = append(w.idOps, indexOp{key: w.mem.copy(indexKey(string(st.ApplicantID), id)), val: []byte{}})
	}
	if idx := st.ExternalUserIndex; idx != indexedIdx {
		if indexedIdx != "" {
			w.extIndexOps = append(w.extIndexOps, indexOp{key: indexKey(string(indexedIdx), id), del: true})
		}
		if idx != "" && len(idx) <= maxIndexedExt {
			w.extIndexOps = append(w.extIndexOps, indexOp{key: w.mem.copy(indexKey(string(idx), id)), val: w.mem.copyString(string(st.AppKey))})
			if err := w.indexApp(st.AppKey); err != nil {
				return err
			}
		}
	}
	if ext := st.ExternalUserID; ext != indexedExt {
		if indexableExt(indexedExt) {
			w.extOps = append(w.extOps, indexOp{key: indexKey(string(indexedExt), id), del: true})
		}
		if indexableExt(ext) {
			w.extOps = append(w.extOps, indexOp{key: w.mem.copy(indexKey(string(ext), id)), val: w.mem.copyString(string(st.AppKey))})
		}
	}
	if s := st.Status; s != indexedStatus {
		if indexedStatus != domain.StatusNone {
			w.statusOps = append(w.statusOps, indexOp{key: indexKey(string(indexedStatus), id), del: true})
		}
		if s != domain.StatusNone {
			w.statusOps = append(w.statusOps, indexOp{key: w.mem.copy(indexKey(string(s), id)), val: []byte{}})
		}
	}
	return nil
}

// indexApp records that the blind index holds entries of app.
func (w *writer) indexApp(app domain.AppKey) error {
	if w.appsIndexed[app] {
		return nil
	}
	if app == "" {
		return domain.E("", domain.KindInvalid, "a blind-indexed applicant has no appKey")
	}
	w.appsIndexed[app] = true
	if w.apps.Get([]byte(app)) != nil {
		return nil
	}
	return w.apps.Put(w.mem.copyString(string(app)), []byte{})
}

func indexableExt(ext domain.ExternalUserID) bool {
	return ext != "" && len(ext) <= maxIndexedExt
}

// arena holds the keys and values handed to bbolt, which keeps referring to them until
// the transaction commits: carving them out of large blocks spares an allocation each.
type arena struct {
	blk  []byte
	grow int
}

func (a *arena) alloc(n int) []byte {
	if cap(a.blk)-len(a.blk) < n {
		a.grow = min(max(a.grow*2, 16<<10), 1<<20)
		a.blk = make([]byte, 0, max(a.grow, n))
	}
	start := len(a.blk)
	a.blk = a.blk[:start+n]
	return a.blk[start : start+n : start+n]
}

func (a *arena) copy(b []byte) []byte {
	out := a.alloc(len(b))
	copy(out, b)
	return out
}

func (a *arena) copyString(s string) []byte {
	out := a.alloc(len(s))
	copy(out, s)
	return out
}

func (a *arena) seqKey(seq uint64) []byte {
	return appendSeqKey(a.alloc(8)[:0], seq)
}
