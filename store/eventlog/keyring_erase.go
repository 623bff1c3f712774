// The erasure lifecycle: BeginErasure records the erasure as pending and writes the
// tombstone; the caller appends the erasure event; DestroyKey deletes the data key;
// EndErasure removes the pending record. Every step is idempotent and the pending record
// outlives a crash, so an interrupted erasure is found (PendingErasures) and finished.

package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Erased reports whether the applicant is erased (its subject holds a tombstone).
func (k *Keyring) Erased(ctx context.Context, app domain.AppKey, id domain.ApplicantID) (bool, error) {
	subject, err := appKeySubject(app, id)
	if err != nil {
		return false, err
	}
	dk, err := k.dataKey(ctx, subject, false)
	if errors.Is(err, ErrNoKey) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return dk.erased, nil
}

// Erasure is one erasure under way, as recorded on kyc.keys.pending.* until its data key
// is destroyed.
type Erasure struct {
	// Provider is the applicant's provider ("" for a record written before other
	// providers, which is Allpass).
	Provider    domain.Provider
	AppKey      domain.AppKey
	ApplicantID domain.ApplicantID
	By, Reason  string
	At          time.Time
	Seq         uint64 // the pending record's sequence in KYC_KEYS
}

// BeginErasure records an erasure under way, then writes the applicant's tombstone, so
// that from then on no key is made for it and its new events are stored without
// personal fields. An erasure already under way for the applicant is returned as it is.
// Errors: KindUnavailable when KYC_KEYS does not answer.
func (k *Keyring) BeginErasure(ctx context.Context, app domain.AppKey, id domain.ApplicantID, by, reason string) (Erasure, error) {
	return k.BeginProviderErasure(ctx, domain.ProviderAllpass, app, id, by, reason)
}

// BeginProviderErasure is BeginErasure for an applicant of provider p (DESIGN.md section
// 13): its tombstone goes on the provider's key subject, its record on
// kyc.keys.pending.<provider>.<app>.<id> (Allpass's stays kyc.keys.pending.<app>.<id>).
// Errors: KindInvalid for a provider, app or id that makes no subject; KindUnavailable.
func (k *Keyring) BeginProviderErasure(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, by, reason string) (Erasure, error) {
	const op = "eventlog.Keyring.BeginErasure"
	p = domain.ProviderOf(string(p))
	subject, err := keySubject(p, app, id)
	if err != nil {
		return Erasure{}, err
	}
	pend := providerPendingSubject(p, app, id)
	e, found, err := k.pending(ctx, pend)
	if err != nil {
		return Erasure{}, err
	}
	if !found {
		who, _ := json.Marshal(pendingWho{By: by, Reason: reason})
		m := keyMsg{V: 1, Kind: kindPending, App: string(app), ID: string(id), At: time.Now().UTC(),
			Sealed: seal(k.logKey.seal, who, providerPendingAAD(p, app, id))}
		if p != domain.ProviderAllpass {
			m.Provider = string(p)
		}
		data, _ := json.Marshal(m)
		ack, err := k.l.js.PublishMsg(ctx, &nats.Msg{Subject: pend, Data: data}, jetstream.WithExpectStream(KeyStream))
		if err != nil {
			return Erasure{}, domain.E(op, domain.KindUnavailable, err)
		}
		e = Erasure{Provider: p, AppKey: app, ApplicantID: id, By: by, Reason: reason, At: m.At, Seq: ack.Sequence}
	}
	if err := k.tombstone(ctx, subject, app, id); err != nil {
		return Erasure{}, err
	}
	return e, nil
}

// tombstone writes the erased mark on subject unless it is already its last message.
func (k *Keyring) tombstone(ctx context.Context, subject string, app domain.AppKey, id domain.ApplicantID) error {
	const op = "eventlog.Keyring.tombstone"
	k.cache.drop(subject)
	got, err := k.readKey(ctx, subject)
	if err != nil && domain.KindOf(err) != domain.KindConflict {
		return err
	}
	if got != nil && got.erased {
		k.cache.put(subject, got)
		return nil
	}
	data, _ := json.Marshal(keyMsg{V: 1, Kind: kindErased, App: string(app), ID: string(id), At: time.Now().UTC()})
	ack, err := k.l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, jetstream.WithExpectStream(KeyStream))
	if err != nil {
		return domain.E(op, domain.KindUnavailable, err)
	}
	k.cache.put(subject, &key{erased: true, seq: ack.Sequence})
	return nil
}

// DestroyKey securely deletes every data key message of the applicant: JetStream
// overwrites the message in its file with random bytes rather than only marking it
// deleted. It is idempotent. Errors: KindUnavailable when a deletion is not confirmed.
func (k *Keyring) DestroyKey(ctx context.Context, app domain.AppKey, id domain.ApplicantID) error {
	return k.DestroyProviderKey(ctx, domain.ProviderAllpass, app, id)
}

