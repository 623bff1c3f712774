package eventlog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// A sealed event keeps nothing personal in clear and opens back to what was appended;
// everything the fold reads stays in clear.
func TestSealedEventRoundTrip(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{}), testMasterA)
	ctx := context.Background()
	orig := logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0)
	orig.Warnings = []string{"glare"}
	want := *orig
	logAppend(t, l, orig)
	if orig.V != domain.StoredVersion || orig.ExternalUserID != want.ExternalUserID || orig.Sealed != "" {
		t.Fatalf("Append changed the caller's event beyond its version: %+v", orig)
	}
	for _, secret := range []string{string(want.ExternalUserID), `"n":0`, want.Raw.Body[:40], want.Raw.Signature} {
		if bytes.Contains(orig.Stored, []byte(secret)) {
			t.Errorf("stored message holds %q in clear: %s", secret, orig.Stored)
		}
	}
	evs := readAll(t, l)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	if ev.Type != want.Type || ev.AppKey != want.AppKey || ev.ApplicantID != want.ApplicantID || ev.StepName != want.StepName ||
		!ev.EventAt.Equal(want.EventAt) || ev.Warnings[0] != "glare" || ev.SealedExternalUserID == "" || ev.Auth != domain.AuthSigned {
		t.Fatalf("clear fields: %+v", ev)
	}
	// Version 3 stores no blind index: the projection computes it (SealedIndex).
	idx := l.Keys().Index(want.AppKey, want.ExternalUserID)
	if ev.ExternalUserIndex != "" || bytes.Contains(ev.Stored, []byte(idx)) || bytes.Contains(ev.Stored, []byte(`"extIndex"`)) {
		t.Fatalf("version 3 event holds the blind index: %s", ev.Stored)
	}
	if !bytes.HasSuffix(ev.Stored[:len(ev.Stored)-macSuffixLen], []byte(`"`)) || !bytes.Contains(ev.Stored, []byte(`,"mac":"`)) {
		t.Fatalf("the MAC is not the last field: %s", ev.Stored)
	}
	full, err := DecodeEvent(ev.Seq, ev.Stored)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Keys().Open(ctx, &full); err != nil {
		t.Fatal(err)
	}
	if full.ExternalUserID != want.ExternalUserID || string(full.Payload) != string(want.Payload) || *full.Raw != *want.Raw {
		t.Fatalf("opened %+v", full)
	}
	ext, err := l.Keys().OpenExternalUserID(ctx, ev.AppKey, ev.ApplicantID, ev.SealedExternalUserID)
	if err != nil || ext != want.ExternalUserID {
		t.Fatalf("OpenExternalUserID = %q, %v", ext, err)
	}
	// A version 1 event opens to itself.
	v1 := *logEvent(logApp(0), logApplicant(1), domain.EventCreated, 1)
	v1.V = domain.StoredVersionClear
	if err := l.Keys().Open(ctx, &v1); err != nil || v1.ExternalUserID == "" {
		t.Fatalf("v1: %v", err)
	}
}

// A sealed value that was changed, or moved to another event or applicant, does not
// open: a clear error, nothing filled in.
func TestSealedValueTamperedOrMoved(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{SyncInterval: time.Minute}), testMasterA)
	ctx := context.Background()
	logAppend(t, l, logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0))
	logAppend(t, l, logEvent(logApp(0), logApplicant(1), domain.EventCreated, 1))
	logAppend(t, l, logEvent(logApp(0), logApplicant(0), domain.EventInProgress, 2))
	var evs []domain.Event
	for _, ev := range readAll(t, l) {
		full, err := DecodeEvent(ev.Seq, ev.Stored) // Read leaves Sealed out
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, full)
	}
	a0, b0, a1 := evs[0], evs[1], evs[2]

	flip := func(s string) string {
		b, _ := base64.StdEncoding.DecodeString(s)
		b[len(b)/2] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	cases := map[string]func(e *domain.Event){
		"payload flipped": func(e *domain.Event) { e.Sealed = flip(e.Sealed) },
		"ext flipped": func(e *domain.Event) {
			e.SealedExternalUserID = domain.SealedExternalUserID(flip(string(e.SealedExternalUserID)))
		},
		"payload from another event":   func(e *domain.Event) { e.Sealed = a1.Sealed },
		"payload from other applicant": func(e *domain.Event) { e.Sealed = b0.Sealed },
		"ext from other applicant":     func(e *domain.Event) { e.SealedExternalUserID = b0.SealedExternalUserID },
		"clear type changed":           func(e *domain.Event) { e.Type = domain.EventApproved },
		"not base64":                   func(e *domain.Event) { e.Sealed = "%%%" },
		"truncated":                    func(e *domain.Event) { e.Sealed = e.Sealed[:8] },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := a0
			mutate(&e)
			err := l.Keys().Open(ctx, &e)
			if domain.KindOf(err) != domain.KindInternal {
				t.Fatalf("Open = %v, want an internal error", err)
			}
			if e.ExternalUserID != "" || e.Payload != nil || e.Raw != nil {
				t.Fatalf("filled in after a failure: %+v", e)
			}
		})
	}
	if _, err := l.Keys().OpenExternalUserID(ctx, b0.AppKey, b0.ApplicantID, a0.SealedExternalUserID); domain.KindOf(err) != domain.KindInternal {
		t.Fatalf("ext of another applicant: %v", err)
	}
	if _, err := l.Keys().OpenExternalUserID(ctx, logApp(0), logApplicant(9), a0.SealedExternalUserID); domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("applicant without a key: %v", err)
	}
}

