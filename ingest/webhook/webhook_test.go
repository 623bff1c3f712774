package webhook

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// hmacHex is the reference: crypto/hmac over the whole message at once.
func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSumWritesThePartsInOrder(t *testing.T) {
	if got, want := SumHex(sha256.New, []byte("k"), []byte("17"), []byte("."), []byte(`{"a":1}`)), hmacHex("k", `17.{"a":1}`); got != want {
		t.Fatalf("SumHex of parts = %s, want %s", got, want)
	}
	if SumHex(sha256.New, []byte("k"), []byte("ab"), []byte("c")) == SumHex(sha256.New, []byte("k2"), []byte("abc")) {
		t.Fatal("the secret does not count")
	}
}

// TestVerifyHexTriesEverySecret: a signature made with any of the secrets verifies,
// whichever place the secret holds, in either case of hex; anything else does not.
func TestVerifyHexTriesEverySecret(t *testing.T) {
	secrets := [][]byte{[]byte("now"), []byte("before"), []byte("long ago")}
	body := []byte(`{"id":"a1"}`)
	for _, s := range []string{"now", "before", "long ago"} {
		sig := hmacHex(s, string(body))
		if !VerifyHex(sha256.New, secrets, sig, body) || !VerifyHex(sha256.New, secrets, strings.ToUpper(sig), body) {
			t.Errorf("signed with %q: refused", s)
		}
	}
	good := hmacHex("now", string(body))
	for name, sig := range map[string]string{
		"another secret":    hmacHex("never", string(body)),
		"another body":      hmacHex("now", string(body)+" "),
		"empty":             "",
		"not hex":           strings.Repeat("zz", 32),
		"one digit short":   good[:63],
		"one byte short":    good[:62],
		"one byte too many": good + "00",
		"SHA-1 length":      good[:40],
		"huge":              strings.Repeat("0", 1<<20),
	} {
		if VerifyHex(sha256.New, secrets, sig, body) {
			t.Errorf("%s: verified", name)
		}
	}
	if VerifyHex(sha256.New, nil, good, body) {
		t.Error("verified without a secret")
	}
	m := hmac.New(sha1.New, []byte("before"))
	m.Write(body)
	if !VerifyHex(sha1.New, secrets, hex.EncodeToString(m.Sum(nil)), body) {
		t.Error("SHA-1: refused")
	}
}

// TestVerifyAnySignature: one matching signature among several verifies, and the message
// is the concatenation of its parts.
func TestVerifyAnySignature(t *testing.T) {
	secrets := [][]byte{[]byte("a"), []byte("b")}
	good, _ := hex.DecodeString(hmacHex("b", "1.x"))
	bad, _ := hex.DecodeString(hmacHex("c", "1.x"))
	if !Verify(sha256.New, secrets, [][]byte{bad, good}, []byte("1"), []byte("."), []byte("x")) {
		t.Fatal("the second signature matches the second secret: refused")
	}
	if Verify(sha256.New, secrets, [][]byte{bad}, []byte("1.x")) || Verify(sha256.New, secrets, nil, []byte("1.x")) {
		t.Fatal("verified without a matching signature")
	}
}

func TestCheckApp(t *testing.T) {
	for name, c := range map[string]struct {
		app     string
		secrets [][]byte
	}{
		"empty name":      {"", [][]byte{[]byte("s3cr3t")}},
		"name with a dot": {"a.b", [][]byte{[]byte("s3cr3t")}},
		"65 characters":   {strings.Repeat("a", 65), [][]byte{[]byte("s3cr3t")}},
		"no secret":       {"ok", nil},
		"an empty secret": {"ok", [][]byte{[]byte("s3cr3t"), {}}},
	} {
		err := CheckApp("test", c.app, c.secrets)
		if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeInvalidConfig {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: the message holds the secret: %v", name, err)
		}
	}
	if err := CheckApp("test", "app-1_A", [][]byte{[]byte("s3cr3t")}); err != nil {
		t.Fatal(err)
	}
}

