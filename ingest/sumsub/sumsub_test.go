package sumsub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
	"github.com/kycstate/kycstate/internal/vectorfile"
)

// suite runs testdata/vectors.json, written by testdata/gen from Sumsub's documented
// algorithm without this package.
func suite() webhooktest.Suite {
	return webhooktest.Suite{
		Provider: domain.ProviderSumsub,
		App: func(name, _ string, secrets [][]byte) webhooktest.Open {
			return (&App{Name: name, Secrets: secrets}).Open
		},
		// The digest, after the algorithm and a space when one came.
		Signature: func(h map[string]string) string {
			if alg := h["X-Payload-Digest-Alg"]; alg != "" {
				return alg + " " + h["X-Payload-Digest"]
			}
			return h["X-Payload-Digest"]
		},
	}
}

func loadVectors(tb testing.TB) webhooktest.Vectors { return webhooktest.Load(tb, 30) }

func TestVectors(t *testing.T) { suite().Run(t, loadVectors(t)) }

// TestSignMatchesVectors holds Sign to the independently made vectors, and Open to
// Sign's output.
func TestSignMatchesVectors(t *testing.T) {
	v := loadVectors(t)
	c := v.Case(t, "created_sha256")
	got := Sign([]byte(v.App.Secrets[0]), []byte(c.Body))
	if got[DigestHeader] != c.Headers["X-Payload-Digest"] || got[DigestAlgHeader] != c.Headers["X-Payload-Digest-Alg"] {
		t.Fatalf("Sign = %v, the vector says %v", got, c.Headers)
	}
	if _, _, err := testApp(v).Open([]byte(c.Body), header(got), v.At, Options{}); err != nil {
		t.Fatalf("Open of Sign's output: %v", err)
	}
}

// testApp is the vectors' app.
func testApp(v webhooktest.Vectors) *App {
	return &App{Name: v.App.Name, Secrets: v.Secrets(vectorfile.Case{})}
}

var header = webhooktest.Header

// TestSignatureBeforeParse: every body the vectors refuse as malformed or invalid is
// refused as unauthorized once its digest is wrong, whatever is wrong with the body.
func TestSignatureBeforeParse(t *testing.T) {
	suite().SignatureBeforeParse(t, loadVectors(t), 10, func(body []byte) []map[string]string {
		return []map[string]string{
			{DigestHeader: strings.Repeat("ab", 32), DigestAlgHeader: AlgSHA256},
			Sign([]byte("not-this-apps-secret"), body),
		}
	})
}

func TestKeepRaw(t *testing.T) {
	v := loadVectors(t)
	app := testApp(v)
	for name, want := range map[string]string{
		"created_sha256":       "HMAC_SHA256_HEX ",
		"no_alg_header_sha256": "",
	} {
		c := v.Case(t, name)
		ev, _, err := app.Open([]byte(c.Body), header(c.Headers), v.At, Options{KeepRaw: true})
		if err != nil {
			t.Fatal(err)
		}
		want += c.Headers["X-Payload-Digest"]
		if ev.Raw == nil || ev.Raw.Body != c.Body || ev.Raw.Signature != want {
			t.Fatalf("%s: Raw = %+v, want body and signature %q", name, ev.Raw, want)
		}
	}
}

// TestReplay: a resend of one delivery, and another delivery of the same event (same
// correlationId, other bytes), get the same content id; another event gets another.
func TestReplay(t *testing.T) {
	app := &App{Name: "ss", Secrets: [][]byte{[]byte("k")}}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	open := func(body string) string {
		t.Helper()
		_, id, err := app.Open([]byte(body), header(Sign([]byte("k"), []byte(body))), at, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := `{"applicantId":"a1","type":"applicantPending","correlationId":"req-1","createdAtMs":"2026-03-01 10:00:00.000"}`
	again := `{"type":"applicantPending","applicantId":"a1","correlationId":"req-1","createdAtMs":"2026-03-01 10:00:00.000","sandboxMode":false}`
	other := `{"applicantId":"a1","type":"applicantPending","correlationId":"req-2","createdAtMs":"2026-03-01 10:00:00.000"}`
	noID := `{"applicantId":"a1","type":"applicantPending"}`
	if open(first) != open(first) || open(first) != open(again) {
		t.Fatal("one event, two content ids")
	}
	if open(first) == open(other) {
		t.Fatal("two events, one content id")
	}
	if open(noID) != open(noID) || open(noID) == open(noID+" ") {
		t.Fatal("without correlationId the content id must follow the exact bytes")
	}
	other2 := &App{Name: "ss2", Secrets: app.Secrets}
	_, id2, err := other2.Open([]byte(first), header(Sign([]byte("k"), []byte(first))), at, Options{})
	if err != nil || id2 == open(first) {
		t.Fatalf("the same event for two apps must get two content ids (%v)", err)
	}
}

func TestContentIDIsLengthPrefixed(t *testing.T) {
	if ContentID("ab", "c", nil) == ContentID("a", "bc", nil) {
		t.Fatal("fields run into each other")
	}
	h := sha256.New()
	for _, f := range []string{"sumsub", "app", "evt"} {
		h.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(f))})
		h.Write([]byte(f))
	}
	if got, want := ContentID("app", "evt", []byte("ignored")), domain.ContentID(hex.EncodeToString(h.Sum(nil))); got != want {
		t.Fatalf("ContentID = %s, want %s", got, want)
	}
}

