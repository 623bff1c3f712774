package veriff

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

var (
	testReceived = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	testSession  = domain.ApplicantID("f04bdb47-d3be-4b28-b028-a652feb060b5")
)

func testApp() *App {
	return &App{Name: "ve", APIKey: "api-key-1", Secrets: [][]byte{[]byte("secret-now"), []byte("secret-before")}}
}

// signed returns headers as Veriff sends them for body, signed with secret.
func signed(a *App, secret string, body []byte) http.Header {
	h := http.Header{}
	for k, v := range Sign([]byte(secret), body) {
		h.Set(k, v)
	}
	h.Set(HeaderAuthClient, a.APIKey)
	return h
}

func decisionBody(id domain.ApplicantID, status, decisionTime string) []byte {
	b, _ := json.Marshal(map[string]any{"status": "success", "verification": map[string]any{
		"id": id, "status": status, "code": 9001, "vendorData": "user-1", "decisionTime": decisionTime,
		"acceptanceTime": "2026-03-01T09:00:00Z"}})
	return b
}

func TestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*App){
		"name with a dot": func(a *App) { a.Name = "ve.1" },
		"empty name":      func(a *App) { a.Name = "" },
		"no api key":      func(a *App) { a.APIKey = "" },
		"no secret":       func(a *App) { a.Secrets = nil },
		"an empty secret": func(a *App) { a.Secrets = append(a.Secrets, nil) },
	} {
		a := testApp()
		mutate(a)
		err := a.Validate()
		if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != webhook.CodeInvalidConfig {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret-now") {
			t.Errorf("%s: message holds the secret: %v", name, err)
		}
		body := decisionBody(testSession, "approved", "2026-03-01T09:58:00Z")
		if _, _, err := a.Open(body, signed(testApp(), "secret-now", body), testReceived, Options{}); domain.KindOf(err) != domain.KindInternal {
			t.Errorf("%s: Open on an invalid app: %v, want KindInternal", name, err)
		}
	}
	if err := testApp().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestEverySecretTried: a webhook signed with any of the app's secrets opens, whichever
// place the secret holds; a webhook signed with none does not.
func TestEverySecretTried(t *testing.T) {
	body := decisionBody(testSession, "approved", "2026-03-01T09:58:00Z")
	a := testApp()
	a.Secrets = [][]byte{[]byte("s0"), []byte("s1"), []byte("s2")}
	for _, s := range []string{"s0", "s1", "s2"} {
		if _, _, err := a.Open(body, signed(a, s, body), testReceived, Options{}); err != nil {
			t.Errorf("signed with %s: %v", s, err)
		}
	}
	if _, _, err := a.Open(body, signed(a, "s3", body), testReceived, Options{}); domain.CodeOf(err) != webhook.CodeBadSignature {
		t.Errorf("signed with a secret the app lacks: %v", err)
	}
}

// TestAuthenticatedBeforeParsed: whatever the body, a request that does not authenticate
// is refused as such (401), never for its body (400 or 422): nothing of an unauthenticated
// body is read.
func TestAuthenticatedBeforeParsed(t *testing.T) {
	a := testApp()
	bodies := [][]byte{nil, []byte("{"), []byte("[]"), []byte("\xff"), []byte(`{"id":"a.b","action":"started"}`),
		[]byte(strings.Repeat("[", 100000)), decisionBody("bad id", "approved", "")}
	for _, body := range bodies {
		for name, h := range map[string]http.Header{
			"no headers":                {},
			"wrong secret":              signed(a, "secret-other", body),
			"wrong api key":             func() http.Header { h := signed(a, "secret-now", body); h.Set(HeaderAuthClient, "api-key-2"); return h }(),
			"signature of another body": signed(a, "secret-now", append(bytes.Clone(body), ' ')),
		} {
			_, _, err := a.Open(body, h, testReceived, Options{})
			if domain.CodeOf(err) != webhook.CodeBadSignature || domain.KindOf(err) != domain.KindUnauthorized {
				t.Errorf("%s, body %.20q: %v, want bad_signature", name, body, err)
			}
		}
	}
}

