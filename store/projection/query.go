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

// State returns an Allpass applicant's current state, or any provider's given its key
// as an id (StateOf).
func (p *Projection) State(id domain.ApplicantID) (domain.State, bool, error) {
	return p.StateOf(domain.ApplicantKey(id))
}

// StateOf returns the current state of the applicant with key id (domain.KeyOf).
func (p *Projection) StateOf(id domain.ApplicantKey) (domain.State, bool, error) {
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

// History returns up to limit records of an Allpass applicant (or of any provider's,
// given its key as an id) with seq > after, in order, and the seq to continue from (0
// when there are no more). limit <= 0 returns all of them, which is what folding history
// to a point in time (Folder.Refold) needs. An unknown applicant has no history (no
// error).
func (p *Projection) History(id domain.ApplicantID, after uint64, limit int) ([]domain.Record, uint64, error) {
	return p.HistoryOf(domain.ApplicantKey(id), after, limit)
}

// HistoryOf is History for the applicant with key id (domain.KeyOf).
func (p *Projection) HistoryOf(id domain.ApplicantKey, after uint64, limit int) ([]domain.Record, uint64, error) {
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

// Applicant returns the state of applicant id of provider pr (DESIGN.md section 13: an
// applicant is (provider, app, the provider's id)). app may be empty: the applicant is
// then looked up by its id among pr's apps, and an id that two apps of pr hold is
// KindConflict (name the app). An Allpass applicant is found by its id alone, whatever
// app is given, as it always was.
func (p *Projection) Applicant(pr domain.Provider, app domain.AppKey, id domain.ApplicantID) (domain.State, bool, error) {
	const op = "projection.Projection.Applicant"
	if pr == domain.ProviderAllpass || app != "" {
		return p.StateOf(domain.KeyOf(pr, app, id))
	}
	all, err := p.ApplicantsByID(id)
	if err != nil {
		return domain.State{}, false, err
	}
	var found []domain.State
	for _, st := range all {
		if st.Provider == pr {
			found = append(found, st)
		}
	}
	switch len(found) {
	case 0:
		return domain.State{}, false, nil
	case 1:
		return found[0], true, nil
	}
	return domain.State{}, false, domain.Public(op, domain.KindConflict, "ambiguous_applicant",
		fmt.Sprintf("%d apps of %s hold applicant id %s; name the app", len(found), pr, id))
}

// ApplicantsByID returns every applicant whose id (its provider's) is id, of every
// provider and app, in applicant key order: two providers may give the same id (Veriff's
// and Onfido's ids are UUIDs, as Allpass's are), and a caller that did not say which
// provider it means gets them all.
func (p *Projection) ApplicantsByID(id domain.ApplicantID) ([]domain.State, error) {
	const op = "projection.Projection.ApplicantsByID"
	if id == "" || slices.Contains([]byte(id), 0) {
		return nil, nil
	}
	var out []domain.State
	err := p.view(op, func(tx *bolt.Tx) error {
		if st, found, err := getState(tx, domain.ApplicantKey(id)); err != nil {
			return err
		} else if found {
			out = append(out, st.State)
		}
		b := tx.Bucket(bucketIDs)
		if b == nil {
			return nil // a read-only file of schema 3 or older: Allpass's applicants only
		}
		found, _, err := indexScan{b: b, name: "ids", value: string(id), strict: true}.run(tx)
		if err != nil {
			return err
		}
		for _, st := range found {
			if st.ApplicantID != id {
				return fmt.Errorf("%w: ids index files %s under %s", errCorruptValue, st.Key(), id)
			}
		}
		out = append(out, found...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b domain.State) int { return strings.Compare(string(a.Key()), string(b.Key())) })
	return out, nil
}

// ByExternalUserID returns the applicants carrying ext (of app, if app is not empty), of
// every provider, in applicant key order, at most limit of them (all when limit <= 0).
// externalUserIds longer than 1 KiB are not indexed.
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
// index index(appKey): of app if it is not empty, else of every app the index holds (the
// apps of every provider), in applicant key order, at most limit of them (all when
// limit <= 0). index is the key
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
	slices.SortFunc(out, func(a, b domain.State) int { return strings.Compare(string(a.Key()), string(b.Key())) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// States returns up to limit applicants' states in applicant key order after the cursor
// (an applicant key, "" from the start), and the next cursor ("" at the end): what a
// sweep over every applicant (retention) reads, a page per transaction.
func (p *Projection) States(cursor domain.ApplicantKey, limit int) ([]domain.State, domain.ApplicantKey, error) {
	const op = "projection.Projection.States"
	limit = max(limit, 1)
	var (
		out  []domain.State
		next domain.ApplicantKey
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
				next = out[len(out)-1].Key()
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

// ByStatus returns up to limit applicants in status s, of every provider, ordered by
// applicant key, after the cursor (an applicant key, "" from the start), and the next
// cursor ("" at the end). limit <= 0 returns all of them.
func (p *Projection) ByStatus(s domain.Status, cursor domain.ApplicantKey, limit int) ([]domain.State, domain.ApplicantKey, error) {
	const op = "projection.Projection.ByStatus"
	if !s.Valid() {
		return nil, "", domain.E(op, domain.KindInvalid, fmt.Sprintf("unknown status %q", s))
	}
	var (
		out  []domain.State
		next domain.ApplicantKey
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

// Digests calls fn for every applicant with its key and digest, in applicant key order.
// It reads in short transactions and calls fn outside them, so a slow fn holds up
// nothing; an applicant first applied while it runs may or may not be included.
func (p *Projection) Digests(fn func(domain.ApplicantKey, domain.Digest) error) error {
	const op = "projection.Projection.Digests"
	type entry struct {
		id domain.ApplicantKey
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
				buf = append(buf, entry{domain.ApplicantKey(k), dg})
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

// getState reads and decodes the state record of the applicant with key id.
func getState(tx *bolt.Tx, id domain.ApplicantKey) (stateRec, bool, error) {
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
	if st.Key() != id {
		return st, false, fmt.Errorf("%w: state under %s names %s", errCorruptValue, id, st.Key())
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

// indexScan is one walk of an index bucket whose keys are indexKey(value, applicant key)
// (ext and extIndex, whose entries hold the appKey; status and ids, whose entries are
// empty): the applicants filed under one value, in applicant key order, each answered
// with its state.
type indexScan struct {
	b     *bolt.Bucket
	name  string              // the index, as a damaged entry's error names it
	value string              // the indexed value
	after domain.ApplicantKey // start after this applicant; "" from the first
	app   domain.AppKey       // if set, only the entries that hold this appKey
	// strict makes a key under the value that names no applicant damage. Otherwise it is
	// an entry of a longer value that starts with this one and a 0x00 (an externalUserId
	// may hold one), and is skipped.
	strict bool
	limit  int // at most this many states; all when <= 0
}

// run returns the states and the cursor to go on from: the last applicant returned when
// the limit cut the walk short before another entry, else "". An entry naming an
// applicant without a state is damage.
func (s indexScan) run(tx *bolt.Tx) ([]domain.State, domain.ApplicantKey, error) {
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
			return out, out[len(out)-1].Key(), nil
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
