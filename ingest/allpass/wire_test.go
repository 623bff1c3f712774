package allpass

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
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
			case msgID != MsgID(domain.AppKey(want.AppKey), []byte(c.Expect.Plaintext), envTime):
				t.Errorf("msgID %s is not MsgID(appKey, plaintext, envelope time)", msgID)
			case ev.Seq != 0 || ev.Stored != nil:
				t.Errorf("Seq/Stored set before storing")
			}

			// The same webhook without KeepRaw stores no raw copy and the same id.
			ev2, msgID2, err := app.Open([]byte(c.Body), c.signature(), received, Options{})
			if err != nil || ev2.Raw != nil || msgID2 != msgID {
				t.Errorf("without KeepRaw: raw=%v msgID equal=%v err=%v", ev2.Raw, msgID2 == msgID, err)
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

func TestMsgID(t *testing.T) {
	const app = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	pt := []byte(`{"type":"applicantCreated"}`)
	base := MsgID(app, pt, "2026-03-01T10:00:00.000Z")
	if len(base) != 64 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Fatalf("MsgID %q is not 64 lower-case hex characters", base)
	}
	if again := MsgID(app, bytes.Clone(pt), "2026-03-01T10:00:00.000Z"); again != base {
		t.Errorf("MsgID is not deterministic")
	}
	differ := []struct {
		name string
		id   string
	}{
		{"other app", MsgID("81f2c0c6-c720-423b-8df0-7763102ad57e", pt, "2026-03-01T10:00:00.000Z")},
		{"other plaintext", MsgID(app, []byte(`{"type":"applicantCreated" }`), "2026-03-01T10:00:00.000Z")},
		{"later time", MsgID(app, pt, "2026-03-01T10:00:01.000Z")},
		{"no time", MsgID(app, pt, "")},
	}
	for _, d := range differ {
		if d.id == base {
			t.Errorf("%s: same MsgID", d.name)
		}
	}
	// Field boundaries are unambiguous: moving bytes from one field to the next changes it.
	if MsgID("ab", []byte("c"), "") == MsgID("a", []byte("bc"), "") ||
		MsgID("a", []byte("b"), "c") == MsgID("a", []byte("bc"), "") {
		t.Errorf("MsgID fields are ambiguous")
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
