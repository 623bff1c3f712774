// Erasure that survives every copy (DESIGN.md section 14). A copy of KYC_KEYS made by
// anything but this ring (a JetStream mirror on a standby, a backup restored) holds what
// the copy holds: secure deletes on the origin do not reach a mirror, and a backup taken
// before an erasure still holds the key. So a node checks its own KYC_KEYS before it
// serves: every applicant marked erased (its tombstone) whose data key is still there has
// the key destroyed.
//
// The index is KYC_KEYS itself, one ordered read of it, not the event log: every
// erasure writes its tombstone before its applicantErased is appended (erase package),
// so the tombstones are a superset of the log's erasures, and the ring has one message
// per applicant where the log has many events. The check costs the read plus one
// lookup per tombstone; a tombstone that is already its subject's first message has
// nothing left before it.

package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// ErasedKey is an applicant that KYC_KEYS marks erased.
type ErasedKey struct {
	AppKey      domain.AppKey
	ApplicantID domain.ApplicantID
	Seq         uint64    // the tombstone's sequence in KYC_KEYS
	At          time.Time // when the tombstone was written
	// Pending: the erasure's record of work under way is still there (its key may not
	// be destroyed yet, or its applicantErased not appended yet).
	Pending bool
}

// ShredReport says what ShredErased found and did.
type ShredReport struct {
	Keys      int // KYC_KEYS messages read
	Erased    int // applicants marked erased
	Destroyed int // data key messages destroyed now
	// Left: erased applicants whose erasure is under way on this ring (not a mirror);
	// the erase package finishes them, in its order (append, then destroy).
	Left int
	Took time.Duration
}

// keyScanEntry is what the ordered read keeps of one KYC_KEYS message: tombstones and
// pending records only; every other message is skipped without decoding.
type keyScanEntry struct {
	kind string
	app  domain.AppKey
	id   domain.ApplicantID
	at   time.Time
	seq  uint64
}

var (
	markErased  = []byte(`"kind":"` + kindErased + `"`)
	markPending = []byte(`"kind":"` + kindPending + `"`)
)

func decodeKeyScan(seq uint64, data []byte) (keyScanEntry, error) {
	if !bytes.Contains(data, markErased) && !bytes.Contains(data, markPending) {
		return keyScanEntry{seq: seq}, nil
	}
	var m keyMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return keyScanEntry{seq: seq}, nil // not a record of ours; the ring's reads report it
	}
	if m.Kind != kindErased && m.Kind != kindPending {
		return keyScanEntry{seq: seq}, nil
	}
	return keyScanEntry{kind: m.Kind, app: domain.AppKey(m.App), id: domain.ApplicantID(m.ID), at: m.At, seq: seq}, nil
}

// ErasedApplicants lists every applicant KYC_KEYS marks erased, in tombstone order, by
// one ordered read of KYC_KEYS up to its last sequence at the call. It also returns how
// many messages it read. Errors: KindUnavailable.
func (k *Keyring) ErasedApplicants(ctx context.Context) ([]ErasedKey, int, error) {
	const op = "eventlog.Keyring.ErasedApplicants"
	last, err := lastSeq(ctx, op, k.stream)
	if err != nil || last == 0 {
		return nil, 0, err
	}
	type ref struct {
		app domain.AppKey
		id  domain.ApplicantID
	}
	var out []ErasedKey
	seen := map[ref]int{}
	pending := map[ref]bool{}
	read := 0
	err = scan(ctx, k.l, span{op: op, stream: k.stream, from: 1, until: last, maxBatch: 1024, prefetch: readPrefetch},
		bySeq(decodeKeyScan), func(es []keyScanEntry) error {
			read += len(es)
			for _, e := range es {
				r := ref{e.app, e.id}
				switch e.kind {
				case kindErased:
					if _, dup := seen[r]; !dup {
						seen[r] = len(out)
						out = append(out, ErasedKey{AppKey: e.app, ApplicantID: e.id, Seq: e.seq, At: e.at})
					}
				case kindPending:
					pending[r] = true
				}
			}
			return nil
		})
	if err != nil {
		return nil, read, err
	}
	for r := range pending {
		if i, ok := seen[r]; ok {
			out[i].Pending = true
		}
	}
	return out, read, nil
}

// Mirror reports whether this ring's KYC_KEYS is a mirror of another server's (a
// standby): it is written only by the mirror, and erasures are the origin's to make.
func (k *Keyring) Mirror() bool {
	info := k.stream.CachedInfo()
	return info != nil && info.Config.Mirror != nil
}

