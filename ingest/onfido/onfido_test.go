package onfido

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
	testRun      = domain.ApplicantID("2f152409-d6c4-4711-8750-48517f99a8d6")
)

func testApp() *App {
	return &App{Name: "on", Secrets: [][]byte{[]byte("token-now"), []byte("token-before")}}
}

func signed(secret string, body []byte) http.Header {
	h := http.Header{}
	for k, v := range Sign([]byte(secret), body) {
		h.Set(k, v)
	}
	return h
}

func runBody(id domain.ApplicantID, status string) []byte {
	b, _ := json.Marshal(map[string]any{"payload": map[string]any{
		"resource_type": "workflow_run", "action": "workflow_run.completed",
		"object": map[string]any{"id": id, "status": status, "completed_at_iso8601": "2026-03-01T09:58:31Z"},
		"resource": map[string]any{"id": id, "applicant_id": "36a56899-d617-4988-85bf-b76640861bf5",
			"customer_user_id": "user-1"},
	}})
	return b
}

func TestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*App){
		"name with a space": func(a *App) { a.Name = "o n" },
		"name too long":     func(a *App) { a.Name = strings.Repeat("o", 65) },
		"no secret":         func(a *App) { a.Secrets = nil },
		"an empty secret":   func(a *App) { a.Secrets = [][]byte{{}} },
	} {
		a := testApp()
		mutate(a)
		err := a.Validate()
		if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != webhook.CodeInvalidConfig {
			t.Errorf("%s: %v", name, err)
		}
		body := runBody(testRun, "approved")
		if _, _, err := a.Open(body, signed("token-now", body), testReceived, Options{}); domain.KindOf(err) != domain.KindInternal {
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
	body := runBody(testRun, "approved")
	a := &App{Name: "on", Secrets: [][]byte{[]byte("t0"), []byte("t1"), []byte("t2")}}
	for _, s := range []string{"t0", "t1", "t2"} {
		if _, _, err := a.Open(body, signed(s, body), testReceived, Options{}); err != nil {
			t.Errorf("signed with %s: %v", s, err)
		}
	}
	if _, _, err := a.Open(body, signed("t3", body), testReceived, Options{}); domain.CodeOf(err) != webhook.CodeBadSignature {
		t.Errorf("signed with a secret the app lacks: %v", err)
	}
}

// TestAuthenticatedBeforeParsed: whatever the body, a request that does not authenticate
// is refused as such (401), never for its body (400 or 422).
func TestAuthenticatedBeforeParsed(t *testing.T) {
	a := testApp()
	bodies := [][]byte{nil, []byte("{"), []byte("[]"), []byte("\xfe"), []byte(`{"payload":null}`),
		[]byte(strings.Repeat("{", 100000)), runBody("a.b", "approved")}
	for _, body := range bodies {
		for name, h := range map[string]http.Header{
			"no header":                 {},
			"wrong secret":              signed("token-other", body),
			"signature of another body": signed("token-now", append(bytes.Clone(body), '\n')),
			"SHA-1 length":              {"X-Sha2-Signature": {strings.Repeat("ab", 20)}},
		} {
			_, _, err := a.Open(body, h, testReceived, Options{})
			if domain.CodeOf(err) != webhook.CodeBadSignature || domain.KindOf(err) != domain.KindUnauthorized {
				t.Errorf("%s, body %.20q: %v, want bad_signature", name, body, err)
			}
		}
	}
}

// TestReplayedDelivery: Onfido's webhooks carry no event id, so a webhook's identity is
// its bytes: a retried delivery (same bytes, any time later) has the same content id,
// another app's differs, and a change of a byte is another event.
func TestReplayedDelivery(t *testing.T) {
	a := testApp()
	body := runBody(testRun, "approved")
	ev1, id1, err := a.Open(body, signed("token-now", body), testReceived, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev2, id2, err := a.Open(bytes.Clone(body), signed("token-before", body), testReceived.Add(48*time.Hour), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || len(id1) != 64 || !ev1.EventAt.Equal(ev2.EventAt) {
		t.Fatalf("redelivery: id %s at %s, first %s at %s", id2, ev2.EventAt, id1, ev1.EventAt)
	}
	other := &App{Name: "on2", Secrets: a.Secrets}
	if _, id3, _ := other.Open(body, signed("token-now", body), testReceived, Options{}); id3 == id1 {
		t.Fatal("the same body in another app has the same content id")
	}
	changed := runBody(testRun, "declined")
	if _, id4, _ := a.Open(changed, signed("token-now", changed), testReceived, Options{}); id4 == id1 {
		t.Fatal("a different outcome has the same content id")
	}
	if string(ContentID("on", body)) != id1 {
		t.Fatal("ContentID disagrees with Open")
	}
}

// TestLargeBody: a body as large as ingest lets a caller send (1 MiB by default) opens in
// full and is kept byte for byte.
func TestLargeBody(t *testing.T) {
	a := testApp()
	var v map[string]map[string]any
	if err := json.Unmarshal(runBody(testRun, "approved"), &v); err != nil {
		t.Fatal(err)
	}
	v["payload"]["resource"].(map[string]any)["output"] = map[string]any{"pad": strings.Repeat("y", 1<<20-400)}
	body, _ := json.Marshal(v)
	if len(body) < 1<<20-200 || len(body) > 1<<20 {
		t.Fatalf("body of %d bytes", len(body))
	}
	ev, _, err := a.Open(body, signed("token-now", body), testReceived, Options{KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ev.Payload, body) || ev.Raw.Body != string(body) || ev.ProviderStatus != "approved" || ev.ExternalUserID != "user-1" {
		t.Fatalf("large body not kept: %d bytes of payload", len(ev.Payload))
	}
}

// TestApplicantIDKeptInPayload: the Onfido applicant a run belongs to is not the
// applicant here (the run is), but it stays readable in the stored payload.
func TestApplicantIDKeptInPayload(t *testing.T) {
	a := testApp()
	body := runBody(testRun, "approved")
	ev, _, err := a.Open(body, signed("token-now", body), testReceived, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ev.ApplicantID != testRun || !bytes.Contains(ev.Payload, []byte(`"applicant_id":"36a56899-d617-4988-85bf-b76640861bf5"`)) {
		t.Fatalf("applicant %s, payload %s", ev.ApplicantID, ev.Payload)
	}
	if ev.Raw != nil {
		t.Fatal("raw kept without KeepRaw")
	}
}

// TestPayloadIsACopy: the stored payload does not alias the request's buffer.
func TestPayloadIsACopy(t *testing.T) {
	a := testApp()
	body := runBody(testRun, "approved")
	ev, _, err := a.Open(body, signed("token-now", body), testReceived, Options{})
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
