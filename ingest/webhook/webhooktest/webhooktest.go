// Package webhooktest runs a provider adapter's test vectors (internal/vectorfile) and
// holds what every adapter's tests and fuzz targets assert alike: a refusal has a stable
// code, its kind, and a message that gives nothing away; an accepted event is exactly the
// one the vectors name and can be stored.
//
// It is for the tests of ingest/<provider> only. Opening a webhook needs no net/http
// (Header gives net/textproto's canonical keys, as a request's headers have); Get, for
// the status API pieces, asks an httptest server as the lead's wiring will ask the
// provider.
package webhooktest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/internal/vectorfile"
)

// Vectors is a package's testdata/vectors.json, loaded.
type Vectors struct {
	vectorfile.File
	// At is File.ReceivedAt, parsed.
	At time.Time
}

// Load reads testdata/vectors.json of the package under test, and into each of extra
// (pointers) the members a provider adds to the file. A file that is missing, does not
// parse, or holds fewer than minCases cases fails tb: the vectors are the adapter's
// outside check, so a run without them must not pass.
func Load(tb testing.TB, minCases int, extra ...any) Vectors {
	tb.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatalf("vectors: %v (regenerate them with go run ./ingest/<provider>/testdata/gen)", err)
	}
	var v Vectors
	for _, into := range append([]any{&v.File}, extra...) {
		if err := json.Unmarshal(b, into); err != nil {
			tb.Fatalf("testdata/vectors.json: %v", err)
		}
	}
	if v.At, err = time.Parse(time.RFC3339Nano, v.ReceivedAt); err != nil {
		tb.Fatalf("testdata/vectors.json: receivedAt: %v", err)
	}
	if len(v.Cases) < minCases {
		tb.Fatalf("testdata/vectors.json: %d cases, want at least %d: the file is cut short", len(v.Cases), minCases)
	}
	return v
}

// Case returns the case named name.
func (v Vectors) Case(tb testing.TB, name string) vectorfile.Case {
	tb.Helper()
	for _, c := range v.Cases {
		if c.Name == name {
			return c
		}
	}
	tb.Fatalf("no vector %q", name)
	return vectorfile.Case{}
}

// Secrets are the secrets c is opened with: its own, else the app's.
func (v Vectors) Secrets(c vectorfile.Case) [][]byte {
	ss := v.App.Secrets
	if len(c.Secrets) > 0 {
		ss = c.Secrets
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// Body is c's body.
func Body(tb testing.TB, c vectorfile.Case) []byte {
	tb.Helper()
	b, err := c.Bytes()
	if err != nil {
		tb.Fatalf("%s: %v", c.Name, err)
	}
	return b
}

// MustTime parses an RFC 3339 time, or fails tb.
func MustTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// Header is m as a request's headers: canonical keys, read with Get in any case.
func Header(m map[string]string) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// Open is an adapter's App.Open.
type Open func(body []byte, h webhook.Header, receivedAt time.Time, opt webhook.Options) (domain.Event, string, error)

// Suite is what Run needs of one adapter.
type Suite struct {
	Provider domain.Provider
	// App is the Open of the adapter's app of that name, API key (if the provider has
	// one) and secrets.
	App func(name, apiKey string, secrets [][]byte) Open
	// Signature is what an accepted event keeps as Raw.Signature for a case's headers.
	Signature func(headers map[string]string) string
	// Private are strings of the vectors' bodies (ids, user ids) that no refusal may
	// repeat, besides the secrets, the API key and the header values, which none may.
	Private []string
}

// Run opens every vector, with and without KeepRaw. An accepted one must become exactly
// the event the generator wrote (every field of it, the time in UTC, the payload the body
// byte for byte, Raw only with KeepRaw) and classify as the vector says; a refused one
// must fail with its code and the kind of that code, return no event and no id, and word
// its refusal without a secret, a signature, the API key, a private string or the body.
func (s Suite) Run(t *testing.T, v Vectors) {
	t.Helper()
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			open := s.App(v.App.Name, v.App.APIKey, v.Secrets(c))
			body := Body(t, c)
			for _, keep := range []bool{false, true} {
				ev, id, err := open(body, Header(c.Headers), v.At, webhook.Options{KeepRaw: keep})
				if c.Error != "" {
					CheckRefusal(t, err, KindOf(c.Error), c.Error, s.private(v, c), body)
					if id != "" || ev.Type != "" || ev.Provider != "" {
						t.Fatalf("a refusal returned event %+v and id %q", ev, id)
					}
					continue
				}
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				s.checkWant(t, v, c, body, keep, ev, id)
			}
		})
	}
}

