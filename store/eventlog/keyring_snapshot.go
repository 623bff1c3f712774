// A snapshot of the ring's data keys, for a rebuild. A rebuild computes the blind index
// of every applicant with a sealed externalUserId (version 3 events store none), which
// needs the applicant's data key: fetched one by one from KYC_KEYS that is a request
// per applicant, minutes at millions of them. A snapshot reads KYC_KEYS once, in order,
// as fast as the stream delivers, and answers from memory.

package eventlog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"

	"github.com/kycstate/kycstate/domain"
)

// KeySnapshot holds the ring's data keys as they were when it was taken, unwrapped,
// about 100 bytes an applicant. It implements projection.Indexer; an applicant it does
// not hold (its key made after the snapshot) is fetched once and remembered, so it never
// asks KYC_KEYS twice about one applicant. Safe for concurrent use.
type KeySnapshot struct {
	k    *Keyring
	mu   sync.Mutex
	keys map[applicantRef]snapKey
	// others holds the keys of other providers' applicants (DESIGN.md section 13), by
	// key subject, fetched when first asked: their ids need not be UUIDs.
	others map[string]snapKey
}

// applicantRef is an applicant's two UUIDs, 16 bytes each.
type applicantRef [32]byte

// snapKey is a data key in the snapshot, or the news that there is none.
type snapKey struct {
	raw   [32]byte
	state uint8 // snapKeyData, snapKeyErased, snapKeyNone
}

const (
	snapKeyData uint8 = iota
	snapKeyErased
	snapKeyNone
)

// Snapshot reads every data key and tombstone of KYC_KEYS, in stream order, up to its
// last message now. Errors: KindUnavailable when the stream stops delivering;
// KindConflict when keys.master does not unwrap a key.
func (k *Keyring) Snapshot(ctx context.Context) (*KeySnapshot, error) {
	const op = "eventlog.Keyring.Snapshot"
	last, err := lastSeq(ctx, op, k.stream)
	if err != nil {
		return nil, err
	}
	s := &KeySnapshot{k: k, keys: map[applicantRef]snapKey{}, others: map[string]snapKey{}}
	if last == 0 {
		return s, nil
	}
	type entry struct {
		ref applicantRef
		key snapKey
		ok  bool
	}
	decode := func(seq uint64, subject string, data []byte) (entry, error) {
		ref, ok := refOfKeySubject(subject)
		if !ok {
			return entry{}, nil
		}
		var m struct {
			Kind string `json:"kind"`
		}
		if json.Unmarshal(data, &m) != nil || (m.Kind != kindData && m.Kind != kindErased) {
			return entry{}, nil // a pending record or something newer: not a key
		}
		got, err := k.unwrapMsg(subject, seq, data)
		if err != nil {
			return entry{}, err
		}
		e := entry{ref: ref, ok: true, key: snapKey{state: snapKeyErased}}
		if !got.erased {
			e.key.state = snapKeyData
			copy(e.key.raw[:], got.raw)
		}
		return e, nil
	}
	err = scan(ctx, k.l, span{
		op: op, stream: k.stream, filter: "kyc.keys.app.>", from: 1, until: last,
		maxBatch: 4096, prefetch: readPrefetch,
	}, decode, func(es []entry) error {
		for _, e := range es {
			if e.ok {
				s.keys[e.ref] = e.key // the later message of a subject wins: a tombstone, a rewrapped key
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Len is the number of applicants the snapshot knows about.
func (s *KeySnapshot) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// SealedIndex is Keyring.SealedIndex answered from the snapshot.
func (s *KeySnapshot) SealedIndex(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, sealed domain.SealedExternalUserID) (domain.ExternalUserIndex, error) {
	const op = "eventlog.KeySnapshot.SealedIndex"
	p = domain.ProviderOf(string(p))
	subject, err := keySubject(p, app, id)
	if err != nil {
		return "", err
	}
	ref, allpass := refOfKeySubject(subject)
	s.mu.Lock()
	var sk snapKey
	var ok bool
	if allpass {
		sk, ok = s.keys[ref]
	} else {
		sk, ok = s.others[subject]
	}
	s.mu.Unlock()
	if !ok {
		// Made after the snapshot, or another provider's: fetched once, and remembered
		// either way.
		sk = snapKey{state: snapKeyNone}
		got, err := s.k.dataKey(ctx, subject, false)
		switch {
		case err == nil && got.erased:
			sk.state = snapKeyErased
		case err == nil:
			sk.state = snapKeyData
			copy(sk.raw[:], got.raw)
		case domain.KindOf(err) != domain.KindNotFound:
			return "", err
		}
		s.mu.Lock()
		if allpass {
			s.keys[ref] = sk
		} else {
			s.others[subject] = sk
		}
		s.mu.Unlock()
	}
	switch sk.state {
	case snapKeyErased:
		return "", domain.E(op, domain.KindNotFound, ErrErased)
	case snapKeyNone:
		return "", domain.E(op, domain.KindNotFound, ErrNoKey)
	}
	aead, err := newAEAD(sk.raw[:])
	if err != nil {
		return "", domain.E(op, domain.KindInternal, err)
	}
	ext, err := s.k.openExt(&key{aead: aead}, app, id, sealed)
	if err != nil {
		return "", domain.E(op, domain.KindInternal, err)
	}
	return s.k.Index(app, ext), nil
}

// refOfKeySubject reads kyc.keys.app.<appKey>.<applicantId>.
func refOfKeySubject(subject string) (applicantRef, bool) {
	var ref applicantRef
	rest, ok := strings.CutPrefix(subject, "kyc.keys.app.")
	if !ok {
		return ref, false
	}
	app, id, ok := strings.Cut(rest, ".")
	if !ok || !domain.IsCanonicalUUID(app) || !domain.IsCanonicalUUID(id) {
		return ref, false
	}
	if !uuidBytes(ref[:16], app) || !uuidBytes(ref[16:], id) {
		return ref, false
	}
	return ref, true
}

func uuidBytes(dst []byte, u string) bool {
	h := strings.ReplaceAll(u, "-", "")
	n, err := hex.Decode(dst, []byte(h))
	return err == nil && n == 16
}
