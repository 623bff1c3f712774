package persona

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
	"github.com/kycstate/kycstate/internal/vectorfile"
)

// suite runs testdata/vectors.json, written by testdata/gen from Persona's documented
// algorithm without this package.
func suite() webhooktest.Suite {
	return webhooktest.Suite{
		Provider: domain.ProviderPersona,
		App: func(name, _ string, secrets [][]byte) webhooktest.Open {
			return (&App{Name: name, Secrets: secrets}).Open
		},
		Signature: webhooktest.HeaderOf(SignatureHeader), // as received, every set of it
	}
}

func loadVectors(tb testing.TB) webhooktest.Vectors { return webhooktest.Load(tb, 40) }

// testApp is the vectors' app.
func testApp(v webhooktest.Vectors) *App {
	return &App{Name: v.App.Name, Secrets: v.Secrets(vectorfile.Case{})}
}

var header = webhooktest.Header

func TestVectors(t *testing.T) { suite().Run(t, loadVectors(t)) }

func TestSignMatchesVectors(t *testing.T) {
	v := loadVectors(t)
	c := v.Case(t, "approved_kebab")
	got := Sign([]byte(v.App.Secrets[0]), []byte(c.Body), time.Unix(1772359200, 0))
	if got[SignatureHeader] != c.Headers["Persona-Signature"] {
		t.Fatalf("Sign = %v, the vector says %v", got, c.Headers)
	}
	if _, _, err := testApp(v).Open([]byte(c.Body), header(got), v.At, Options{}); err != nil {
		t.Fatalf("Open of Sign's output: %v", err)
	}
}

// TestSignatureBeforeParse: every body the vectors refuse as malformed or invalid is
// refused as unauthorized once its signature is wrong, whatever is wrong with the body.
func TestSignatureBeforeParse(t *testing.T) {
	suite().SignatureBeforeParse(t, loadVectors(t), 10, func(body []byte) []map[string]string {
		return []map[string]string{
			{SignatureHeader: "t=1772359200,v1=" + strings.Repeat("ab", 32)},
			Sign([]byte("not-this-apps-secret"), body, time.Unix(1772359200, 0)),
		}
	})
}