func (s Suite) checkWant(t *testing.T, v Vectors, c vectorfile.Case, body []byte, keep bool, ev domain.Event, id string) {
	t.Helper()
	w := c.Want
	if w == nil {
		t.Fatal("the vector has neither error nor want")
	}
	eventAt, err := time.Parse(time.RFC3339Nano, w.EventAt)
	if err != nil {
		t.Fatalf("want.eventAt: %v", err)
	}
	want := domain.Event{
		V: domain.StoredVersion, Provider: string(s.Provider), Origin: domain.OriginWebhook, AppKey: domain.AppKey(v.App.Name),
		ApplicantID: domain.ApplicantID(w.ApplicantID), ExternalUserID: domain.ExternalUserID(w.ExternalUserID),
		Type: domain.EventType(w.Type), ProviderStatus: w.ProviderStatus,
		EventAt: eventAt, EventAtSource: w.EventAtSource, ReceivedAt: v.At,
		Payload: json.RawMessage(body), ContentID: domain.ContentID(w.ContentID),
	}
	if keep {
		want.Raw = &domain.Raw{Body: string(body), Signature: s.Signature(c.Headers)}
	}
	if !equalEvents(ev, want) {
		t.Fatalf("KeepRaw %v: event\n%+v (raw %+v)\nwant\n%+v (raw %+v)", keep, ev, ev.Raw, want, want.Raw)
	}
	if id != w.ContentID {
		t.Fatalf("content id %s, want %s", id, w.ContentID)
	}
	class, status := s.Provider.Classify(ev.Type, ev.ProviderStatus)
	if ClassName(class) != w.Class || string(status) != w.Status {
		t.Fatalf("classified %s %q, want %s %q", ClassName(class), status, w.Class, w.Status)
	}
}

// private is every string a refusal of c must not hold.
func (s Suite) private(v Vectors, c vectorfile.Case) []string {
	out := append(append(append([]string{v.App.APIKey}, v.App.Secrets...), c.Secrets...), s.Private...)
	for _, h := range c.Headers {
		out = append(out, h)
	}
	return out
}

// equalEvents compares every field of a and b, the payload byte for byte and the event's
// time as an instant that a holds in UTC.
func equalEvents(a, b domain.Event) bool {
	ab, bb := a.Payload, b.Payload
	a.Payload, b.Payload = nil, nil
	ea, eb := a.EventAt, b.EventAt
	a.EventAt, b.EventAt = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb) && bytes.Equal(ab, bb) && ea.Equal(eb) && ea.Location() == time.UTC
}

// SignatureBeforeParse opens every case the vectors refuse as malformed or invalid under
// each of forged's headers for its body (none of which may authenticate) and asserts the
// refusal is bad_signature, whatever is wrong with the body: nothing of an
// unauthenticated body is read. At least min such cases must exist.
func (s Suite) SignatureBeforeParse(t *testing.T, v Vectors, min int, forged func(body []byte) []map[string]string) {
	t.Helper()
	open := s.App(v.App.Name, v.App.APIKey, v.Secrets(vectorfile.Case{}))
	n := 0
	for _, c := range v.Cases {
		if c.Error == "" || c.Error == webhook.CodeBadSignature {
			continue
		}
		n++
		body := Body(t, c)
		for _, h := range append(forged(body), map[string]string{}) {
			_, _, err := open(body, Header(h), v.At, webhook.Options{})
			CheckRefusal(t, err, domain.KindUnauthorized, webhook.CodeBadSignature, s.private(v, c), body)
		}
	}
	if n < min {
		t.Fatalf("only %d malformed or invalid vectors, want %d", n, min)
	}
}