// ShredErased destroys every data key this KYC_KEYS still holds for an applicant it marks
// erased, so that a restored backup or a standby's mirror never opens an erased
// applicant's personal data again. It is idempotent, and cheap when there is nothing to
// do: one ordered read of KYC_KEYS and one lookup per erased applicant.
//
// On the ring of record (not a mirror) an erasure still under way is left to the erase
// package, which destroys the key only after applicantErased is in the log. On a mirror
// the key is a copy of one the origin is destroying: it is destroyed at once, and the
// mirrored record of the erasure under way (which holds its reason) goes too once the
// mirrored log holds the applicantErased it was waiting for.
// Errors: KindUnavailable.
func (k *Keyring) ShredErased(ctx context.Context) (ShredReport, error) {
	start := time.Now()
	erased, read, err := k.ErasedApplicants(ctx)
	rep := ShredReport{Keys: read, Erased: len(erased)}
	defer func() { rep.Took = time.Since(start) }()
	if err != nil {
		return rep, err
	}
	mirror := k.Mirror()
	for _, e := range erased {
		if e.Pending && !mirror {
			rep.Left++
			continue
		}
		destroyed, err := k.destroyBefore(ctx, e)
		if err != nil {
			return rep, err
		}
		if destroyed {
			rep.Destroyed++
		}
		if e.Pending {
			done, err := k.l.erasedInLog(ctx, e.AppKey, e.ApplicantID)
			if err != nil {
				return rep, err
			}
			if done {
				if err := k.dropPending(ctx, e.AppKey, e.ApplicantID); err != nil {
					return rep, err
				}
			}
		}
	}
	if rep.Destroyed > 0 {
		k.log.Warn("data keys of erased applicants found and destroyed", zap.Int("destroyed", rep.Destroyed),
			zap.Int("erased", rep.Erased), zap.Bool("mirror", mirror))
	}
	return rep, nil
}

// ShredApplicant destroys the applicant's data key in this KYC_KEYS: a node calls it as
// it folds the applicant's applicantErased, before the fold, so a copy of the log never
// shows an erasure whose key it still holds. On a mirror it first needs the tombstone:
// the origin writes it before it appends applicantErased, so a mirrored KYC_KEYS without
// it is behind, and may not have received the key yet either; KindUnavailable then, and
// the caller retries. There it also removes the mirrored record of the erasure under way,
// which the origin's deletion does not reach. Idempotent. Errors: KindUnavailable.
func (k *Keyring) ShredApplicant(ctx context.Context, app domain.AppKey, id domain.ApplicantID) error {
	const op = "eventlog.Keyring.ShredApplicant"
	subject, err := appKeySubject(app, id)
	if err != nil {
		return nil // not an applicant any ring holds a key for
	}
	if !k.Mirror() {
		return k.DestroyKey(ctx, app, id)
	}
	k.cache.drop(subject)
	got, err := k.readKey(ctx, subject)
	if err != nil && domain.KindOf(err) != domain.KindConflict {
		return err
	}
	if got == nil || !got.erased {
		return domain.E(op, domain.KindUnavailable, fmt.Sprintf(
			"the mirrored %s has no tombstone for applicant %s yet: it is behind the mirrored log", KeyStream, id))
	}
	if err := k.DestroyKey(ctx, app, id); err != nil {
		return err
	}
	return k.dropPending(ctx, app, id)
}

// destroyBefore destroys the data key on e's subject, if any is left, and reports
// whether it did. The lookup of the subject's first message is all it costs when the
// tombstone is that message.
func (k *Keyring) destroyBefore(ctx context.Context, e ErasedKey) (bool, error) {
	const op = "eventlog.Keyring.ShredErased"
	subject, err := appKeySubject(e.AppKey, e.ApplicantID)
	if err != nil {
		return false, nil // a tombstone no ring wrote; nothing of ours to destroy
	}
	rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
	first, err := k.stream.GetMsg(rctx, 1, jetstream.WithGetMsgSubject(subject))
	cancel()
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, domain.E(op, domain.KindUnavailable, fmt.Errorf("find data key: %w", err))
	}
	if first.Sequence >= e.Seq {
		return false, nil
	}
	if err := k.DestroyKey(ctx, e.AppKey, e.ApplicantID); err != nil {
		return false, err
	}
	k.log.Info("data key of an erased applicant destroyed", zap.String("applicantId", string(e.ApplicantID)))
	return true, nil
}

// dropPending securely deletes a mirror's copy of the applicant's erasure record: the
// origin removes its own once the erasure is done, and that removal is not mirrored.
func (k *Keyring) dropPending(ctx context.Context, app domain.AppKey, id domain.ApplicantID) error {
	const op = "eventlog.Keyring.dropPending"
	subject := pendingSubject(app, id)
	for seq := uint64(1); ; {
		rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
		msg, err := k.stream.GetMsg(rctx, seq, jetstream.WithGetMsgSubject(subject))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return domain.E(op, domain.KindUnavailable, err)
		}
		seq = msg.Sequence + 1
		if _, err := secureDelete(ctx, k.stream, msg.Sequence, k.l.requestTimeout); err != nil {
			return domain.E(op, domain.KindUnavailable, err)
		}
	}
}

// erasedInLog reports whether the log holds an applicantErased for the applicant that
// kycstate wrote: one whose MAC fails is something else's, and proves no erasure.
func (l *EventLog) erasedInLog(ctx context.Context, app domain.AppKey, id domain.ApplicantID) (bool, error) {
	evs, err := l.Applicant(ctx, app, id)
	if err != nil {
		return false, err
	}
	for _, ev := range evs {
		if ev.Type == domain.EventErased && ev.Origin == domain.OriginOperator && ev.Auth != domain.AuthFailed {
			return true, nil
		}
	}
	return false, nil
}