// An operator's event is sealed under the log key, not an applicant's data key: who
// erased and why are in clear nowhere in the stored message, the service opens them, and
// no data key is made for it.
func TestOperatorEventSealedUnderLogKey(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{SyncInterval: time.Minute}), testMasterA)
	ctx := context.Background()
	const payload = `{"by":"admin","reason":"retention zq-reason-1"}`
	ev := &domain.Event{Provider: "allpass", Origin: domain.OriginOperator, AppKey: logApp(0), ApplicantID: logApplicant(3),
		Type: domain.EventErased, EventAt: logBase, EventAtSource: domain.SourceReceived, ReceivedAt: logBase,
		Payload: json.RawMessage(payload)}
	logAppend(t, l, ev)
	got := readAll(t, l)[0]
	if len(got.Payload) != 0 || bytes.Contains(got.Stored, []byte("zq-reason-1")) || bytes.Contains(got.Stored, []byte("admin")) ||
		got.Auth != domain.AuthSigned || got.Type != domain.EventErased || got.Origin != domain.OriginOperator {
		t.Fatalf("operator event: %+v\n%s", got, got.Stored)
	}
	full, err := DecodeEvent(got.Seq, got.Stored)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Keys().Open(ctx, &full); err != nil || string(full.Payload) != payload {
		t.Fatalf("opened operator payload %q, %v", full.Payload, err)
	}
	moved := full
	moved.Payload, moved.ApplicantID = nil, logApplicant(4)
	if err := l.Keys().Open(ctx, &moved); domain.KindOf(err) != domain.KindInternal || moved.Payload != nil {
		t.Fatalf("operator payload moved to another applicant opened: %v", err)
	}
	if _, err := l.Keys().OpenExternalUserID(ctx, logApp(0), logApplicant(3), "x"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("a key was made for an operator's event: %v", err)
	}
}

// memKeyring is a ring whose one applicant's key sits in its cache: Open needs no NATS.
func memKeyring(tb testing.TB, app domain.AppKey, id domain.ApplicantID) *Keyring {
	tb.Helper()
	raw := bytes.Repeat([]byte{7}, 32)
	aead, err := newAEAD(raw)
	if err != nil {
		tb.Fatal(err)
	}
	k := &Keyring{index: []byte("index"), cache: newKeyCache(8, time.Hour)}
	subject, _ := appKeySubject(app, id)
	k.cache.put(subject, &key{raw: raw, aead: aead})
	return k
}