// TestLargeBody: a body at the handler's 1 MiB limit verifies and is stored whole.
func TestLargeBody(t *testing.T) {
	app := &App{Name: "ss", Secrets: [][]byte{[]byte("k")}}
	head := `{"applicantId":"a1","type":"applicantTagsChanged","tags":["`
	tail := `"],"correlationId":"req-big"}`
	body := head + strings.Repeat("x", 1<<20-len(head)-len(tail)) + tail
	if len(body) != 1<<20 {
		t.Fatalf("body of %d bytes", len(body))
	}
	ev, _, err := app.Open([]byte(body), header(Sign([]byte("k"), []byte(body))), time.Now(), Options{KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Payload) != body || ev.Raw.Body != body {
		t.Fatal("the payload is not the body")
	}
}

func TestRotatedSecrets(t *testing.T) {
	body := []byte(`{"applicantId":"a1","type":"applicantCreated"}`)
	app := &App{Name: "ss", Secrets: [][]byte{[]byte("new"), []byte("old"), []byte("older")}}
	for _, s := range []string{"new", "old", "older"} {
		if _, _, err := app.Open(body, header(Sign([]byte(s), body)), time.Now(), Options{}); err != nil {
			t.Fatalf("signed with %s: %v", s, err)
		}
	}
	_, _, err := app.Open(body, header(Sign([]byte("oldest"), body)), time.Now(), Options{})
	webhooktest.CheckRefusal(t, err, domain.KindUnauthorized, webhook.CodeBadSignature, []string{"new", "old"}, body)
	// Each algorithm with each secret.
	for _, alg := range []string{AlgSHA1, AlgSHA256, AlgSHA512} {
		m := hmac.New(digestAlgFor(t, alg), []byte("old"))
		m.Write(body)
		h := header(map[string]string{DigestHeader: hex.EncodeToString(m.Sum(nil)), DigestAlgHeader: alg})
		if _, _, err := app.Open(body, h, time.Now(), Options{}); err != nil {
			t.Fatalf("%s with the previous secret: %v", alg, err)
		}
	}
}

func digestAlgFor(tb testing.TB, name string) func() hash.Hash {
	tb.Helper()
	for _, d := range digestAlgs() {
		if d.name == name {
			return d.new
		}
	}
	tb.Fatalf("no algorithm %s", name)
	return nil
}

func TestValidate(t *testing.T) {
	for _, a := range []*App{
		{Name: "", Secrets: [][]byte{[]byte("k")}},
		{Name: "a.b", Secrets: [][]byte{[]byte("k")}},
		{Name: strings.Repeat("a", 65), Secrets: [][]byte{[]byte("k")}},
		{Name: "ss"},
		{Name: "ss", Secrets: [][]byte{[]byte("k"), nil}},
	} {
		err := a.Validate()
		if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != webhook.CodeInvalidConfig {
			t.Errorf("Validate(%q, %d secrets) = %v", a.Name, len(a.Secrets), err)
		}
		body := []byte(`{"applicantId":"a1","type":"applicantCreated"}`)
		if _, _, err := a.Open(body, header(Sign([]byte("k"), body)), time.Now(), Options{}); domain.KindOf(err) != domain.KindInternal {
			t.Errorf("Open on an invalid app: %v, want KindInternal", err)
		}
	}
	if err := (&App{Name: "ss-1_A", Secrets: [][]byte{[]byte("k")}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestUnknownTypesAreKept: a type Sumsub may add later is stored, and the status table
// calls it unknown.
func TestUnknownTypesAreKept(t *testing.T) {
	app := &App{Name: "ss", Secrets: [][]byte{[]byte("k")}}
	for _, typ := range []string{"applicantKytOnHold", "someFutureWebhook", "applicant Reviewed"} {
		body := []byte(`{"applicantId":"a1","type":"` + typ + `"}`)
		ev, _, err := app.Open(body, header(Sign([]byte("k"), body)), time.Now(), Options{})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if class, _ := domain.ProviderSumsub.Classify(ev.Type, ev.ProviderStatus); class != domain.ClassUnknown {
			t.Fatalf("%s is classified %v, want unknown", typ, class)
		}
	}
}

// TestStatusesReachTheTable: the providerStatus Open writes is the one the status table
// reads, for every status webhook of section 13.
func TestStatusesReachTheTable(t *testing.T) {
	app := &App{Name: "ss", Secrets: [][]byte{[]byte("k")}}
	for body, want := range map[string]domain.Status{
		`{"applicantId":"a","type":"applicantCreated","reviewStatus":"init"}`:                                                        "INIT",
		`{"applicantId":"a","type":"applicantPending","reviewStatus":"pending","reviewResult":null}`:                                 "IN_PROGRESS",
		`{"applicantId":"a","type":"applicantOnHold","reviewStatus":"onHold"}`:                                                       "ON_HOLD",
		`{"applicantId":"a","type":"applicantReset","reviewStatus":"init"}`:                                                          "INCOMPLETE",
		`{"applicantId":"a","type":"applicantReviewed","reviewStatus":"completed","reviewResult":{"reviewAnswer":"GREEN"}}`:          "APPROVED",
		`{"applicantId":"a","type":"applicantReviewed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"RETRY"}}`:            "INCOMPLETE",
		`{"applicantId":"a","type":"applicantReviewed","reviewResult":{"reviewRejectType":"FINAL","reviewAnswer":"RED"},"x":[1,{}]}`: "REJECTED",
		`{"applicantId":"a","type":"applicantReviewed","reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED"}}`:            "",
	} {
		ev, _, err := app.Open([]byte(body), header(Sign([]byte("k"), []byte(body))), time.Now(), Options{})
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		_, got := domain.ProviderSumsub.Classify(ev.Type, ev.ProviderStatus)
		if got != want {
			t.Errorf("%s: providerStatus %q reads %q, want %q", body, ev.ProviderStatus, got, want)
		}
	}
}
