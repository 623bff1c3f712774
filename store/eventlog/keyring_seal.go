// Sealing: an event's personal fields (its externalUserId, payload and raw) sealed under
// its applicant's data key, and the blind index that finds a sealed externalUserId. A
// sealed value is bound to its applicant and to the event's clear fields, so it opens
// nowhere else.

package eventlog

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kycstate/kycstate/domain"
)

// Index returns the blind index of (app, ext): HMAC-SHA256 under the ring's index key,
// 128 bits, hex. Equal inputs give equal indexes in every process of the cluster.
func (k *Keyring) Index(app domain.AppKey, ext domain.ExternalUserID) domain.ExternalUserIndex {
	h := hmac.New(sha256.New, k.index)
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write([]byte(ext))
	var sum [sha256.Size]byte
	return domain.ExternalUserIndex(hex.EncodeToString(h.Sum(sum[:0])[:16]))
}

func extAAD(app domain.AppKey, id domain.ApplicantID) []byte {
	return []byte("kycstate.ext.v2\x00" + string(app) + "\x00" + string(id))
}

// Seal turns ev into a version 3 event before it is stored: the externalUserId is
// replaced by its sealed form, payload and raw by one sealed value bound to every clear
// field of the event (so it cannot be moved to another event or applicant, nor the clear
// fields changed under it). The blind index of the externalUserId is not stored: the
// projection computes it from the sealed form (SealedIndex), so that once the data key is
// destroyed nothing in the log links the applicant to its externalUserId. The applicant's
// data key is made on its first event. For an erased applicant no key is made again: the
// event is stored without its personal fields.
//
// An operator's event (an erasure) carries no personal data of the applicant; its payload
// (who erased, when and why) is sealed under the log key instead, so that the reason
// stays readable to the service (export --open) and is in clear in no file.
//
// Errors: KindUnavailable when KYC_KEYS does not answer (the event is not stored),
// KindConflict when keys.master does not open the applicant's key.
func (k *Keyring) Seal(ctx context.Context, ev *domain.Event) error {
	const op = "eventlog.Keyring.Seal"
	ev.V = domain.StoredVersion
	ev.ExternalUserIndex, ev.SealedExternalUserID, ev.Sealed = "", "", ""
	// Refused before the applicant's key is made: a bad payload must leave nothing behind.
	if len(ev.Payload) > 0 && !json.Valid(ev.Payload) {
		return domain.E(op, domain.KindInvalid, errPayloadNotJSON)
	}
	if ev.Origin == domain.OriginOperator {
		payload := ev.Payload
		ev.ExternalUserID, ev.Raw, ev.Payload = "", nil, nil
		if len(payload) > 0 {
			ev.Sealed = base64.StdEncoding.EncodeToString(seal(k.logKey.seal, appendSealedBody(nil, payload, nil), bodyAAD(ev)))
		}
		return nil
	}
	subject, err := keySubject(domain.ProviderOf(ev.Provider), ev.AppKey, ev.ApplicantID)
	if err != nil {
		return err
	}
	dk, err := k.dataKey(ctx, subject, true)
	if err != nil {
		return err
	}
	ext, payload, raw := ev.ExternalUserID, ev.Payload, ev.Raw
	ev.ExternalUserID, ev.Payload, ev.Raw = "", nil, nil
	if dk.erased {
		return nil
	}
	if ext != "" {
		ev.SealedExternalUserID = domain.SealedExternalUserID(base64.StdEncoding.EncodeToString(
			seal(dk.aead, []byte(ext), extAAD(ev.AppKey, ev.ApplicantID))))
	}
	body := appendSealedBody(nil, payload, raw)
	ev.Sealed = base64.StdEncoding.EncodeToString(seal(dk.aead, body, bodyAAD(ev)))
	return nil
}

// bodyAAD binds the sealed payload and raw to the event's clear fields: the stored
// message as written, up to the sealed value itself.
func bodyAAD(ev *domain.Event) []byte {
	clear := *ev
	clear.Sealed = ""
	b, _ := appendStoredEvent([]byte("kycstate.body.v2\x00"), &clear)
	return b
}

