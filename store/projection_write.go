package store

import (
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
	folder     *domain.Folder
	states     *bolt.Bucket
	history    *bolt.Bucket
	ext        *bolt.Bucket
	status     *bolt.Bucket
	anomalies  *bolt.Bucket
	changes    *bolt.Bucket
	meta       *bolt.Bucket
	checkpoint uint64 // the last sequence folded (the file's checkpoint when the writer starts)

	touched map[domain.ApplicantID]*touched
	mem     *arena
	scratch []byte
}

// touched is an applicant's state being folded, and what the indexes hold for it (from
// the stored state), so that flush replaces index entries that changed.
type touched struct {
	rec           stateRec
	indexedExt    domain.ExternalUserID
	indexedStatus domain.Status
}

// maxApplicantID bounds applicant ids as keys; ingest lets only UUIDs through.
const maxApplicantID = 128

func newWriter(tx *bolt.Tx, f *domain.Folder, mem *arena) (*writer, error) {
	w := &writer{
		folder:    f,
		states:    tx.Bucket(bucketStates),
		history:   tx.Bucket(bucketHistory),
		ext:       tx.Bucket(bucketExt),
		status:    tx.Bucket(bucketStatus),
		anomalies: tx.Bucket(bucketAnomalies),
		changes:   tx.Bucket(bucketChanges),
		meta:      tx.Bucket(bucketMeta),
		touched:   make(map[domain.ApplicantID]*touched),
		mem:       mem,
	}
	if w.mem == nil {
		w.mem = &arena{}
	}
	if w.states == nil || w.history == nil || w.ext == nil || w.status == nil ||
		w.anomalies == nil || w.changes == nil || w.meta == nil {
		return nil, fmt.Errorf("%w: a bucket is missing", errCorruptValue)
	}
	cp, ok := keySeq(w.meta.Get(keyCheckpoint))
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint missing", errCorruptValue)
	}
	w.checkpoint = cp
	// Keys only ever grow in these buckets: full pages, no later splits.
	w.history.FillPercent = 1.0
	w.anomalies.FillPercent = 1.0
	w.changes.FillPercent = 1.0
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
	t, err := w.load(e.ApplicantID)
	if err != nil {
		return rec, false, err
	}
	var next domain.State
	next, rec = w.folder.Apply(t.rec.State, *e)
	t.rec.State = next
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
		c := Change{Seq: e.Seq, ApplicantID: next.ApplicantID, AppKey: next.AppKey,
			ExternalUserID: next.ExternalUserID, From: rec.From, To: rec.To, At: rec.EventAt}
		w.scratch = appendChange(w.scratch[:0], &c)
		if err := w.changes.Put(key, w.mem.copy(w.scratch)); err != nil {
			return rec, false, err
		}
	}
	w.checkpoint = e.Seq
	return rec, true, nil
}

func (w *writer) load(id domain.ApplicantID) (*touched, error) {
	if t := w.touched[id]; t != nil {
		return t, nil
	}
	t := &touched{}
	if v := w.states.Get([]byte(id)); v != nil {
		rec, err := decodeState(v)
		if err != nil {
			return nil, err
		}
		if rec.ApplicantID != id {
			return nil, fmt.Errorf("%w: state under %s names %s", errCorruptValue, id, rec.ApplicantID)
		}
		t.rec, t.indexedExt, t.indexedStatus = rec, rec.ExternalUserID, rec.Status
	}
	w.touched[id] = t
	return t, nil
}

// flush writes the touched states and their index changes in key order, and the
// checkpoint. The writer can go on folding afterwards (in the same transaction).
func (w *writer) flush() error {
	ids := make([]domain.ApplicantID, 0, len(w.touched))
	for id := range w.touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		t := w.touched[id]
		w.scratch = appendState(w.scratch[:0], &t.rec)
		if err := w.states.Put(w.mem.copyString(string(id)), w.mem.copy(w.scratch)); err != nil {
			return err
		}
		if ext := t.rec.ExternalUserID; ext != t.indexedExt {
			if indexableExt(t.indexedExt) {
				if err := w.ext.Delete(indexKey(string(t.indexedExt), id)); err != nil {
					return err
				}
			}
			if indexableExt(ext) {
				k := w.mem.copy(indexKey(string(ext), id))
				if err := w.ext.Put(k, w.mem.copyString(string(t.rec.AppKey))); err != nil {
					return err
				}
			}
			t.indexedExt = ext
		}
		if st := t.rec.Status; st != t.indexedStatus {
			if t.indexedStatus != domain.StatusNone {
				if err := w.status.Delete(indexKey(string(t.indexedStatus), id)); err != nil {
					return err
				}
			}
			if st != domain.StatusNone {
				if err := w.status.Put(w.mem.copy(indexKey(string(st), id)), []byte{}); err != nil {
					return err
				}
			}
			t.indexedStatus = st
		}
	}
	return w.meta.Put(keyCheckpoint, w.mem.seqKey(w.checkpoint))
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
