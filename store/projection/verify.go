package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// Verify folds the log afresh, up to the projection's checkpoint, into one digest chain
// per applicant and compares every applicant's digest, event count and last sequence with
// the projection, listing each difference. It keeps one small entry per applicant in
// memory (about 150 bytes), not states or events. It counts the events by the verdict on
// their MAC (DESIGN.md section 15) and lists every event whose MAC fails as a difference
// of its own (DiffUnauthenticated), in log order, after the others: the log holds an
// event kycstate did not write, whatever the projection made of it.
//
// A projection that advances while Verify runs is compared as of the checkpoint Verify
// started from: for an applicant changed since, the digest stored in its history record
// at that point is used.
func Verify(ctx context.Context, src domain.EventSource, p *Projection) (domain.VerifyResult, error) {
	last, err := src.LastSeq(ctx)
	if err != nil {
		return domain.VerifyResult{}, err
	}
	return verify(ctx, src.Read, last, p)
}

// chain is one applicant's fold of the log as verify needs it.
type chain struct {
	digest  domain.Digest
	lastSeq uint64
	events  int
	seen    bool // matched with the projection
}

// errStopRead ends a log read early; it never leaves this package.
var errStopRead = errors.New("stop reading")

func verify(ctx context.Context, read readFunc, last uint64, p *Projection) (domain.VerifyResult, error) {
	const op = "projection.Verify"
	res := domain.VerifyResult{Checkpoint: p.Checkpoint(), LogLast: last}
	cp := res.Checkpoint
	// Chains by applicant key: two providers' applicants may share an id.
	chains := make(map[domain.ApplicantKey]*chain)
	var forged []domain.VerifyDifference
	if cp > 0 {
		err := read(ctx, 1, rebuildBatch, func(evs []domain.Event) error {
			for i := range evs {
				e := &evs[i]
				if e.Seq > cp {
					return errStopRead
				}
				key := e.Key()
				c := chains[key]
				if c == nil {
					c = &chain{}
					chains[key] = c
				}
				c.digest = c.digest.Next(e.Stored)
				c.lastSeq = e.Seq
				c.events++
				res.Events++
				switch e.Auth {
				case domain.AuthSigned:
					res.Signed++
				case domain.AuthUnsigned:
					res.Unsigned++
				case domain.AuthFailed:
					res.Unauthenticated++
					forged = append(forged, domain.VerifyDifference{Kind: domain.DiffUnauthenticated, ApplicantID: domain.ApplicantID(key),
						Log:        fmt.Sprintf("seq %d fails its MAC under the log key: not written by kycstate", e.Seq),
						Projection: "folded as unauthenticated, no effect"})
				}
			}
			return ctx.Err()
		})
		if err != nil && !errors.Is(err, errStopRead) {
			if domain.KindOf(err) == domain.KindOther {
				err = domain.E(op, domain.KindUnavailable, err)
			}
			return res, err
		}
	}
	res.Applicants = len(chains)
	if cp > last {
		res.Differences = append(res.Differences, domain.VerifyDifference{Kind: domain.DiffCheckpoint,
			Log: fmt.Sprintf("ends at sequence %d", last), Projection: fmt.Sprintf("checkpoint %d", cp)})
	}

	err := p.scanStates(op, func(tx *bolt.Tx, st *stateRec) error {
		digest, lastSeq, events := st.Digest, st.LastSeq, st.Events
		if st.LastSeq > cp {
			// Applied after Verify started: compare as of cp, through history.
			i, _ := slices.BinarySearch(st.Seqs, cp+1)
			if i == 0 {
				return nil // the applicant's first event came after cp
			}
			recs, err := getRecords(tx, st.Seqs[i-1:i])
			if err != nil {
				return err
			}
			digest, lastSeq, events = recs[0].Digest, st.Seqs[i-1], i
		}
		// A difference names the applicant by its key: its id for Allpass, as before, and
		// provider.app.id for the others, so that one of two sharing an id is told apart.
		id := domain.ApplicantID(st.Key())
		c := chains[st.Key()]
		switch {
		case c == nil:
			res.Differences = append(res.Differences, domain.VerifyDifference{Kind: domain.DiffExtra, ApplicantID: id,
				Log: "no events", Projection: describe(digest, events, lastSeq)})
			return nil
		case c.digest != digest:
			res.Differences = append(res.Differences, domain.VerifyDifference{Kind: domain.DiffDigest, ApplicantID: id,
				Log: describe(c.digest, c.events, c.lastSeq), Projection: describe(digest, events, lastSeq)})
		case c.events != events || c.lastSeq != lastSeq:
			res.Differences = append(res.Differences, domain.VerifyDifference{Kind: domain.DiffCount, ApplicantID: id,
				Log: describe(c.digest, c.events, c.lastSeq), Projection: describe(digest, events, lastSeq)})
		}
		c.seen = true
		return nil
	})
	if err != nil {
		return res, err
	}
	var missing []domain.VerifyDifference
	for id, c := range chains {
		if !c.seen {
			missing = append(missing, domain.VerifyDifference{Kind: domain.DiffMissing, ApplicantID: domain.ApplicantID(id),
				Log: describe(c.digest, c.events, c.lastSeq), Projection: "no state"})
		}
	}
	slices.SortFunc(missing, func(a, b domain.VerifyDifference) int {
		return bytes.Compare([]byte(a.ApplicantID), []byte(b.ApplicantID))
	})
	res.Differences = append(res.Differences, missing...)
	res.Differences = append(res.Differences, forged...)
	return res, nil
}

func describe(d domain.Digest, events int, lastSeq uint64) string {
	return fmt.Sprintf("digest %s, %d events, last seq %d", d, events, lastSeq)
}

// scanStates calls fn for every stored state in applicant id order, in read transactions
// of a bounded number of states each (fn runs inside them and must be quick).
func (p *Projection) scanStates(op string, fn func(*bolt.Tx, *stateRec) error) error {
	const chunk = 1024
	var after []byte
	for {
		n := 0
		err := p.view(op, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketStates).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && n < chunk; k, v = c.Next() {
				st, err := decodeState(v)
				if err != nil {
					return err
				}
				if string(st.Key()) != string(k) {
					return fmt.Errorf("%w: state under %s names %s", errCorruptValue, k, st.Key())
				}
				if err := fn(tx, &st); err != nil {
					return err
				}
				after = append(after[:0], k...)
				n++
			}
			return nil
		})
		if err != nil || n < chunk {
			return err
		}
	}
}