func TestKeepRaw(t *testing.T) {
	v := loadVectors(t)
	c := v.Case(t, "rotation_retired_then_current")
	ev, _, err := testApp(v).Open([]byte(c.Body), header(c.Headers), v.At, Options{KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Raw == nil || ev.Raw.Body != c.Body || ev.Raw.Signature != c.Headers["Persona-Signature"] {
		t.Fatalf("Raw = %+v, want the body and the header as received", ev.Raw)
	}
}

// TestReplay: a resend of one event (another t, another signature, even other bytes)
// gets the same content id; another event gets another.
func TestReplay(t *testing.T) {
	app := &App{Name: "pa", Secrets: [][]byte{[]byte("k")}}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	open := func(body string, sent int64) string {
		t.Helper()
		_, id, err := app.Open([]byte(body), header(Sign([]byte("k"), []byte(body), time.Unix(sent, 0))), at, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := `{"data":{"type":"event","id":"evt_1","attributes":{"name":"inquiry.started","payload":{"data":{"type":"inquiry","id":"inq_1"}}}}}`
	again := `{"data":{"id":"evt_1","type":"event","attributes":{"payload":{"data":{"id":"inq_1","type":"inquiry"}},"name":"inquiry.started"}}}`
	other := strings.Replace(first, "evt_1", "evt_2", 1)
	noID := `{"data":{"attributes":{"name":"inquiry.started","payload":{"data":{"type":"inquiry","id":"inq_1"}}}}}`
	if open(first, 100) != open(first, 160) || open(first, 100) != open(again, 400) {
		t.Fatal("one event, two content ids")
	}
	if open(first, 100) == open(other, 100) {
		t.Fatal("two events, one content id")
	}
	if open(noID, 1) != open(noID, 2) || open(noID, 1) == open(noID+"\n", 1) {
		t.Fatal("without data.id the content id must follow the exact bytes")
	}
}

func TestContentIDIsLengthPrefixed(t *testing.T) {
	if ContentID("ab", "c", nil) == ContentID("a", "bc", nil) {
		t.Fatal("fields run into each other")
	}
	h := sha256.New()
	for _, f := range []string{"persona", "app", "evt_1"} {
		h.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(f))})
		h.Write([]byte(f))
	}
	if got, want := ContentID("app", "evt_1", []byte("ignored")), domain.ContentID(hex.EncodeToString(h.Sum(nil))); got != want {
		t.Fatalf("ContentID = %s, want %s", got, want)
	}
}

// TestLargeBody: a body at the handler's 1 MiB limit verifies and is stored whole.
func TestLargeBody(t *testing.T) {
	app := &App{Name: "pa", Secrets: [][]byte{[]byte("k")}}
	head := `{"data":{"id":"evt_big","attributes":{"name":"inquiry.completed","payload":{"data":{"type":"inquiry","id":"inq_big","attributes":{"status":"completed"}},"included":[{"type":"document","attributes":{"blob":"`
	tail := `"}}]}}}}`
	body := head + strings.Repeat("x", 1<<20-len(head)-len(tail)) + tail
	if len(body) != 1<<20 {
		t.Fatalf("body of %d bytes", len(body))
	}
	ev, _, err := app.Open([]byte(body), header(Sign([]byte("k"), []byte(body), time.Now())), time.Now(), Options{KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Payload) != body || ev.Raw.Body != body || ev.ProviderStatus != "completed" {
		t.Fatal("the payload is not the body")
	}
}

// TestRotation: a header with two sets verifies when either matches a secret of the
// app, and each of the app's secrets verifies alone.
func TestRotation(t *testing.T) {
	body := []byte(`{"data":{"id":"evt_r","attributes":{"name":"inquiry.approved","payload":{"data":{"type":"inquiry","id":"inq_r"}}}}}`)
	app := &App{Name: "pa", Secrets: [][]byte{[]byte("new"), []byte("old")}}
	sig := func(secret string, ts int64) string {
		return Sign([]byte(secret), body, time.Unix(ts, 0))[SignatureHeader]
	}
	for _, h := range []string{
		sig("new", 10), sig("old", 10),
		sig("new", 10) + " " + sig("gone", 10),
		sig("gone", 10) + " " + sig("old", 11),
		sig("old", 10) + "  " + sig("new", 10),
	} {
		if _, _, err := app.Open(body, header(map[string]string{SignatureHeader: h}), time.Now(), Options{}); err != nil {
			t.Fatalf("%q: %v", h, err)
		}
	}
	for _, h := range []string{
		sig("gone", 10), sig("gone", 10) + " " + sig("older", 10),
		strings.Replace(sig("new", 10), "t=10", "t=11", 1),
		"t=10", "v1=" + strings.Repeat("0", 64), "", " ", ",,,", "t=,v1=",
	} {
		_, _, err := app.Open(body, header(map[string]string{SignatureHeader: h}), time.Now(), Options{})
		webhooktest.CheckRefusal(t, err, domain.KindUnauthorized, webhook.CodeBadSignature, []string{"new", "old"}, body)
	}
}

func TestValidate(t *testing.T) {
	body := []byte(`{"data":{"attributes":{"name":"inquiry.created","payload":{"data":{"type":"inquiry","id":"inq_1"}}}}}`)
	for _, a := range []*App{
		{Name: "", Secrets: [][]byte{[]byte("k")}},
		{Name: "p a", Secrets: [][]byte{[]byte("k")}},
		{Name: "pa"},
		{Name: "pa", Secrets: [][]byte{[]byte("k"), {}}},
	} {
		err := a.Validate()
		if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != webhook.CodeInvalidConfig {
			t.Errorf("Validate(%q, %d secrets) = %v", a.Name, len(a.Secrets), err)
		}
		if _, _, err := a.Open(body, header(Sign([]byte("k"), body, time.Now())), time.Now(), Options{}); domain.KindOf(err) != domain.KindInternal {
			t.Errorf("Open on an invalid app: %v, want KindInternal", err)
		}
	}
}

// TestStatusesReachTheTable: the event each inquiry status comes with, as Open stores
// it, reads the common status of section 13 (and inquiry.failed, REJECTED).
func TestStatusesReachTheTable(t *testing.T) {
	app := &App{Name: "pa", Secrets: [][]byte{[]byte("k")}}
	for name, want := range map[string]domain.Status{
		"inquiry.created": "INIT", "inquiry.started": "INCOMPLETE", "inquiry.expired": "INCOMPLETE",
		"inquiry.completed": "COMPLETED", "inquiry.failed": "REJECTED", "inquiry.marked-for-review": "IN_REVIEW",
		"inquiry.approved": "APPROVED", "inquiry.declined": "REJECTED",
		"inquiry.transitioned": "", "inquiry.some-future-event": "",
	} {
		body := []byte(`{"data":{"id":"evt_s","attributes":{"name":"` + name + `","payload":{"data":{"type":"inquiry","id":"inq_s"}}}}}`)
		ev, _, err := app.Open(body, header(Sign([]byte("k"), body, time.Now())), time.Now(), Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, got := domain.ProviderPersona.Classify(ev.Type, ev.ProviderStatus); got != want {
			t.Errorf("%s reads %q, want %q", name, got, want)
		}
	}
}

// TestSignatureIsOverTheRawBody: the body Persona signed, with its white space, is what
// verifies; the same JSON re-encoded does not.
func TestSignatureIsOverTheRawBody(t *testing.T) {
	app := &App{Name: "pa", Secrets: [][]byte{[]byte("k")}}
	body := "{ \"data\" : {\"attributes\":{\"name\":\"inquiry.created\",\"payload\":{\"data\":{\"type\":\"inquiry\",\"id\":\"inq_1\"}}}} }\n"
	ts := "1772359200"
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte(ts + "." + body))
	h := header(map[string]string{SignatureHeader: "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))})
	if _, _, err := app.Open([]byte(body), h, time.Now(), Options{}); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	compact, _ := json.Marshal(v)
	_, _, err := app.Open(compact, h, time.Now(), Options{})
	webhooktest.CheckRefusal(t, err, domain.KindUnauthorized, webhook.CodeBadSignature, nil, compact)
}
