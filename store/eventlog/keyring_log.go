// The log key (DESIGN.md section 15): only kycstate writes the log. Anyone who can
// publish on kyc.events.> (a neighbour on the NATS port, a client with stolen
// credentials) could otherwise store an event the projection takes for Allpass's word.
// Every event this build stores carries, as its last field, a MAC under a key that only
// holders of keys.master can unwrap; the log's readers check it and set the event's
// verdict (domain.Event.Auth), and the fold gives a failed one no effect.
//
// The key is made once, by the first process that opens the ring, on kyc.keys.log,
// wrapped under keys.master like every data key (keys rewrap covers it), with since =
// KYC_EVENTS' last sequence at that moment: an event at or below since without a MAC was
// stored before events were signed and is read as before (unsigned); any other event
// without a good MAC is unauthenticated.

package eventlog

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// logKey is the unwrapped log key, split (HKDF-SHA256, one label each) into the key that
// MACs stored events and the key that seals operator payloads, so that neither use can
// be turned against the other.
type logKey struct {
	macKey []byte
	seal   cipher.AEAD
	since  uint64
	hashes sync.Pool // of HMAC-SHA256 under macKey: a rebuild checks a million events
}

func newLogKey(raw []byte, since uint64) (*logKey, error) {
	if len(raw) != 32 {
		return nil, errors.New("log key must be 32 bytes")
	}
	macKey, err := hkdf.Key(sha256.New, raw, nil, "kycstate event mac v1", 32)
	if err != nil {
		return nil, err
	}
	sealKey, err := hkdf.Key(sha256.New, raw, nil, "kycstate operator payload v1", 32)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(sealKey)
	if err != nil {
		return nil, err
	}
	lk := &logKey{macKey: macKey, seal: aead, since: since}
	lk.hashes.New = func() any { return hmac.New(sha256.New, lk.macKey) }
	return lk, nil
}

// createLogKey makes the log key and stores it on kyc.keys.log only if the subject is
// still empty, with since = KYC_EVENTS' last sequence now: every event stored so far was
// written without a MAC, every event from now on gets one. A concurrent maker that loses
// reads back the winner's key and since.
func (k *Keyring) createLogKey(ctx context.Context) (*key, error) {
	const op = "eventlog.Keyring"
	since, err := k.l.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	m := keyMsg{V: 1, Kind: kindLog, KeyID: k.current.id, Key: wrap(k.current, raw, keyLogSubject), Since: since, At: time.Now().UTC()}
	data, _ := json.Marshal(m)
	ack, err := k.l.js.PublishMsg(ctx, &nats.Msg{Subject: keyLogSubject, Data: data},
		jetstream.WithExpectStream(KeyStream), jetstream.WithExpectLastSequencePerSubject(0))
	switch {
	case err == nil:
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, domain.E(op, domain.KindInternal, err)
		}
		got := &key{raw: raw, aead: aead, seq: ack.Sequence, since: since}
		k.cache.put(keyLogSubject, got)
		return got, nil
	case !isWrongLastSeq(err):
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("store log key: %w", err))
	}
	got, err := k.readKey(ctx, keyLogSubject)
	switch {
	case err != nil:
		return nil, err
	case got == nil:
		return nil, domain.E(op, domain.KindUnavailable, "the log key was neither created nor readable")
	}
	k.cache.put(keyLogSubject, got)
	return got, nil
}

// The MAC is the stored message's last field: `,"mac":"<base64 of 32 bytes>"}`.
const (
	macField     = `,"mac":"`
	macB64Len    = 44 // base64.StdEncoding of 32 bytes, padded
	macSuffixLen = len(macField) + macB64Len + len(`"}`)
)

// sum is HMAC-SHA256 over the subject, length-prefixed (4 bytes big-endian), and the
// stored message without its MAC: body (the bytes before the mac field) and the closing
// brace. Covering the subject makes a genuine event copied onto another applicant's
// subject fail.
func (lk *logKey) sum(subject string, body []byte) [sha256.Size]byte {
	h := lk.hashes.Get().(hash.Hash)
	h.Reset()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(subject)))
	h.Write(n[:])
	io.WriteString(h, subject)
	h.Write(body)
	h.Write([]byte{'}'})
	var out [sha256.Size]byte
	h.Sum(out[:0])
	lk.hashes.Put(h)
	return out
}