// TestObjectReaders holds each reader to its answer and to the refusal it words: the
// code, the kind, and the member's path in the message.
func TestObjectReaders(t *testing.T) {
	body := []byte(`{"id":"a1","bad":"a.b","n":5,"null":null,"name":"started","ctl":"a\u0001b",
		"long":"` + strings.Repeat("x", MaxName+1) + `","at":"2026-03-01T09:58:31.5+01:00","old":"1969-12-31T23:59:59Z",
		"obj":{"k":"v","k2":"w","deep":{"x":1}},"arr":[1],"twice":{"k":1,"k":2}}`)
	top, err := ReadObject("test.Open", "body", body, 8, "id")
	if err != nil {
		t.Fatal(err)
	}
	invalid := func(want string, err error) {
		t.Helper()
		if domain.KindOf(err) != domain.KindUnprocessable || domain.CodeOf(err) != CodeInvalidPayload {
			t.Fatalf("%v: want an invalid_payload refusal", err)
		}
		if msg := err.(*domain.Error).Message; msg != want {
			t.Fatalf("message %q, want %q", msg, want)
		}
	}
	if id, err := top.ID("id"); err != nil || id != "a1" {
		t.Fatalf("ID = %q, %v", id, err)
	}
	_, err = top.ID("bad")
	invalid("bad is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", err)
	_, err = top.ID("null")
	invalid("null is missing", err)
	_, err = top.ID("n")
	invalid("n must be a string", err)
	if _, present, err := top.OptionalID("absent"); present || err != nil {
		t.Fatalf("OptionalID of an absent member: %v %v", present, err)
	}
	if s, err := top.Name("name"); err != nil || s != "started" {
		t.Fatalf("Name = %q, %v", s, err)
	}
	_, err = top.Name("long")
	invalid("long is longer than 128 characters", err)
	_, err = top.Name("ctl")
	invalid("ctl is not printable ASCII", err)
	_, err = top.Name("absent")
	invalid("absent is missing", err)
	if s, err := top.Text("null", 3); err != nil || s != "" {
		t.Fatalf("Text of null = %q, %v", s, err)
	}
	_, err = top.Text("long", MaxName)
	invalid("long is longer than 128 bytes", err)
	_, err = top.Text("ctl", MaxName)
	invalid("ctl contains control characters", err)
	if at := top.Time("at"); !at.Equal(time.Date(2026, 3, 1, 8, 58, 31, 5e8, time.UTC)) || at.Location() != time.UTC {
		t.Fatalf("Time = %v", at)
	}
	for _, name := range []string{"old", "name", "n", "null", "absent"} {
		if at := top.Time(name); !at.IsZero() {
			t.Errorf("Time(%s) = %v, want zero", name, at)
		}
	}
	obj, ok, err := top.Object("obj", "k", "deep")
	if err != nil || !ok {
		t.Fatalf("Object: %v %v", ok, err)
	}
	deep, err := obj.RequiredObject("deep")
	if err != nil {
		t.Fatal(err)
	}
	_, err = deep.ID("x")
	invalid("obj.deep.x must be a string", err)
	_, err = obj.RequiredObject("absent")
	invalid("obj.absent is missing", err)
	_, _, err = top.Object("arr")
	invalid("arr is not an object", err)
	if _, ok, err := top.Object("null"); ok || err != nil {
		t.Fatalf("Object of null: %v %v", ok, err)
	}
	_, _, err = top.Object("twice", "k")
	if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeMalformedPayload || !strings.HasPrefix(err.(*domain.Error).Message, "twice ") {
		t.Fatalf("a known member twice: %v", err)
	}
	if _, _, err := top.Object("twice"); err != nil {
		t.Fatalf("an unknown member twice: %v", err)
	}
	if !top.Has("null") || top.Has("absent") {
		t.Fatal("Has")
	}
	var none Object
	if s, present, err := none.String("id"); s != "" || present || err != nil {
		t.Fatal("the zero Object holds a member")
	}
	for _, b := range []string{`[]`, `{"id":1,"id":2}`, `{"a":[[[[[[[[[1]]]]]]]]]}`, "{\"a\":\"\xff\"}", `{} {}`} {
		_, err := ReadObject("test.Open", "answer", []byte(b), 8, "id")
		if domain.KindOf(err) != domain.KindInvalid || domain.CodeOf(err) != CodeMalformedPayload || !strings.HasPrefix(err.(*domain.Error).Message, "answer ") {
			t.Errorf("%q: %v", b, err)
		}
	}
}

