package allpass

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
)

// The fuzz targets assert no panic, a known kind for every refusal, and that whatever is
// accepted round-trips. Seeds come from the shared vectors; run one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s ./ingest/allpass

const fuzzEnvTime = "2026-03-01T10:00:00.000Z"

func FuzzEnvelope(f *testing.F) {
	for _, c := range loadVectors(f).Cases {
		f.Add([]byte(c.Body))
	}
	f.Add([]byte(`{"data":"ab","time":null,"x":[{"y":1}]}`))
	f.Add([]byte(`{"data":"ab"} {}`))
	f.Add([]byte(` { "a" : [ 1 , "\\\"]" , { } ] , "b\u0041" : -1.5e3 , "c":"x" } `))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeObject(t, body)
		env, err := ParseEnvelope(body)
		if err != nil {
			if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeMalformedEnvelope {
				t.Fatalf("refusal of kind %v code %q: %v", domain.KindOf(err), domain.CodeOf(err), err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("refusal message of %d bytes may echo the body", len(err.Error()))
			}
			return
		}
		if env.Data == "" || !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("accepted %q as %+v", body, env)
		}
		again, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		env2, err := ParseEnvelope(again)
		if err != nil || env2 != env {
			t.Fatalf("re-encoded envelope %s parses to %+v, %v; want %+v", again, env2, err, env)
		}
	})
}

// checkDecodeObject compares decodeObject, whose splitter is hand-written, with
// encoding/json on the inputs both should take: valid UTF-8 within the depth limit.
func checkDecodeObject(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) || !depthAtMost(b, envelopeMaxDepth) {
		return
	}
	got, err := decodeObject(b, envelopeMaxDepth, nil)
	var want map[string]json.RawMessage
	werr := json.Unmarshal(b, &want)
	if werr == nil && want == nil { // "null" decodes into a nil map without error
		werr = errNotObject
	}
	if (err == nil) != (werr == nil) {
		t.Fatalf("decodeObject err %v, encoding/json err %v", err, werr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeObject split\n%q\nencoding/json\n%q", got, want)
	}
}

// FuzzOpen drives the decryption path two ways. First, arbitrary data signed with the
// app's real HMAC key (in the form mode picks), so that decoding, IV and padding checks
// see hostile ciphertexts after a MAC that matches; with mode&4, a GCM app gets arbitrary
// data and a tag from plaintext. Second, Seal(plaintext) must open for both methods to
// exactly plaintext, or be refused as a payload, never as a signature.
func FuzzOpen(f *testing.F) {
	vf := loadVectors(f)
	for _, c := range vf.Cases {
		var env struct{ Data string }
		_ = json.Unmarshal([]byte(c.Body), &env)
		f.Add(env.Data, uint8(len(c.Name)), []byte(c.Expect.Plaintext))
	}
	f.Add("00", uint8(4), []byte(testPayload))
	cbc, gcm := vectorApp(f, vf, MethodCBC), vectorApp(f, vf, MethodGCM)
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	f.Fuzz(func(t *testing.T, data string, mode uint8, plaintext []byte) {
		// Arbitrary data behind a valid MAC (CBC) or an arbitrary tag (GCM).
		if data != "" && utf8.ValidString(data) {
			body := envelopeForFuzz(t, data)
			app, sig := cbc, ""
			if mode&4 != 0 {
				app, sig = gcm, hex.EncodeToString(plaintext)
			} else {
				signed := []byte(data)
				if mode&1 != 0 {
					signed = body
				}
				mac := hmacOf(cbc.Keys[0].HMAC, signed)
				sig = hex.EncodeToString(mac)
				if mode&2 != 0 {
					sig = base64.StdEncoding.EncodeToString(mac)
				}
			}
			ev, msgID, err := app.Open(body, sig, received, Options{KeepRaw: true})
			checkOpen(t, app, opened{body, sig, mode&5 == 1}, ev, msgID, err, nil)
		}

		// Seal, then Open.
		for _, app := range []*App{cbc, gcm} {
			body, sig, err := Seal(app.Method, app.Keys[0], plaintext, fuzzEnvTime, nil)
			if err != nil {
				t.Fatal(err)
			}
			ev, msgID, err := app.Open(body, sig, received, Options{KeepRaw: true})
			if domain.KindOf(err) == domain.KindUnauthorized {
				t.Fatalf("%s: a sealed webhook failed authentication: %v", app.Method, err)
			}
			checkOpen(t, app, opened{body, sig, false}, ev, msgID, err, plaintext)
		}
	})
}