// KindOf is the kind a refusal with code comes with (PROVIDERS.md).
func KindOf(code string) domain.ErrorKind {
	switch code {
	case webhook.CodeBadSignature:
		return domain.KindUnauthorized
	case webhook.CodeMalformedPayload:
		return domain.KindInvalid
	case webhook.CodeInvalidPayload:
		return domain.KindUnprocessable
	}
	return domain.KindOther
}

// ClassName is the vectors' word for class.
func ClassName(class domain.Class) string {
	switch class {
	case domain.ClassStatus:
		return "status"
	case domain.ClassAnnotation:
		return "annotation"
	case domain.ClassUnknown:
		return "unknown"
	}
	return "?"
}

// maxMessage bounds a refusal's text: a longer one may be repeating the body.
const maxMessage = 200

// CheckRefusal asserts that err is a refusal of kind with code whose text holds none of
// private (secrets, signatures, ids of the body), is at most maxMessage bytes, and does
// not repeat the body's start.
func CheckRefusal(tb testing.TB, err error, kind domain.ErrorKind, code string, private []string, body []byte) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("accepted, want a refusal of kind %v code %s", kind, code)
	}
	if got := domain.KindOf(err); got != kind {
		tb.Fatalf("kind %v, want %v (%v)", got, kind, err)
	}
	if got := domain.CodeOf(err); got != code {
		tb.Fatalf("code %q, want %q (%v)", got, code, err)
	}
	msg := err.Error()
	for _, s := range private {
		if s != "" && strings.Contains(msg, s) {
			tb.Fatalf("refusal %q holds %q", msg, s)
		}
	}
	if len(msg) > maxMessage || (len(body) > 16 && strings.Contains(msg, string(body[:16]))) {
		tb.Fatalf("refusal %q may echo the body", msg)
	}
}

// CheckFuzzRefusal holds a refusal of fuzzed input to what every adapter promises: one of
// the three codes with its kind, and a short message. It returns the code.
func CheckFuzzRefusal(t *testing.T, err error) string {
	t.Helper()
	code := domain.CodeOf(err)
	if kind := KindOf(code); kind == domain.KindOther || domain.KindOf(err) != kind {
		t.Fatalf("refusal of kind %v code %q: %v", domain.KindOf(err), code, err)
	}
	if len(err.Error()) > maxMessage {
		t.Fatalf("refusal of %d bytes may echo the body", len(err.Error()))
	}
	return code
}

// CheckFuzzEvent holds an event accepted from fuzzed input to what every adapter
// promises: it can be stored. Its applicant is a subject token, its type a name
// (webhook.MaxName printable ASCII) and its status printable; it belongs to provider and
// app; its payload (and raw body, when kept) is the body; its time is set, in UTC; its
// content id is the id returned, 32 bytes in hex; and it marshals.
func CheckFuzzEvent(t *testing.T, provider domain.Provider, app string, body []byte, ev domain.Event, id string) {
	t.Helper()
	if !domain.IsSubjectToken(string(ev.ApplicantID)) {
		t.Fatalf("applicant id %q is no subject token", ev.ApplicantID)
	}
	if ev.Type == "" || webhook.CheckPrintable(string(ev.Type)) != nil || webhook.CheckPrintable(ev.ProviderStatus) != nil {
		t.Fatalf("type %q or status %q not printable", ev.Type, ev.ProviderStatus)
	}
	if ev.Provider != string(provider) || ev.AppKey != domain.AppKey(app) {
		t.Fatalf("provider %s, app %s", ev.Provider, ev.AppKey)
	}
	if !bytes.Equal(ev.Payload, body) || (ev.Raw != nil && ev.Raw.Body != string(body)) {
		t.Fatal("the payload or the raw body is not the body")
	}
	if ev.EventAt.IsZero() || ev.EventAt.Location() != time.UTC {
		t.Fatalf("event time %v", ev.EventAt)
	}
	if b, err := hex.DecodeString(id); err != nil || len(b) != 32 || string(ev.ContentID) != id {
		t.Fatalf("content id %q, event's %q", id, ev.ContentID)
	}
	if _, err := json.Marshal(ev); err != nil {
		t.Fatalf("the event does not marshal: %v", err)
	}
}