// DestroyProviderKey is DestroyKey for an applicant of provider p: it deletes the key
// on the provider's key subject (kyc.keys.<provider>.<app>.<id>).
func (k *Keyring) DestroyProviderKey(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID) error {
	const op = "eventlog.Keyring.DestroyKey"
	subject, err := keySubject(domain.ProviderOf(string(p)), app, id)
	if err != nil {
		return err
	}
	k.cache.drop(subject)
	defer k.cache.drop(subject)
	for seq := uint64(1); ; {
		rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
		msg, err := k.stream.GetMsg(rctx, seq, jetstream.WithGetMsgSubject(subject))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return domain.E(op, domain.KindUnavailable, fmt.Errorf("find data key: %w", err))
		}
		seq = msg.Sequence + 1
		var m keyMsg
		if json.Unmarshal(msg.Data, &m) == nil && m.Kind == kindErased {
			continue
		}
		if _, err := secureDelete(ctx, k.stream, msg.Sequence, k.l.requestTimeout); err != nil {
			return domain.E(op, domain.KindUnavailable, fmt.Errorf("secure delete of %s seq %d: %w", KeyStream, msg.Sequence, err))
		}
		k.log.Info("data key destroyed", zap.String("applicantId", string(id)), zap.Uint64("keySeq", msg.Sequence))
	}
}

// EndErasure removes the record of an erasure under way, once its key is destroyed. It
// is deleted securely (overwritten in its block file), as the data key is: a record
// written before the log key holds the reason in clear.
func (k *Keyring) EndErasure(ctx context.Context, e Erasure) error {
	const op = "eventlog.Keyring.EndErasure"
	if _, err := secureDelete(ctx, k.stream, e.Seq, k.l.requestTimeout); err != nil {
		return domain.E(op, domain.KindUnavailable, err)
	}
	return nil
}

// PendingErasures lists the erasures under way: begun, their key not yet destroyed (a
// crash, or KYC_KEYS refusing the deletion). Errors: KindUnavailable.
func (k *Keyring) PendingErasures(ctx context.Context) ([]Erasure, error) {
	const op = "eventlog.Keyring.PendingErasures"
	var out []Erasure
	for seq := uint64(1); ; {
		rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
		msg, err := k.stream.GetMsg(rctx, seq, jetstream.WithGetMsgSubject(keyPendingSubject))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, domain.E(op, domain.KindUnavailable, err)
		}
		seq = msg.Sequence + 1
		if e, ok := k.decodePending(msg); ok {
			out = append(out, e)
		}
	}
}

// pending returns the erasure under way on the pending subject, if any.
func (k *Keyring) pending(ctx context.Context, subject string) (Erasure, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
	defer cancel()
	msg, err := k.stream.GetLastMsgForSubject(rctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Erasure{}, false, nil
	}
	if err != nil {
		return Erasure{}, false, domain.E("eventlog.Keyring", domain.KindUnavailable, err)
	}
	e, ok := k.decodePending(msg)
	return e, ok, nil
}

// pendingWho is what a pending record seals: who asked for the erasure, and why.
type pendingWho struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

func pendingAAD(app domain.AppKey, id domain.ApplicantID) []byte {
	return []byte("kycstate.pending.v1\x00" + string(app) + "\x00" + string(id))
}

// providerPendingAAD binds a pending record to its applicant; Allpass's is pendingAAD,
// as records written before other providers were.
func providerPendingAAD(p domain.Provider, app domain.AppKey, id domain.ApplicantID) []byte {
	if p == domain.ProviderAllpass || p == "" {
		return pendingAAD(app, id)
	}
	return []byte("kycstate.pending.v2\x00" + string(p) + "\x00" + string(app) + "\x00" + string(id))
}

// providerPendingSubject is where an erasure under way is recorded.
func providerPendingSubject(p domain.Provider, app domain.AppKey, id domain.ApplicantID) string {
	if p == domain.ProviderAllpass || p == "" {
		return pendingSubject(app, id)
	}
	return "kyc.keys.pending." + string(p) + "." + string(app) + "." + string(id)
}

// decodePending reads a pending record. Its who and why come from Sealed, or from the
// clear fields of a record written before the log key; a sealed part that does not open
// (not sealed for this applicant under this ring's log key) leaves them empty: the
// erasure is still finished, its event says no more than that.
func (k *Keyring) decodePending(msg *jetstream.RawStreamMsg) (Erasure, bool) {
	var m keyMsg
	if json.Unmarshal(msg.Data, &m) != nil || m.Kind != kindPending {
		return Erasure{}, false
	}
	e := Erasure{Provider: domain.ProviderOf(m.Provider), AppKey: domain.AppKey(m.App), ApplicantID: domain.ApplicantID(m.ID),
		By: m.By, Reason: m.Reason, At: m.At, Seq: msg.Sequence}
	if len(m.Sealed) > 0 {
		var who pendingWho
		plain, err := open(k.logKey.seal, m.Sealed, providerPendingAAD(e.Provider, e.AppKey, e.ApplicantID))
		if err == nil && json.Unmarshal(plain, &who) == nil {
			e.By, e.Reason = who.By, who.Reason
		} else {
			k.log.Warn("the who and why of a pending erasure do not open under the log key",
				zap.String("applicantId", m.ID), zap.Uint64("keySeq", msg.Sequence))
		}
	}
	return e, true
}
