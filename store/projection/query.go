// Queries: answers are read in bbolt read transactions and returned as copies (domain
// values, never bbolt's pages), so they stay valid after the transaction; readers never
// block Apply.

package projection

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

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
		var err error
		out, _, err = indexScan{b: tx.Bucket(bucketExt), name: "ext", value: string(ext), app: app, limit: limit}.run(tx)
		return err
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
		for _, a := range keys {
			found, _, err := indexScan{b: b, name: "ext", value: string(index(a)), app: a}.run(tx)
			if err != nil {
				return err
			}
			out = append(out, found...)
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
		var err error
		out, next, err = indexScan{b: tx.Bucket(bucketStatus), name: "status", value: string(s), after: cursor,
			strict: true, limit: limit}.run(tx)
		return err
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

// indexScan is one walk of an index bucket whose keys are indexKey(value, applicantId)
// (ext and extIndex, whose entries hold the appKey; status, whose entries are empty): the
// applicants filed under one value, in applicant id order, each answered with its state.
type indexScan struct {
	b     *bolt.Bucket
	name  string             // the index, as a damaged entry's error names it
	value string             // the indexed value
	after domain.ApplicantID // start after this applicant; "" from the first
	app   domain.AppKey      // if set, only the entries that hold this appKey
	// strict makes a key under the value that names no applicant damage. Otherwise it is
	// an entry of a longer value that starts with this one and a 0x00 (an externalUserId
	// may hold one), and is skipped.
	strict bool
	limit  int // at most this many states; all when <= 0
}

// run returns the states and the cursor to go on from: the last applicant returned when
// the limit cut the walk short before another entry, else "". An entry naming an
// applicant without a state is damage.
func (s indexScan) run(tx *bolt.Tx) ([]domain.State, domain.ApplicantID, error) {
	var out []domain.State
	prefix := indexKey(s.value, "")
	from := indexKey(s.value, s.after)
	c := s.b.Cursor()
	k, v := c.Seek(from)
	if s.after != "" && k != nil && bytes.Equal(k, from) {
		k, v = c.Next()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		id, ok := indexID(k, prefix)
		if !ok && s.strict {
			return nil, "", fmt.Errorf("%w: %s index key %q", errCorruptValue, s.name, k)
		}
		if !ok || (s.app != "" && string(v) != string(s.app)) {
			continue
		}
		if s.limit > 0 && len(out) == s.limit {
			return out, out[len(out)-1].ApplicantID, nil
		}
		st, found, err := getState(tx, id)
		if err != nil {
			return nil, "", err
		}
		if !found {
			return nil, "", fmt.Errorf("%w: %s index names unknown applicant %s", errCorruptValue, s.name, id)
		}
		out = append(out, st.State)
	}
	return out, "", nil
}