// CheckSign holds an adapter's Sign, which the simulator and the handler's tests use, to
// the signatures the generator made with crypto/hmac: every accepted case whose header
// (a lower-case hex signature) Sign gives under one of the case's secrets. At least min
// cases must be so signed.
func (v Vectors) CheckSign(t *testing.T, header string, sign func(secret, body []byte) map[string]string, min int) {
	t.Helper()
	signed := 0
	for _, c := range v.Cases {
		sig := c.Headers[header]
		if c.Error != "" || sig != strings.ToLower(sig) {
			continue
		}
		body := Body(t, c)
		match := false
		for _, s := range v.Secrets(c) {
			match = match || sign(s, body)[header] == sig
		}
		if !match {
			t.Errorf("%s: Sign gives none of the vector's signature", c.Name)
		}
		signed++
	}
	if signed < min {
		t.Fatalf("only %d signed vectors, want %d", signed, min)
	}
}

// FuzzSigned is the fuzz target of an adapter whose signature is over the body alone.
// Each input is signed by sign under the app's last secret (a rotation's), so the parser
// behind the signature check is what is fuzzed: a refusal must hold to CheckFuzzRefusal
// and not be bad_signature, an accepted event to CheckFuzzEvent, keep its raw body, and
// pass check. Then the input is opened once more under the signature of other bytes,
// which must be refused as bad_signature before the body is read. Seeds are the vectors.
func (s Suite) FuzzSigned(f *testing.F, v Vectors, sign func(secret, body []byte) map[string]string, check func(t *testing.T, body []byte, ev domain.Event, id string)) {
	f.Helper()
	for _, c := range v.Cases {
		f.Add(Body(f, c))
	}
	secrets := v.Secrets(vectorfile.Case{})
	open := s.App(v.App.Name, v.App.APIKey, secrets)
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, id, err := open(body, Header(sign(secrets[len(secrets)-1], body)), v.At, webhook.Options{KeepRaw: true})
		if err != nil {
			if CheckFuzzRefusal(t, err) == webhook.CodeBadSignature {
				t.Fatalf("a signed body was refused as unauthorized: %v", err)
			}
		} else {
			CheckFuzzEvent(t, s.Provider, v.App.Name, body, ev, id)
			if ev.Raw == nil {
				t.Fatal("KeepRaw kept nothing")
			}
			check(t, body, ev, id)
		}
		forged := sign(secrets[0], append(bytes.Clone(body), 'x'))
		if _, _, err := open(body, Header(forged), v.At, webhook.Options{}); domain.CodeOf(err) != webhook.CodeBadSignature {
			t.Fatalf("a body under another body's signature: %v", err)
		}
	})
}

// HeaderOf is a Suite's Signature for a provider whose signature is one header, kept as
// received.
func HeaderOf(name string) func(headers map[string]string) string {
	return func(h map[string]string) string { return h[name] }
}

// Get sends GET path with headers to srv, as a status API request is sent, and returns
// the answer's status code and body.
func Get(t testing.TB, srv *httptest.Server, path string, headers map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
