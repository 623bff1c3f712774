package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/ingest/persona"
	"github.com/kycstate/kycstate/ingest/providertest"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap"
)

// The stable codes the adapters refuse with (DESIGN.md section 13, PROVIDERS.md), as
// text: they are the contract, whichever package declares them.
const (
	codeBadSignature     = "bad_signature"
	codeMalformedPayload = "malformed_payload"
	codeInvalidPayload   = "invalid_payload"
)

// providerSecrets are the secrets of provider p's test app: the current one first, then
// one still accepted from before a rotation.
func providerSecrets(p domain.Provider) [][]byte {
	return [][]byte{[]byte("current-" + string(p) + "-secret"), []byte("previous-" + string(p) + "-secret")}
}

const testVeriffAPIKey = "6a3b1f0e-2c4d-4e5f-8a9b-0c1d2e3f4a5b"

// providerApps are one app per provider, named after it ("ss-app", ...), with
// providerSecrets (or secrets, when given).
func providerApps(tb testing.TB, secrets func(domain.Provider) [][]byte) []*ProviderApp {
	tb.Helper()
	if secrets == nil {
		secrets = providerSecrets
	}
	var out []*ProviderApp
	for _, p := range providertest.Providers() {
		c := ProviderAppConfig{Provider: p, Name: appName(p), Secrets: secrets(p)}
		if p == domain.ProviderVeriff {
			c.APIKey = testVeriffAPIKey
		}
		a, err := NewProviderApp(c)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func appName(p domain.Provider) string { return string(p)[:2] + "-app" }

// postProvider posts body with headers h to provider p's test app.
func (e *env) postProvider(tb testing.TB, p domain.Provider, app string, body []byte, h http.Header) answer {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/webhooks/"+string(p)+"/"+app, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	return e.do(tb, req)
}

// providerID is a subject-safe id of provider p for applicant n: Persona's are inquiry
// ids, Veriff's and Onfido's UUIDs, Sumsub's 24 hex digits.
func providerID(p domain.Provider, n int) string {
	switch p {
	case domain.ProviderSumsub:
		return fmt.Sprintf("65f1c2a9e4b0%012x", n)
	case domain.ProviderPersona:
		return fmt.Sprintf("inq_Test%08dAbCd", n)
	}
	return fmt.Sprintf("%08x-d617-4988-85bf-b76640861bf5", n)
}

// Every provider's webhooks go through POST /webhooks/{provider}/{app}: valid ones are
// stored on their applicant's subject with the provider's status, a resend is a
// duplicate, a rotated secret still opens, and every bad delivery gets its clear 4xx and
// is kept in the rejects (but for a body over the limit), under the provider.
func TestProviderWebhooks(t *testing.T) {
	e := newEnv(t, func(c *HandlerConfig) { c.Providers, c.MaxBody = providerApps(t, nil), 64<<10 })
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, p := range providertest.Providers() {
		t.Run(string(p), func(t *testing.T) {
			app := appName(p)
			secrets := providerSecrets(p)
			sign := func(secret []byte, body []byte) http.Header {
				return providertest.Sign(p, secret, testVeriffAPIKey, body, time.Now())
			}
			id := providerID(p, 1)
			evs, want := providertest.Journey(p, id, "user-"+string(p), start)
			kept := len(e.rejects(t))

			// Valid, and the journey's last event under the previous secret (rotation).
			var seqs []uint64
			var bodies [][]byte
			for i, ev := range evs {
				body := providertest.Body(p, ev)
				secret := secrets[0]
				if i == len(evs)-1 {
					secret = secrets[1]
				}
				h := sign(secret, body)
				a := e.postProvider(t, p, app, body, h)
				if a.status != http.StatusOK || a.duplicate {
					t.Fatalf("event %d (%s): %d %s", i, ev.Type, a.status, a.raw)
				}
				seqs, bodies = append(seqs, a.seq), append(bodies, body)
				// The same delivery again: the log already has it.
				if again := e.postProvider(t, p, app, body, h); again.status != http.StatusOK || !again.duplicate || again.seq != a.seq {
					t.Fatalf("event %d resent: %d dup %v seq %d, want the duplicate of %d", i, again.status, again.duplicate, again.seq, a.seq)
				}
			}
			stored, err := e.events.ProviderApplicant(ctx, p, domain.AppKey(app), domain.ApplicantID(id))
			if err != nil || len(stored) != len(evs) {
				t.Fatalf("%d events on the applicant's subject, %v; want %d", len(stored), err, len(evs))
			}
			for i, ev := range stored {
				whole := decodeWhole(t, ev)
				ext := domain.ExternalUserID(evs[i].External)
				if strings.HasPrefix(evs[i].Type, "workflow_task.") {
					ext = "" // an Onfido task names its run, not the applicant's user
				}
				cls, st := p.Classify(whole.Type, whole.ProviderStatus)
				switch {
				case whole.Seq != seqs[i], whole.Provider != string(p), whole.AppKey != domain.AppKey(app),
					whole.ApplicantID != domain.ApplicantID(id), whole.Type != domain.EventType(evs[i].Type),
					whole.ProviderStatus != evs[i].Status, whole.Origin != domain.OriginWebhook:
					t.Fatalf("event %d stored as %+v", i, whole)
				case whole.Raw == nil || whole.Raw.Body != string(bodies[i]) || whole.Raw.Signature == "":
					t.Fatalf("event %d: raw body and signature not kept", i)
				case whole.ExternalUserID != ext:
					t.Fatalf("event %d: externalUserId %q", i, whole.ExternalUserID)
				case cls == domain.ClassStatus && st != want[i]:
					t.Fatalf("event %d: classified %s, want %s", i, st, want[i])
				}
			}

			// A new delivery of the last event: signed anew (Persona: a new t). The content
			// id is the provider's event id where its signature covers one, else the
			// body's: the same either way.
			last := bodies[len(bodies)-1]
			time.Sleep(1100 * time.Millisecond) // Persona's t has whole seconds
			if a := e.postProvider(t, p, app, last, sign(secrets[0], last)); a.status != 200 || !a.duplicate || a.seq != seqs[len(seqs)-1] {
				t.Fatalf("a new delivery of the last event: %d dup %v seq %d", a.status, a.duplicate, a.seq)
			}

			// An event name the fold does not know is stored (the fold keeps it unknown).
			unknown := evs[0]
			unknown.Type, unknown.EventID = "somethingNew.happened", "evt_new"+id
			ub := providertest.Body(p, unknown)
			if a := e.postProvider(t, p, app, ub, sign(secrets[0], ub)); a.status != 200 || a.duplicate {
				t.Fatalf("unknown event name: %d %s", a.status, a.raw)
			} else if got := e.eventAt(t, a.seq); got.Type != "somethingNew.happened" {
				t.Fatalf("unknown event stored as %q", got.Type)
			} else if cls, _ := p.Classify(got.Type, got.ProviderStatus); cls != domain.ClassUnknown {
				t.Fatalf("unknown event classified %v", cls)
			}
			before := e.lastSeq(t)

			body := bodies[0]
			good := sign(secrets[0], body)
			forged := bytes.ReplaceAll(body, []byte(id), []byte(providerID(p, 2)))
			badID := bytes.ReplaceAll(body, []byte(id), []byte(id[:4]+"."+id[5:]))
			cases := []struct {
				name   string
				body   []byte
				h      http.Header
				status int
				code   string
				kept   bool
			}{
				{"forged body", forged, good, 401, codeBadSignature, true},
				{"wrong secret", body, sign([]byte("not-the-secret"), body), 401, codeBadSignature, true},
				{"no signature", body, http.Header{}, 401, codeBadSignature, true},
				{"truncated", body[:len(body)/2], good, 401, codeBadSignature, true},
				{"malformed, bad signature", []byte("{not json"), good, 401, codeBadSignature, true},
				{"malformed, signed", []byte("{not json"), sign(secrets[0], []byte("{not json")), 400, codeMalformedPayload, true},
				{"array, signed", []byte("[1]"), sign(secrets[0], []byte("[1]")), 400, codeMalformedPayload, true},
				{"id not subject-safe", badID, sign(secrets[0], badID), 422, codeInvalidPayload, true},
				{"over the body limit", bytes.Repeat([]byte("a"), 65<<10), good, 413, CodeBodyTooLarge, false},
			}
			if p == domain.ProviderVeriff {
				h := sign(secrets[0], body)
				h.Set("X-AUTH-CLIENT", "another-integration")
				cases = append(cases, struct {
					name   string
					body   []byte
					h      http.Header
					status int
					code   string
					kept   bool
				}{"wrong X-AUTH-CLIENT", body, h, 401, codeBadSignature, true})
			}
			for _, c := range cases {
				a := e.postProvider(t, p, app, c.body, c.h)
				if a.status != c.status || a.errCode != c.code {
					t.Fatalf("%s: %d %s, want %d %s", c.name, a.status, a.raw, c.status, c.code)
				}
				if strings.Contains(a.errMessage, string(secrets[0])) || (len(c.body) > 8 && strings.Contains(a.errMessage, string(c.body))) {
					t.Fatalf("%s: the message echoes a secret or the body: %s", c.name, a.errMessage)
				}
				if c.kept {
					kept++
				}
				rejects := e.rejects(t)
				if len(rejects) != kept {
					t.Fatalf("%s: %d rejects kept, want %d", c.name, len(rejects), kept)
				}
				if !c.kept {
					continue
				}
				r := rejects[len(rejects)-1]
				if r.Provider != string(p) || r.App != app || r.Reason != c.code || r.Status != c.status || r.Body != string(c.body) {
					t.Fatalf("%s: reject kept as %+v", c.name, r)
				}
				// Past the signature (400, 422) the body is the provider's: kept whole under
				// the app; anything no secret verifies is only a sample (DESIGN.md section 15).
				if authenticated := c.status == 400 || c.status == 422; authenticated {
					if r.Kept != domain.KeptAuthenticated || r.AppKey != domain.AppKey(app) {
						t.Fatalf("%s: an authenticated refusal kept as %q under %q", c.name, r.Kept, r.AppKey)
					}
				} else if r.Kept != domain.KeptSample || r.AppKey != "" {
					t.Fatalf("%s: an unauthenticated refusal kept as %q under %q", c.name, r.Kept, r.AppKey)
				}
				for k := range c.h {
					if k != "Content-Type" && r.Headers[strings.ToLower(k)] != c.h.Get(k) {
						t.Fatalf("%s: header %s kept as %q", c.name, k, r.Headers[strings.ToLower(k)])
					}
				}
			}
			if e.lastSeq(t) != before {
				t.Fatal("a refused webhook reached the log")
			}
		})
	}

	// Persona during a rotation: two t/v1 pairs, either may be the valid one.
	t.Run("persona two pairs", func(t *testing.T) {
		secrets := providerSecrets(domain.ProviderPersona)
		id := providerID(domain.ProviderPersona, 3)
		evs, _ := providertest.Journey(domain.ProviderPersona, id, "u", start)
		for i, order := range [][2][]byte{{[]byte("retired-secret"), secrets[0]}, {secrets[1], []byte("retired-secret")}} {
			body := providertest.Body(domain.ProviderPersona, evs[i])
			now := time.Now()
			a := persona.Sign(order[0], body, now)[persona.SignatureHeader]
			b := persona.Sign(order[1], body, now.Add(-time.Second))[persona.SignatureHeader]
			h := http.Header{}
			h.Set(persona.SignatureHeader, a+" "+b)
			if got := e.postProvider(t, domain.ProviderPersona, appName(domain.ProviderPersona), body, h); got.status != 200 || got.duplicate {
				t.Fatalf("pairs %d: %d %s", i, got.status, got.raw)
			}
		}
		h := http.Header{}
		body := providertest.Body(domain.ProviderPersona, evs[2])
		h.Set(persona.SignatureHeader, persona.Sign([]byte("x"), body, time.Now())[persona.SignatureHeader]+" "+
			persona.Sign([]byte("y"), body, time.Now())[persona.SignatureHeader])
		if got := e.postProvider(t, domain.ProviderPersona, appName(domain.ProviderPersona), body, h); got.status != 401 {
			t.Fatalf("two pairs, neither valid: %d %s", got.status, got.raw)
		}
	})

	// Paths: an unknown provider, an app of another provider, another method.
	t.Run("paths", func(t *testing.T) {
		body := providertest.Body(domain.ProviderSumsub, providertest.Event{ID: "abc", Type: "applicantCreated"})
		h := providertest.Sign(domain.ProviderSumsub, providerSecrets(domain.ProviderSumsub)[0], "", body, time.Now())
		kept := len(e.rejects(t))
		for _, c := range []struct {
			method, path string
			status       int
			code         string
		}{
			{"POST", "/webhooks/nobody/ss-app", 404, CodeNoRoute},
			{"POST", "/webhooks/sumsub/pe-app", 404, CodeUnknownApp},
			{"POST", "/webhooks/sumsub/cbc", 404, CodeUnknownApp},
			{"POST", "/webhooks/sumsub/ss-app/extra", 404, CodeNoRoute},
			{"GET", "/webhooks/sumsub/ss-app", 405, CodeMethodNotAllowed},
		} {
			req, _ := http.NewRequest(c.method, e.srv.URL+c.path, bytes.NewReader(body))
			for k, v := range h {
				req.Header[k] = v
			}
			if a := e.do(t, req); a.status != c.status || a.errCode != c.code {
				t.Fatalf("%s %s: %d %s, want %d %s", c.method, c.path, a.status, a.raw, c.status, c.code)
			}
		}
		if n := len(e.rejects(t)); n != kept {
			t.Fatalf("%d rejects kept for refused paths", n-kept)
		}
		// Allpass's paths are as they were.
		good, sig := seal(t, e.cbc, payload(e.cbc, 7, "applicantCreated"), "2026-03-01T10:00:00Z")
		if a := e.post(t, "/webhooks/allpass/cbc", good, sig); a.status != 200 {
			t.Fatalf("allpass: %d %s", a.status, a.raw)
		}
	})
}

// A handler with only other providers' apps serves them, and answers Allpass's paths
// 404 (no app), never a panic.
func TestProviderOnlyHandler(t *testing.T) {
	e := newEnv(t, func(c *HandlerConfig) { c.Apps, c.Providers = nil, providerApps(t, nil) })
	v := mustVectors(t)
	cbc, _ := mustApps(t, v)
	body, sig := seal(t, cbc, payload(cbc, 1, "applicantCreated"), "2026-03-01T10:00:00Z")
	for _, path := range []string{"/webhooks/allpass", "/webhooks/allpass/cbc"} {
		if a := e.post(t, path, body, sig); a.status != 404 || a.errCode != CodeUnknownApp {
			t.Fatalf("%s: %d %s", path, a.status, a.raw)
		}
	}
	ob := providertest.Body(domain.ProviderOnfido, providertest.Event{ID: providerID(domain.ProviderOnfido, 1),
		Type: "workflow_run.completed", Status: "approved", At: time.Now()})
	h := providertest.Sign(domain.ProviderOnfido, providerSecrets(domain.ProviderOnfido)[0], "", ob, time.Now())
	if a := e.postProvider(t, domain.ProviderOnfido, "on-app", ob, h); a.status != 200 {
		t.Fatalf("onfido: %d %s", a.status, a.raw)
	}
	if _, err := NewHandler(HandlerConfig{Events: e.events}); err == nil {
		t.Fatal("a handler without any app")
	}
}

// Deliveries refused under a wrong secret are recovered by Reprocess once the secret is
// fixed, with their provider's adapter, and only once.
func TestProviderRejectsReprocessed(t *testing.T) {
	wrong := func(p domain.Provider) [][]byte { return [][]byte{[]byte("misconfigured-" + string(p))} }
	e := newEnv(t, func(c *HandlerConfig) { c.Providers = providerApps(t, wrong) })
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var sent int
	for _, p := range providertest.Providers() {
		evs, _ := providertest.Journey(p, providerID(p, 9), "user-9", start)
		for _, ev := range evs {
			body := providertest.Body(p, ev)
			h := providertest.Sign(p, providerSecrets(p)[0], testVeriffAPIKey, body, time.Now())
			if a := e.postProvider(t, p, appName(p), body, h); a.status != 401 {
				t.Fatalf("%s under the wrong secret: %d %s", p, a.status, a.raw)
			}
			sent++
		}
	}
	ctx := context.Background()
	res, err := Reprocess(ctx, e.events, ReprocessConfig{Providers: providerApps(t, wrong), Logger: zap.NewNop()}, 1)
	if err != nil || res.Recovered != 0 || res.Failing != sent || res.FailingByReason[codeBadSignature] != sent {
		t.Fatalf("still wrong: %+v %v", res, err)
	}
	fixed := ReprocessConfig{Apps: []*allpass.App{e.cbc}, Providers: providerApps(t, nil), Options: allpass.Options{KeepRaw: true}}
	res, err = Reprocess(ctx, e.events, fixed, 1)
	if err != nil || res.Recovered != sent || res.Failing != 0 {
		t.Fatalf("fixed: %+v %v", res, err)
	}
	var provs []string
	for _, ev := range e.logged(t) {
		if ev.Raw == nil || ev.ApplicantID == "" {
			t.Fatalf("recovered event %+v", ev)
		}
		if !slices.Contains(provs, ev.Provider) {
			provs = append(provs, ev.Provider)
		}
	}
	if len(provs) != 4 {
		t.Fatalf("recovered the providers %v", provs)
	}
	if res, err = Reprocess(ctx, e.events, fixed, 1); err != nil || res.Duplicates != sent || res.Recovered != 0 {
		t.Fatalf("twice: %+v %v", res, err)
	}
	for _, p := range providertest.Providers() {
		evs, err := e.events.ProviderApplicant(ctx, p, domain.AppKey(appName(p)), domain.ApplicantID(providerID(p, 9)))
		if err != nil || len(evs) == 0 {
			t.Fatalf("%s: %d events, %v", p, len(evs), err)
		}
		if _, err := eventlog.ProviderSubject(p, domain.AppKey(appName(p)), domain.ApplicantID(providerID(p, 9))); err != nil {
			t.Fatal(err)
		}
	}
}

// NewProviderApp is the registry: each provider's adapter, with its own checks.
func TestNewProviderApp(t *testing.T) {
	for _, c := range []struct {
		name string
		c    ProviderAppConfig
		ok   bool
	}{
		{"sumsub", ProviderAppConfig{Provider: domain.ProviderSumsub, Name: "ss", Secrets: [][]byte{[]byte("k")}}, true},
		{"veriff without api key", ProviderAppConfig{Provider: domain.ProviderVeriff, Name: "ve", Secrets: [][]byte{[]byte("k")}}, false},
		{"api key not veriff", ProviderAppConfig{Provider: domain.ProviderOnfido, Name: "on", Secrets: [][]byte{[]byte("k")}, APIKey: "x"}, false},
		{"no secret", ProviderAppConfig{Provider: domain.ProviderPersona, Name: "pa"}, false},
		{"empty secret", ProviderAppConfig{Provider: domain.ProviderPersona, Name: "pa", Secrets: [][]byte{[]byte("k"), nil}}, false},
		{"name not a token", ProviderAppConfig{Provider: domain.ProviderSumsub, Name: "a.b", Secrets: [][]byte{[]byte("k")}}, false},
		{"allpass", ProviderAppConfig{Provider: domain.ProviderAllpass, Name: "ap", Secrets: [][]byte{[]byte("k")}}, false},
		{"unknown", ProviderAppConfig{Provider: "nobody", Name: "x", Secrets: [][]byte{[]byte("k")}}, false},
	} {
		a, err := NewProviderApp(c.c)
		if (err == nil) != c.ok || (err == nil && (a.Provider() != c.c.Provider || a.Name() != c.c.Name)) {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && (domain.KindOf(err) != domain.KindInvalid || strings.Contains(err.Error(), "k\"")) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// FuzzProviderHandler posts any body to every provider's path, signed as the provider
// signs it or with whatever header the input gives: every answer is one of the
// documented statuses with a JSON body, the stream moves only on a 200, and what a 200
// stored is the body, under a subject built from tokens that were checked.
func FuzzProviderHandler(f *testing.F) {
	_, events := mustLog(f, f.TempDir())
	apps := providerApps(f, nil)
	h, err := NewHandler(HandlerConfig{Providers: apps, Events: events, KeepRaw: true, MaxBody: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i, p := range providertest.Providers() {
		evs, _ := providertest.Journey(p, providerID(p, i), "user-1", start)
		for _, ev := range evs {
			f.Add(uint8(i), providertest.Body(p, ev), true, "")
		}
		f.Add(uint8(i), []byte(`{"a":`), true, "")
		f.Add(uint8(i), providertest.Body(p, evs[0]), false, "t=1,v1=00")
	}
	f.Add(uint8(4), []byte(`{}`), true, "")

	allowed := map[int]bool{200: true, 400: true, 401: true, 404: true, 413: true, 422: true, 503: true}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, route uint8, body []byte, sign bool, sig string) {
		i := int(route) % (len(apps) + 1)
		path, p := "/webhooks/acme/x", domain.Provider("")
		header := http.Header{}
		if i < len(apps) {
			p = apps[i].Provider()
			path = "/webhooks/" + string(p) + "/" + apps[i].Name()
			if sign {
				header = providertest.Sign(p, providerSecrets(p)[0], testVeriffAPIKey, body, time.Now())
			}
		}
		if !sign {
			for _, k := range []string{"X-Payload-Digest", "Persona-Signature", "X-HMAC-SIGNATURE", "X-SHA2-Signature"} {
				header.Set(k, sig)
			}
		}
		before, err := events.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header = header
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d (%s)", rec.Code, rec.Body.Bytes())
		}
		a := decodeAnswer(t, rec.Code, rec.Header(), rec.Body.Bytes())
		after, err := events.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case a.status != 200 && after != before:
			t.Fatalf("answered %d but the stream moved from %d to %d", a.status, before, after)
		case a.status == 200 && !sign:
			t.Fatalf("an unsigned body was stored at %d", a.seq)
		case a.status == 200 && !a.duplicate && (a.seq != before+1 || after != a.seq):
			t.Fatalf("new event answered at %d; stream went from %d to %d", a.seq, before, after)
		}
		if a.status == 200 {
			got := readOne(t, events, a.seq)
			// A duplicate may be another body of the same provider event id (its original).
			if got.Provider != string(p) || got.Raw == nil || (!a.duplicate && got.Raw.Body != string(body)) {
				t.Fatalf("stored %+v for a %s webhook", got, p)
			}
			if _, err := eventlog.ProviderSubject(p, got.AppKey, got.ApplicantID); err != nil {
				t.Fatalf("stored under ids that make no subject: %v", err)
			}
		}
	})
}