// FuzzDecodeSealedEvent: whatever bytes a version 2 message holds, decoding and opening
// it gives an error or an event, never a panic; and what opens was sealed by this key
// for these clear fields.
func FuzzDecodeSealedEvent(f *testing.F) {
	app, id := logApp(0), logApplicant(0)
	k := memKeyring(f, app, id)
	ev := logEvent(app, id, domain.EventCreated, 0)
	if err := k.Seal(context.Background(), ev); err != nil {
		f.Fatal(err)
	}
	good, err := appendStoredEvent(nil, ev)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"v":2,"appKey":"` + string(app) + `","applicantId":"` + string(id) + `","sealed":"AAAA"}`))
	f.Add([]byte(`{"v":2,"sealedExt":"","sealed":null}`))
	f.Add(bytes.Replace(good, []byte(`"type":"applicantCreated"`), []byte(`"type":"applicantApproved"`), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvent(1, data)
		if err != nil {
			return
		}
		var viaStd domain.Event
		if json.Unmarshal(data, &viaStd) != nil {
			t.Fatalf("DecodeEvent accepts what encoding/json refuses: %q", data)
		}
		if viaStd.Sealed != ev.Sealed || viaStd.SealedExternalUserID != ev.SealedExternalUserID || viaStd.ExternalUserIndex != ev.ExternalUserIndex {
			t.Fatalf("sealed fields differ from encoding/json's: %+v vs %+v", ev, viaStd)
		}
		if ev.AppKey != app || ev.ApplicantID != id {
			// Another applicant's key would be read from KYC_KEYS: the in-memory ring
			// has no stream, and what is fuzzed here is the decoding and opening.
			return
		}
		before := ev
		if err := k.Open(context.Background(), &ev); err != nil {
			if ev.ExternalUserID != before.ExternalUserID || string(ev.Payload) != string(before.Payload) {
				t.Fatalf("a failed Open changed the event")
			}
			return
		}
		if ev.V == domain.StoredVersion && ev.Sealed != "" && ev.Type != domain.EventCreated {
			t.Fatalf("a sealed payload opened under changed clear fields: %q", data)
		}
	})
}

// A group commit of many applicants' first events seals every one, each under its own
// applicant's key (the keys made concurrently before the batch is encoded).
func TestAppendBatchSealsEveryEvent(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{SyncInterval: time.Minute}), testMasterA)
	var evs []*domain.Event
	for i := range 40 {
		evs = append(evs, logEvent(logApp(0), logApplicant(i%20), domain.EventStepPassed, i))
	}
	ps := pendingOf(evs...)
	l.AppendBatch(context.Background(), ps)
	for i, p := range ps {
		if p.Err != nil || p.Seq == 0 {
			t.Fatalf("event %d: seq %d, %v", i, p.Seq, p.Err)
		}
	}
	for _, ev := range readAll(t, l) {
		full, _ := DecodeEvent(ev.Seq, ev.Stored)
		if full.V != domain.StoredVersion || full.Sealed == "" || bytes.Contains(full.Stored, []byte("user-")) {
			t.Fatalf("seq %d not sealed: %s", ev.Seq, full.Stored)
		}
		if err := l.Keys().Open(context.Background(), &full); err != nil {
			t.Fatalf("seq %d: %v", ev.Seq, err)
		}
	}
}

// TestPrepareThenAppendBatch: events prepared one by one (sealed, with their applicants'
// keys made, as ingest prepares each webhook before its batch) are stored as exactly the
// prepared bytes, open under their keys, and a batch of prepared and unprepared events
// together stores both; a refused event is refused by Prepare, before any batch.
func TestPrepareThenAppendBatch(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{SyncInterval: time.Minute}), testMasterA)
	ctx := context.Background()
	var evs []*domain.Event
	for i := range 2 * MinAtomicBatch {
		evs = append(evs, logEvent(logApp(0), logApplicant(i%7), domain.EventStepPassed, i))
	}
	ps := pendingOf(evs...)
	for i, p := range ps {
		if i%3 == 2 {
			continue // left for AppendBatch to seal
		}
		if err := l.Prepare(ctx, p); err != nil {
			t.Fatalf("prepare %d: %v", i, err)
		}
		if p.Stored == nil || bytes.Contains(p.Stored, []byte("user-")) {
			t.Fatalf("prepared %d is not sealed: %s", i, p.Stored)
		}
	}
	prepared := make([][]byte, len(ps))
	for i, p := range ps {
		prepared[i] = p.Stored
	}
	l.AppendBatch(ctx, ps)
	for i, p := range ps {
		if p.Err != nil || p.Seq == 0 {
			t.Fatalf("event %d: seq %d, %v", i, p.Seq, p.Err)
		}
		m, err := l.events.GetMsg(ctx, p.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if prepared[i] != nil && !bytes.Equal(m.Data, prepared[i]) {
			t.Fatalf("seq %d does not hold the prepared bytes", p.Seq)
		}
		full, err := DecodeEvent(p.Seq, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Keys().Open(ctx, &full); err != nil || full.ExternalUserID != evs[i].ExternalUserID {
			t.Fatalf("seq %d: opened %q, %v", p.Seq, full.ExternalUserID, err)
		}
	}
	bad := &domain.Pending{Event: logEvent(logApp(0), "not-a-uuid", domain.EventCreated, 99), MsgID: "x"}
	if err := l.Prepare(ctx, bad); domain.KindOf(err) != domain.KindInvalid || bad.Stored != nil {
		t.Fatalf("prepare of a bad applicant id: %v, stored %d bytes", err, len(bad.Stored))
	}
	// Bytes set without Prepare still meet its checks at the write.
	forged := []*domain.Pending{
		{Event: logEvent(logApp(0), "not-a-uuid", domain.EventCreated, 98), MsgID: "y", Stored: []byte(`{}`)},
		{Event: logEvent(logApp(0), logApplicant(1), domain.EventCreated, 97), Stored: []byte(`{}`)},
		{MsgID: "z", Stored: []byte(`{}`)},
	}
	l.AppendBatch(ctx, forged)
	for i, p := range forged {
		if domain.KindOf(p.Err) != domain.KindInvalid || p.Seq != 0 {
			t.Fatalf("forged pending %d: seq %d, %v", i, p.Seq, p.Err)
		}
	}
}