// Open fills a sealed event's externalUserId, payload and raw from their sealed forms (a
// version 1 event has them already), and a version 3 operator event's payload, sealed
// under the log key. The caller checks the event's MAC first (the log's readers set
// ev.Auth): a sealed value that opens proves only that it was sealed for this applicant.
// Errors: KindNotFound wrapping ErrErased when the applicant's key is destroyed (the
// event keeps only its clear fields); KindInternal when a sealed value does not open
// under its key (tampered, or moved from another event or applicant: nothing is filled
// in); KindUnavailable when KYC_KEYS does not answer; KindConflict when keys.master does
// not open the key.
func (k *Keyring) Open(ctx context.Context, ev *domain.Event) error {
	const op = "eventlog.Keyring.Open"
	if ev.V < domain.StoredVersionSealed || (ev.SealedExternalUserID == "" && ev.Sealed == "") {
		return nil
	}
	if ev.Origin == domain.OriginOperator && ev.V >= domain.StoredVersion {
		body, err := openSealed(k.logKey.seal, ev)
		if err != nil {
			return domain.E(op, domain.KindInternal, fmt.Errorf("seq %d: operator payload: %w", ev.Seq, err))
		}
		payload, _, err := decodeSealedBody(body)
		if err != nil {
			return domain.E(op, domain.KindInternal, fmt.Errorf("seq %d: %w", ev.Seq, err))
		}
		ev.Payload = payload
		return nil
	}
	subject, err := keySubject(domain.ProviderOf(ev.Provider), ev.AppKey, ev.ApplicantID)
	if err != nil {
		return err
	}
	dk, err := k.dataKey(ctx, subject, false)
	if err != nil {
		return err
	}
	if dk.erased {
		return domain.E(op, domain.KindNotFound, ErrErased)
	}
	var ext domain.ExternalUserID
	if ev.SealedExternalUserID != "" {
		if ext, err = k.openExt(dk, ev.AppKey, ev.ApplicantID, ev.SealedExternalUserID); err != nil {
			return domain.E(op, domain.KindInternal, fmt.Errorf("seq %d: %w", ev.Seq, err))
		}
	}
	var payload json.RawMessage
	var raw *domain.Raw
	if ev.Sealed != "" {
		body, err := openSealed(dk.aead, ev)
		if err != nil {
			return domain.E(op, domain.KindInternal, fmt.Errorf(
				"seq %d: sealed payload does not open under applicant %s's key: %w", ev.Seq, ev.ApplicantID, err))
		}
		if payload, raw, err = decodeSealedBody(body); err != nil {
			return domain.E(op, domain.KindInternal, fmt.Errorf("seq %d: %w", ev.Seq, err))
		}
	}
	ev.ExternalUserID, ev.Payload, ev.Raw = ext, payload, raw
	return nil
}

// OpenExternalUserID opens a sealed externalUserId of Allpass applicant (app, id), as
// the state and the change feed carry it. Errors as Open's.
func (k *Keyring) OpenExternalUserID(ctx context.Context, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserID, error) {
	return k.OpenProviderExternalUserID(ctx, domain.ProviderAllpass, app, id, s)
}

// OpenProviderExternalUserID is OpenExternalUserID for an applicant of any provider
// (DESIGN.md section 13): each has its own data key.
func (k *Keyring) OpenProviderExternalUserID(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserID, error) {
	const op = "eventlog.Keyring.OpenExternalUserID"
	subject, err := keySubject(p, app, id)
	if err != nil {
		return "", err
	}
	dk, err := k.dataKey(ctx, subject, false)
	if err != nil {
		return "", err
	}
	if dk.erased {
		return "", domain.E(op, domain.KindNotFound, ErrErased)
	}
	ext, err := k.openExt(dk, app, id, s)
	if err != nil {
		return "", domain.E(op, domain.KindInternal, err)
	}
	return ext, nil
}

// SealedIndex returns the blind index of the sealed externalUserId of applicant (app,
// id): the projection keeps it in its lookup index and the applicant's state, computed
// from the sealed form because a version 3 event stores none (projection.Indexer). Once
// the data key is destroyed nothing can compute it again. Errors as
// OpenExternalUserID's: KindNotFound when the key is destroyed or was never made.
func (k *Keyring) SealedIndex(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserIndex, error) {
	ext, err := k.OpenProviderExternalUserID(ctx, domain.ProviderOf(string(p)), app, id, s)
	if err != nil {
		return "", err
	}
	return k.Index(app, ext), nil
}

func (k *Keyring) openExt(dk *key, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserID, error) {
	ct, err := base64.StdEncoding.DecodeString(string(s))
	if err != nil {
		return "", errors.New("sealed externalUserId is not base64")
	}
	plain, err := open(dk.aead, ct, extAAD(app, id))
	if err != nil {
		return "", fmt.Errorf("sealed externalUserId does not open under applicant %s's key: tampered, or moved from another applicant", id)
	}
	return domain.ExternalUserID(plain), nil
}

// openSealed opens ev.Sealed under a, bound to ev's clear fields (bodyAAD).
func openSealed(a cipher.AEAD, ev *domain.Event) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(ev.Sealed)
	if err != nil {
		return nil, errors.New("sealed value is not base64")
	}
	body, err := open(a, ct, bodyAAD(ev))
	if err != nil {
		return nil, errors.New("does not open: tampered, or moved from another event")
	}
	return body, nil
}

// appendSealedBody encodes what Sealed holds: {"payload":...,"raw":{...}}, the payload
// verbatim (see appendStoredEvent).
func appendSealedBody(b []byte, payload json.RawMessage, raw *domain.Raw) []byte {
	b = append(b, '{')
	if len(payload) > 0 {
		b = append(b, `"payload":`...)
		b = append(b, payload...)
	}
	if raw != nil {
		if len(payload) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"raw":{"body":`...)
		b = appendJSONString(b, raw.Body)
		if raw.Signature != "" {
			b = appendField(b, "signature", raw.Signature)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func decodeSealedBody(b []byte) (json.RawMessage, *domain.Raw, error) {
	var v struct {
		Payload json.RawMessage `json:"payload"`
		Raw     *domain.Raw     `json:"raw"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, nil, errors.New("sealed payload is not the sealed form")
	}
	return v.Payload, v.Raw, nil
}