// appendMAC adds the MAC field to data, a stored message without one (ending in '}'),
// for the message to be stored on subject.
func (lk *logKey) appendMAC(subject string, data []byte) []byte {
	body := data[:len(data)-1]
	sum := lk.sum(subject, body)
	out := append(body, macField...)
	out = base64.StdEncoding.AppendEncode(out, sum[:])
	return append(out, '"', '}')
}

// verdict checks the MAC of the message stored at seq on subject. A message without a
// MAC field is unsigned at or below since (stored before events were signed) and failed
// after it.
func (lk *logKey) verdict(seq uint64, subject string, data []byte) domain.Auth {
	body, mac, ok := splitMAC(data)
	if !ok {
		if seq <= lk.since {
			return domain.AuthUnsigned
		}
		return domain.AuthFailed
	}
	sum := lk.sum(subject, body)
	if hmac.Equal(sum[:], mac[:]) {
		return domain.AuthSigned
	}
	return domain.AuthFailed
}

// splitMAC finds the MAC field at the end of data: ok is false when data does not end
// in one (exactly as appendMAC writes it). body is data before the field.
func splitMAC(data []byte) (body []byte, mac [sha256.Size]byte, ok bool) {
	n := len(data)
	if n < macSuffixLen || data[n-2] != '"' || data[n-1] != '}' {
		return nil, mac, false
	}
	start := n - macSuffixLen
	if string(data[start:start+len(macField)]) != macField {
		return nil, mac, false
	}
	var dec [sha256.Size + 1]byte // DecodedLen(44) is 33
	m, err := base64.StdEncoding.Strict().Decode(dec[:], data[start+len(macField):n-2])
	if err != nil || m != sha256.Size {
		return nil, mac, false
	}
	copy(mac[:], dec[:m])
	return data[:start], mac, true
}

// eventAddress returns the provider, app and applicant a subject
// kyc.events.<provider>.<app>.<id> names (as ProviderSubject builds it), and false for
// any other subject.
func eventAddress(subject string) (domain.Provider, domain.AppKey, domain.ApplicantID, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "kyc" || parts[1] != "events" {
		return "", "", "", false
	}
	p, app, id := domain.Provider(parts[2]), domain.AppKey(parts[3]), domain.ApplicantID(parts[4])
	if s, err := ProviderSubject(p, app, id); err != nil || s != subject {
		return "", "", "", false
	}
	return p, app, id, true
}

// decoder decodes the events the log's readers deliver (Read, Follow, Applicant), as
// decodeStored does (without ev.Raw and ev.Sealed when skipRaw), and with the key ring
// sets each event's verdict. A log opened without master keys cannot check: its events
// are domain.AuthUnchecked.
//
// An event that fails its MAC is attributed to the applicant its subject names (provider,
// app and id), not the one its body claims, and is delivered even when its body is not a stored event at all
// (with only its address, Seq and Stored): the fold records it as unauthenticated in
// that applicant's history, and a forger cannot stop every reader with one message that
// does not decode. Only a message that fails its MAC on a subject naming no applicant
// (kyc.events.x) is still an error.
func (l *EventLog) decoder(skipRaw bool) decodeFunc[domain.Event] {
	return func(seq uint64, subject string, data []byte) (domain.Event, error) {
		if l.keys == nil {
			return decodeStored(seq, data, skipRaw)
		}
		auth := l.keys.logKey.verdict(seq, subject, data)
		ev, err := decodeStored(seq, data, skipRaw)
		if auth == domain.AuthFailed {
			if p, app, id, ok := eventAddress(subject); ok {
				if err != nil {
					ev, err = domain.Event{}, nil
				}
				ev.Provider, ev.AppKey, ev.ApplicantID, ev.Seq, ev.Stored = string(p), app, id, seq, data
			}
		}
		if err != nil {
			return ev, err
		}
		ev.Auth = auth
		return ev, nil
	}
}
