package allpass

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass/allpasstest"
)

type vectorFile struct {
	App struct {
		AppKey    string `json:"app_key"`
		SecretKey string `json:"secret_key"`
		HMACKey   string `json:"hmac_key"`
	} `json:"app"`
	Cases []vectorCase `json:"cases"`
}

type vectorCase struct {
	Name    string            `json:"name"`
	Method  Method            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	Expect  struct {
		OK        bool   `json:"ok"`
		Plaintext string `json:"plaintext"`
		Reason    string `json:"reason"`
	} `json:"expect"`
}

func (c vectorCase) signature() string { return c.Headers["x-allpass-signature"] }

func loadVectors(tb testing.TB) vectorFile {
	tb.Helper()
	b := allpasstest.Vectors(tb)
	var vf vectorFile
	if err := json.Unmarshal(b, &vf); err != nil {
		tb.Fatalf("decoding %s: %v", allpasstest.VectorsRel, err)
	}
	if len(vf.Cases) == 0 {
		tb.Fatalf("%s holds no cases", allpasstest.VectorsRel)
	}
	return vf
}

// vectorApp is the app the vectors were made for, with the given method.
func vectorApp(tb testing.TB, vf vectorFile, m Method) *App {
	tb.Helper()
	secret, err := ParseKey("vectors", "secret_key", vf.App.SecretKey)
	if err != nil {
		tb.Fatal(err)
	}
	mac, err := ParseHMACKey("vectors", "hmac_key", vf.App.HMACKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &App{Name: "vectors", AppKey: domain.AppKey(vf.App.AppKey), Method: m,
		Keys: []Keys{{Secret: secret, HMAC: mac}}}
}

// newTestApp returns an app with fresh random keys.
func newTestApp(tb testing.TB, m Method) *App {
	tb.Helper()
	return &App{Name: "test", AppKey: "71f2c0c6-c720-423b-8df0-7763102ad57e", Method: m,
		Keys: []Keys{randomKeys(tb)}}
}

func randomKeys(tb testing.TB) Keys {
	tb.Helper()
	var k Keys
	k.HMAC = make([]byte, 32)
	if _, err := rand.Read(k.Secret[:]); err != nil {
		tb.Fatal(err)
	}
	if _, err := rand.Read(k.HMAC); err != nil {
		tb.Fatal(err)
	}
	return k
}

// mustSeal seals plaintext for app's current keys.
func mustSeal(tb testing.TB, a *App, plaintext, envTime string) ([]byte, string) {
	tb.Helper()
	body, sig, err := Seal(a.Method, a.Keys[0], []byte(plaintext), envTime, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return body, sig
}

// envelopeTimeOf reads the time field of a body independently of ParseEnvelope.
func envelopeTimeOf(tb testing.TB, body string) string {
	tb.Helper()
	var env struct{ Time string }
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		tb.Fatal(err)
	}
	return env.Time
}

// assertSafeMessage fails if err's text holds any of the secrets or values given.
func assertSafeMessage(tb testing.TB, err error, secrets ...string) {
	tb.Helper()
	msg := err.Error()
	for _, s := range secrets {
		if len(s) >= 4 && strings.Contains(msg, s) {
			tb.Errorf("error message %q reveals %q", msg, s)
		}
	}
}

func TestOpenVectors(t *testing.T) {
	// reasonKinds maps a vector's refusal reason to the kinds and codes that are consistent
	// with it (DESIGN.md section 3).
	reasonKinds := map[string][]struct {
		kind domain.ErrorKind
		code string
	}{
		"signature": {{domain.KindUnauthorized, CodeBadSignature}},
		"decrypt":   {{domain.KindUnauthorized, CodeBadSignature}},
		"envelope":  {{domain.KindInvalid, CodeMalformedEnvelope}},
		"payload":   {{domain.KindInvalid, CodeMalformedPlaintext}, {domain.KindUnprocessable, CodeInvalidPayload}},
	}
	vf := loadVectors(t)
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	seen := map[string]int{}
	for _, c := range vf.Cases {
		t.Run(c.Name, func(t *testing.T) {
			app := vectorApp(t, vf, c.Method)
			ev, msgID, err := app.Open([]byte(c.Body), c.signature(), received, Options{KeepRaw: true})
			if !c.Expect.OK {
				seen["refused:"+c.Expect.Reason]++
				want, known := reasonKinds[c.Expect.Reason]
				if !known {
					t.Fatalf("vector reason %q is not one this test knows", c.Expect.Reason)
				}
				if err == nil {
					t.Fatalf("accepted a vector that must be refused (%s)", c.Expect.Reason)
				}
				ok := false
				for _, w := range want {
					ok = ok || (domain.KindOf(err) == w.kind && domain.CodeOf(err) == w.code)
				}
				if !ok {
					t.Errorf("refused with kind %v code %s (%v); want one of %v", domain.KindOf(err), domain.CodeOf(err), err, want)
				}
				assertSafeMessage(t, err, vf.App.SecretKey, vf.App.HMACKey, c.signature())
				return
			}
			seen["ok:"+string(c.Method)]++
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(ev.Payload) != c.Expect.Plaintext {
				t.Fatalf("payload\n got %s\nwant %s", ev.Payload, c.Expect.Plaintext)
			}
			var want struct {
				Type, ID, ExternalUserID, AppKey, StepName string
				Warnings                                   []string
			}
			if err := json.Unmarshal([]byte(c.Expect.Plaintext), &want); err != nil {
				t.Fatal(err)
			}
			envTime := envelopeTimeOf(t, c.Body)
			wantAt, err := time.Parse(time.RFC3339, envTime)
			if err != nil {
				t.Fatal(err)
			}
			if len(want.Warnings) == 0 {
				want.Warnings = nil
			}
			switch {
			case ev.V != domain.StoredVersion || ev.Provider != "allpass":
				t.Errorf("v=%d provider=%q", ev.V, ev.Provider)
			case string(ev.AppKey) != want.AppKey || string(ev.ApplicantID) != want.ID:
				t.Errorf("appKey=%s applicantId=%s; want %s %s", ev.AppKey, ev.ApplicantID, want.AppKey, want.ID)
			case string(ev.Type) != want.Type || string(ev.ExternalUserID) != want.ExternalUserID || ev.StepName != want.StepName:
				t.Errorf("type=%q ext=%q step=%q; want %q %q %q", ev.Type, ev.ExternalUserID, ev.StepName, want.Type, want.ExternalUserID, want.StepName)
			case !slices.Equal(ev.Warnings, want.Warnings):
				t.Errorf("warnings %q, want %q", ev.Warnings, want.Warnings)
			case !ev.EventAt.Equal(wantAt) || ev.EventAt.Location() != time.UTC || ev.EventAtSource != domain.SourceEnvelopeTime:
				t.Errorf("eventAt %v (%s), want %v from the envelope", ev.EventAt, ev.EventAtSource, wantAt)
			case !ev.ReceivedAt.Equal(received) || ev.ReceivedAt.Location() != time.UTC:
				t.Errorf("receivedAt %v, want %v in UTC", ev.ReceivedAt, received)
			case ev.Raw == nil || ev.Raw.Body != c.Body || ev.Raw.Signature != c.signature():
				t.Errorf("raw not kept verbatim: %+v", ev.Raw)
			case msgID != string(ev.ContentID) || msgID != wantContentID(t, want.AppKey, vectorAuthenticated(t, c)):
				t.Errorf("msgID %s, cid %s: not the content id of the authenticated bytes", msgID, ev.ContentID)
			case ev.Seq != 0 || ev.Stored != nil:
				t.Errorf("Seq/Stored set before storing")
			}

			// The same webhook without KeepRaw stores no raw copy and the same id.
			ev2, msgID2, err := app.Open([]byte(c.Body), c.signature(), received, Options{})
			if err != nil || ev2.Raw != nil || msgID2 != msgID {
				t.Errorf("without KeepRaw: raw=%v msgID equal=%v err=%v", ev2.Raw, msgID2 == msgID, err)
			}

			// The same data and signature in an envelope with another time is the same
			// event (the time is not authenticated), unless the MAC covers the body,
			// time included: then it does not open at all.
			moved := withEnvelopeTime(t, c.Body, "2027-01-01T00:00:00.000Z")
			ev3, msgID3, err := app.Open(moved, c.signature(), received.Add(time.Hour), Options{})
			switch {
			case strings.Contains(c.Name, "hmac_body"):
				if domain.KindOf(err) != domain.KindUnauthorized {
					t.Errorf("body-signed webhook with another time: %v, want KindUnauthorized", err)
				}
			case err != nil:
				t.Errorf("another envelope time: %v", err)
			case msgID3 != msgID || ev3.ContentID != ev.ContentID:
				t.Errorf("another envelope time changed the content id: %s -> %s", msgID, msgID3)
			}
		})
	}
	// The vectors must exercise both methods and every reason; a shrunken file would
	// otherwise pass silently.
	for _, k := range []string{"ok:aes-256-cbc", "ok:aes-256-gcm", "refused:signature", "refused:decrypt", "refused:envelope", "refused:payload"} {
		if seen[k] == 0 {
			t.Errorf("no vector case for %s", k)
		}
	}
}

// TestOpenVectorsWrongMethod: a CBC webhook given to a GCM app (and the reverse) is
// refused as unauthorized, which is what lets the app-less route pick the right app.
func TestOpenVectorsWrongMethod(t *testing.T) {
	vf := loadVectors(t)
	for _, c := range vf.Cases {
		if !c.Expect.OK {
			continue
		}
		other := MethodGCM
		if c.Method == MethodGCM {
			other = MethodCBC
		}
		_, _, err := vectorApp(t, vf, other).Open([]byte(c.Body), c.signature(), time.Now(), Options{})
		if domain.KindOf(err) != domain.KindUnauthorized {
			t.Errorf("%s opened as %s: %v, want KindUnauthorized", c.Name, other, err)
		}
	}
}

// wantContentID computes a content id as DESIGN.md section 15 states it, apart from the
// code under test: hex SHA-256 over "allpass", the lower-case appKey and the
// authenticated bytes, each as an 8-byte big-endian length and the bytes.
func wantContentID(tb testing.TB, app string, authenticated []byte) string {
	tb.Helper()
	var in []byte
	for _, f := range [][]byte{[]byte("allpass"), []byte(strings.ToLower(app)), authenticated} {
		in = binary.BigEndian.AppendUint64(in, uint64(len(f)))
		in = append(in, f...)
	}
	sum := sha256.Sum256(in)
	return hex.EncodeToString(sum[:])
}

// vectorAuthenticated is what a vector's MAC or tag covers: the body for the body-signed
// CBC case, IV and ciphertext for GCM, the data string otherwise.
func vectorAuthenticated(tb testing.TB, c vectorCase) []byte {
	tb.Helper()
	var env struct{ Data string }
	if err := json.Unmarshal([]byte(c.Body), &env); err != nil {
		tb.Fatal(err)
	}
	switch {
	case strings.Contains(c.Name, "hmac_body"):
		return []byte(c.Body)
	case c.Method == MethodGCM:
		raw, err := hex.DecodeString(env.Data)
		if err != nil {
			tb.Fatal(err)
		}
		return raw
	}
	return []byte(env.Data)
}

// withEnvelopeTime is body with its envelope time replaced, everything else as it was.
func withEnvelopeTime(tb testing.TB, body string, envTime string) []byte {
	tb.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		tb.Fatal(err)
	}
	env["time"], _ = json.Marshal(envTime)
	out, err := json.Marshal(env)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestContentID: a webhook's id is its authenticated bytes. The same data and signature
// under another envelope time keep it; the same plaintext sealed again (a new IV) does not.
func TestContentID(t *testing.T) {
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fixedIV := func() io.Reader { return bytes.NewReader(bytes.Repeat([]byte{7}, 64)) }
	for _, m := range []Method{MethodCBC, MethodGCM} {
		t.Run(string(m), func(t *testing.T) {
			app := newTestApp(t, m)
			open := func(body []byte, sig string) string {
				t.Helper()
				ev, id, err := app.Open(body, sig, received, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if id != string(ev.ContentID) || len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
					t.Fatalf("msgID %q, cid %q: want the same 64 lower-case hex characters", id, ev.ContentID)
				}
				return id
			}
			b1, sig1, err1 := Seal(m, app.Keys[0], []byte(testPayload), "2026-03-01T10:00:00.000Z", fixedIV())
			b2, sig2, err2 := Seal(m, app.Keys[0], []byte(testPayload), "2026-03-01T10:00:07.000Z", fixedIV())
			b3, sig3, err3 := Seal(m, app.Keys[0], []byte(testPayload), "2026-03-01T10:00:00.000Z", nil)
			if err := errors.Join(err1, err2, err3); err != nil {
				t.Fatal(err)
			}
			if sig1 != sig2 {
				t.Fatal("one IV, two signatures")
			}
			id1 := open(b1, sig1)
			var env struct{ Data string }
			if err := json.Unmarshal(b1, &env); err != nil {
				t.Fatal(err)
			}
			auth := []byte(env.Data)
			if m == MethodGCM {
				auth, _ = hex.DecodeString(env.Data)
			}
			if want := wantContentID(t, testAppKey, auth); id1 != want {
				t.Errorf("content id %s, want %s", id1, want)
			}
			if id2 := open(b2, sig2); id2 != id1 {
				t.Errorf("another envelope time: content id %s, want %s", id2, id1)
			}
			if id := open(withEnvelopeTime(t, string(b1), ""), sig1); id != id1 {
				t.Errorf("an empty envelope time: content id %s, want %s", id, id1)
			}
			if id3 := open(b3, sig3); id3 == id1 {
				t.Errorf("the plaintext sealed again under a new IV kept the content id")
			}
			if m == MethodGCM {
				// Hex digits in either case decode to the bytes the tag covers: the same event.
				upper := bytes.Replace(b1, []byte(env.Data), []byte(strings.ToUpper(env.Data)), 1)
				if id := open(upper, sig1); id != id1 {
					t.Errorf("upper-case hex data: content id %s, want %s", id, id1)
				}
			}
		})
	}

	// A MAC over the whole body makes the body the authenticated bytes: the time is then
	// covered, and a changed time does not open.
	app := newTestApp(t, MethodCBC)
	body, _ := mustSeal(t, app, testPayload, "2026-03-01T10:00:00.000Z")
	sig := hex.EncodeToString(hmacOf(app.Keys[0].HMAC, body))
	ev, id, err := app.Open(body, sig, received, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id != wantContentID(t, testAppKey, body) || string(ev.ContentID) != id {
		t.Errorf("body-signed webhook: content id %s, want that of the body", id)
	}
	if _, _, err := app.Open(withEnvelopeTime(t, string(body), "2026-03-02T10:00:00.000Z"), sig, received, Options{}); domain.KindOf(err) != domain.KindUnauthorized {
		t.Errorf("body-signed webhook with another time: %v, want KindUnauthorized", err)
	}

	// Another app's id differs for the same bytes, and field boundaries are unambiguous.
	if ContentID(testAppKey, []byte("x")) == ContentID("81f2c0c6-c720-423b-8df0-7763102ad57e", []byte("x")) {
		t.Error("two apps, one content id")
	}
	if ContentID(testAppKey, []byte("x")) != ContentID(domain.AppKey(strings.ToUpper(testAppKey)), []byte("x")) {
		t.Error("the appKey's case changed the content id")
	}
	if domain.NewContentID("ab", "c", nil) == domain.NewContentID("a", "bc", nil) ||
		domain.NewContentID("a", "b", []byte("c")) == domain.NewContentID("a", "bc", nil) {
		t.Error("content id fields are ambiguous")
	}
}

func TestValidate(t *testing.T) {
	good := newTestApp(t, MethodCBC)
	if err := good.Validate(); err != nil {
		t.Fatalf("valid app: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(a *App)
	}{
		{"appKey not a UUID", func(a *App) { a.AppKey = "main" }},
		{"appKey with a dot", func(a *App) { a.AppKey = "71f2c0c6.c720-423b-8df0-7763102ad57e" }},
		{"unknown method", func(a *App) { a.Method = "aes-128-ecb" }},
		{"no keys", func(a *App) { a.Keys = nil }},
		{"CBC without HMAC key", func(a *App) { a.Keys = []Keys{a.Keys[0], {Secret: a.Keys[0].Secret}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := *newTestApp(t, MethodCBC)
			tt.mutate(&a)
			err := a.Validate()
			if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeInvalidConfig || !strings.Contains(err.Error(), `"test"`) {
				t.Fatalf("Validate = %v (code %q), want KindInvalid invalid_config naming the app", err, domain.CodeOf(err))
			}
			body, sig := mustSeal(t, good, `{}`, "")
			if _, _, err := a.Open(body, sig, time.Now(), Options{}); domain.KindOf(err) != domain.KindInternal || domain.CodeOf(err) != CodeInvalidConfig {
				t.Errorf("Open on a misconfigured app = %v (code %q), want KindInternal invalid_config", err, domain.CodeOf(err))
			}
		})
	}
	// GCM needs no HMAC key.
	gcm := newTestApp(t, MethodGCM)
	gcm.Keys[0].HMAC = nil
	if err := gcm.Validate(); err != nil {
		t.Errorf("GCM app without HMAC key: %v", err)
	}
}

// TestOpenConcurrent: one App serves every request of the handler at once; run with
// -race this shows Open shares nothing mutable.
func TestOpenConcurrent(t *testing.T) {
	vf := loadVectors(t)
	apps := map[Method]*App{MethodCBC: vectorApp(t, vf, MethodCBC), MethodGCM: vectorApp(t, vf, MethodGCM)}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				for _, c := range vf.Cases {
					ev, _, err := apps[c.Method].Open([]byte(c.Body), c.signature(), time.Now(), Options{KeepRaw: true})
					if c.Expect.OK && (err != nil || string(ev.Payload) != c.Expect.Plaintext) {
						errs <- fmt.Errorf("%s: %v", c.Name, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