// TestReplayedDelivery: Veriff's webhooks carry no event id, so a webhook's identity is
// its bytes: a retried delivery (same bytes, any time later) has the same content id,
// in every app the id differs, and a change of a byte is another event.
func TestReplayedDelivery(t *testing.T) {
	a := testApp()
	body := decisionBody(testSession, "approved", "2026-03-01T09:58:00Z")
	ev1, id1, err := a.Open(body, signed(a, "secret-now", body), testReceived, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Veriff retries with the same body; this one arrives a day later, signed again (with the
	// previous secret, as during a rotation).
	ev2, id2, err := a.Open(bytes.Clone(body), signed(a, "secret-before", body), testReceived.Add(24*time.Hour), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || len(id1) != 64 {
		t.Fatalf("redelivery has content id %s, first delivery %s", id2, id1)
	}
	if !ev1.EventAt.Equal(ev2.EventAt) {
		t.Fatalf("redelivery dated %s, first %s: the provider's time must not move", ev2.EventAt, ev1.EventAt)
	}
	other := testApp()
	other.Name = "ve2"
	if _, id3, _ := other.Open(body, signed(a, "secret-now", body), testReceived, Options{}); id3 == id1 {
		t.Fatal("the same body in another app has the same content id")
	}
	changed := decisionBody(testSession, "declined", "2026-03-01T09:58:00Z")
	if _, id4, _ := a.Open(changed, signed(a, "secret-now", changed), testReceived, Options{}); id4 == id1 {
		t.Fatal("a different decision has the same content id")
	}
	if string(ContentID("ve", body)) != id1 {
		t.Fatal("ContentID disagrees with Open")
	}
}

// TestLargeBody: a body as large as ingest lets a caller send (1 MiB by default) opens in
// full and is kept byte for byte.
func TestLargeBody(t *testing.T) {
	a := testApp()
	var v map[string]any
	if err := json.Unmarshal(decisionBody(testSession, "approved", "2026-03-01T09:58:00Z"), &v); err != nil {
		t.Fatal(err)
	}
	v["technicalData"] = map[string]any{"pad": strings.Repeat("x", 1<<20-300)}
	body, _ := json.Marshal(v)
	if len(body) < 1<<20-100 || len(body) > 1<<20 {
		t.Fatalf("body of %d bytes", len(body))
	}
	ev, _, err := a.Open(body, signed(a, "secret-now", body), testReceived, Options{KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.Payload, body) || ev.Raw.Body != string(body) || ev.ProviderStatus != "approved" {
		t.Fatalf("large body not kept: %d bytes of payload", len(ev.Payload))
	}
}

func TestKeepRawOff(t *testing.T) {
	a := testApp()
	body := decisionBody(testSession, "approved", "2026-03-01T09:58:00Z")
	ev, _, err := a.Open(body, signed(a, "secret-now", body), testReceived, Options{})
	if err != nil || ev.Raw != nil {
		t.Fatalf("raw %+v, %v", ev.Raw, err)
	}
	ev, _, _ = a.Open(body, signed(a, "secret-now", body), testReceived, Options{KeepRaw: true})
	if strings.Contains(ev.Raw.Signature, a.APIKey) {
		t.Fatal("raw keeps the API key")
	}
}

// TestPayloadIsACopy: the stored payload does not alias the request's buffer, which the
// handler reuses.
func TestPayloadIsACopy(t *testing.T) {
	a := testApp()
	body := decisionBody(testSession, "approved", "2026-03-01T09:58:00Z")
	ev, _, err := a.Open(body, signed(a, "secret-now", body), testReceived, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := string(body)
	for i := range body {
		body[i] = 'x'
	}
	if string(ev.Payload) != want {
		t.Fatal("payload aliases the body")
	}
}