func TestEventTime(t *testing.T) {
	for s, ok := range map[string]bool{
		"1970-01-01T00:00:00Z": true, "9999-12-31T23:59:59.999Z": true, "2026-03-01T10:00:00.123456789+05:30": true,
		"1969-12-31T23:59:59Z": false, "1970-01-01T00:30:00+01:00": false, "9999-12-31T23:00:00-05:00": false,
		"2026-03-01 10:00:00": false, "": false,
	} {
		got, gotOK := ParseTime(s)
		if gotOK != ok || (ok && got.Location() != time.UTC) {
			t.Errorf("ParseTime(%q) = %v, %v; want ok %v", s, got, gotOK, ok)
		}
	}
}

func TestNewEvent(t *testing.T) {
	body := []byte(`{"id":"a1"}`)
	at := time.Date(2026, 3, 1, 11, 0, 0, 0, time.FixedZone("x", 3600))
	ev := NewEvent("prov", body, at)
	if ev.V != domain.StoredVersion || ev.Provider != "prov" || ev.Origin != domain.OriginWebhook ||
		!ev.ReceivedAt.Equal(at) || ev.ReceivedAt.Location() != time.UTC || ev.EventAt != ev.ReceivedAt ||
		ev.EventAtSource != domain.SourceReceived || string(ev.Payload) != string(body) {
		t.Fatalf("NewEvent = %+v", ev)
	}
	body[0] = 'x'
	if ev.Payload[0] != '{' {
		t.Fatal("the payload aliases the body")
	}
}

// TestAdapterOpenOrder: the app is checked first, then the signature, and only a verified
// body is parsed; each step's failure stops the next.
func TestAdapterOpenOrder(t *testing.T) {
	var steps []string
	adapter := func(validate error, verified bool, parsed error, eventID string) Adapter {
		return Adapter{
			Op: "test.Open", Provider: "prov", App: "app",
			Validate: func() error { steps = append(steps, "validate"); return validate },
			Verify: func(body []byte) bool {
				steps = append(steps, "verify "+string(body))
				return verified
			},
			Unverified: "the signature matches no configured secret",
			Parse: func(body []byte, at time.Time) (domain.Event, string, error) {
				steps = append(steps, "parse "+string(body))
				return NewEvent("prov", body, at), eventID, parsed
			},
		}
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name      string
		a         Adapter
		kind      domain.ErrorKind
		code      string
		steps     string
		contentID domain.ContentID
	}{
		{"invalid app", adapter(InvalidConfig("v", "app", "no webhook_secret"), true, nil, ""), domain.KindInternal, "", "validate", ""},
		{"bad signature", adapter(nil, false, nil, ""), domain.KindUnauthorized, CodeBadSignature, "validate,verify b", ""},
		{"bad body", adapter(nil, true, Invalid("p", "id", "is missing"), ""), domain.KindUnprocessable, CodeInvalidPayload, "validate,verify b,parse b", ""},
		{"event id", adapter(nil, true, nil, "evt"), domain.KindOther, "", "validate,verify b,parse b", domain.NewContentID("prov", "app", []byte("evt"))},
		{"no event id", adapter(nil, true, nil, ""), domain.KindOther, "", "validate,verify b,parse b", domain.NewContentID("prov", "app", []byte("b"))},
	} {
		for _, keep := range []bool{false, true} {
			steps = nil
			ev, id, err := c.a.Open([]byte("b"), "sig", at, Options{KeepRaw: keep})
			if got := strings.Join(steps, ","); got != c.steps {
				t.Fatalf("%s: steps %s, want %s", c.name, got, c.steps)
			}
			if c.kind != domain.KindOther {
				if domain.KindOf(err) != c.kind || (c.code != "" && domain.CodeOf(err) != c.code) || id != "" || ev.Type != "" || ev.Provider != "" {
					t.Fatalf("%s: %+v %q %v, want kind %v code %q", c.name, ev, id, err, c.kind, c.code)
				}
				continue
			}
			if err != nil || id != string(c.contentID) || ev.ContentID != c.contentID || ev.AppKey != "app" {
				t.Fatalf("%s: %+v %q %v", c.name, ev, id, err)
			}
			if keep != (ev.Raw != nil) || (keep && (ev.Raw.Body != "b" || ev.Raw.Signature != "sig")) {
				t.Fatalf("%s, KeepRaw %v: raw %+v", c.name, keep, ev.Raw)
			}
		}
	}
}

func TestContentID(t *testing.T) {
	if ContentID("p", "a", "evt", []byte("x")) != domain.NewContentID("p", "a", []byte("evt")) ||
		ContentID("p", "a", "", []byte("x")) != domain.NewContentID("p", "a", []byte("x")) {
		t.Fatal("the event id, else the body")
	}
}