func envelopeForFuzz(t *testing.T, data string) []byte {
	b, err := json.Marshal(Envelope{Status: true, StatusCode: 200, Data: data, Time: fuzzEnvTime})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// opened is what was given to Open: the body, the signature, and whether the signature
// is a MAC over the whole body (time included) rather than over data or the ciphertext.
type opened struct {
	body       []byte
	sig        string
	bodySigned bool
}

// checkOpen checks one Open result: refusals have a known kind and a short message;
// an accepted webhook's id is its content id, the same under another envelope time
// (refused instead when the MAC covers the body), and its payload (plaintext, when
// known) sealed again opens to the same event under a new content id.
func checkOpen(t *testing.T, app *App, in opened, ev domain.Event, msgID string, err error, plaintext []byte) {
	t.Helper()
	if err != nil {
		switch domain.KindOf(err) {
		case domain.KindUnauthorized, domain.KindInvalid, domain.KindUnprocessable:
		default:
			t.Fatalf("refusal of kind %v: %v", domain.KindOf(err), err)
		}
		if len(err.Error()) > 200 {
			t.Fatalf("refusal message of %d bytes may echo input", len(err.Error()))
		}
		return
	}
	if plaintext != nil && string(ev.Payload) != string(plaintext) {
		t.Fatalf("payload %q, sealed %q", ev.Payload, plaintext)
	}
	if msgID != string(ev.ContentID) || len(msgID) != 64 {
		t.Fatalf("msgID %q is not the content id %q", msgID, ev.ContentID)
	}
	for _, other := range []string{"2031-07-09T01:02:03.000Z", ""} {
		moved := withEnvelopeTime(t, string(in.body), other)
		ev3, msgID3, err := app.Open(moved, in.sig, ev.ReceivedAt.Add(time.Hour), Options{})
		switch {
		case in.bodySigned:
			if err == nil {
				t.Fatalf("body-signed webhook opened with envelope time %q", other)
			}
		case err != nil:
			t.Fatalf("envelope time %q refused what time %q opened: %v", other, fuzzEnvTime, err)
		case msgID3 != msgID || ev3.ContentID != ev.ContentID:
			t.Fatalf("envelope time %q changed the content id", other)
		}
	}
	body, sig, err := Seal(app.Method, app.Keys[0], ev.Payload, fuzzEnvTime, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev2, msgID2, err := app.Open(body, sig, ev.ReceivedAt, Options{})
	if err != nil {
		t.Fatalf("accepted payload, sealed again, refused: %v", err)
	}
	if msgID2 == msgID || ev2.ContentID == ev.ContentID {
		t.Fatalf("the payload sealed again under a new IV kept the content id")
	}
	ev.Raw, ev.ContentID, ev2.ContentID = nil, "", ""
	if !reflect.DeepEqual(ev, ev2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", ev, ev2)
	}
}

func FuzzPayload(f *testing.F) {
	for _, c := range loadVectors(f).Cases {
		if c.Expect.Plaintext != "" {
			f.Add([]byte(c.Expect.Plaintext), fuzzEnvTime)
		}
	}
	f.Add([]byte(payloadWith(map[string]string{"updatedAt": `1767225600123`, "stepName": `"SELFIE"`})), "")
	f.Add([]byte(payloadWith(map[string]string{"createdAt": `"2026-01-01 05:06:07"`, "x": `[[{}]]`})), "soon")
	f.Add([]byte(payloadWith(map[string]string{"id": `"ea0562d3-00f9-4fce-88c3-6bbae056eed*"`})), fuzzEnvTime)
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	f.Fuzz(func(t *testing.T, plaintext []byte, envTime string) {
		ev, err := parsePayload(testAppKey, plaintext, envTime, received)
		if err != nil {
			switch {
			case domain.KindOf(err) == domain.KindInvalid && domain.CodeOf(err) == CodeMalformedPlaintext:
			case domain.KindOf(err) == domain.KindUnprocessable && domain.CodeOf(err) == CodeInvalidPayload:
			default:
				t.Fatalf("refusal of kind %v code %q: %v", domain.KindOf(err), domain.CodeOf(err), err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("refusal message of %d bytes may echo the plaintext", len(err.Error()))
			}
			return
		}
		// Only validated, lower-case UUIDs can reach a subject.
		for _, id := range []string{string(ev.AppKey), string(ev.ApplicantID)} {
			if u, ok := domain.ParseUUID(id); !ok || u != id || strings.ContainsAny(id, ".*> \x00") {
				t.Fatalf("accepted id %q", id)
			}
		}
		if ev.AppKey != testAppKey {
			t.Fatalf("accepted appKey %q", ev.AppKey)
		}
		if ev.Type == "" || len(ev.Type) > maxTypeLen || strings.ContainsFunc(string(ev.Type), unicode.IsControl) {
			t.Fatalf("accepted type %q", ev.Type)
		}
		if !utf8.Valid(plaintext) || !json.Valid(plaintext) || string(ev.Payload) != string(plaintext) {
			t.Fatalf("payload not the valid plaintext verbatim")
		}
		if ev.EventAt.Location() != time.UTC || ev.ReceivedAt != received {
			t.Fatalf("times %v %v", ev.EventAt, ev.ReceivedAt)
		}
		// Re-validating the stored payload gives the same event.
		ev2, err := parsePayload(testAppKey, ev.Payload, envTime, received)
		if err != nil || !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("re-validation differs: %v\n%+v\n%+v", err, ev, ev2)
		}
		// The stored form marshals and reads back to the same fields.
		stored, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("event does not marshal: %v", err)
		}
		var back domain.Event
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatalf("stored event does not unmarshal: %v", err)
		}
		if !back.EventAt.Equal(ev.EventAt) || back.ApplicantID != ev.ApplicantID || back.Type != ev.Type ||
			back.ExternalUserID != ev.ExternalUserID || back.StepName != ev.StepName || !reflect.DeepEqual(back.Warnings, ev.Warnings) {
			t.Fatalf("stored event reads back differently:\n%+v\n%+v", back, ev)
		}
	})
}
