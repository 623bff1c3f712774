package veriff

import (
	"bytes"
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// The fuzz targets assert no panic, a known code and kind for every refusal, a short
// message, and that what is accepted is a well-formed event. Seeds are the vectors; run
// one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s ./ingest/veriff

// FuzzOpen signs each input as Veriff would, so the parser behind the signature check is
// what is fuzzed, and once more with the signature of other bytes, which must be refused
// before the body is read.
func FuzzOpen(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.Cases {
		f.Add(caseBody(f, c.Body, c.BodyHex))
	}
	a := v.app()
	f.Fuzz(func(t *testing.T, body []byte) {
		h := httpHeader(Sign(a.Secrets[1], body))
		h.Set(HeaderAuthClient, a.APIKey)
		ev, id, err := a.Open(body, h, v.ReceivedAt, Options{KeepRaw: true})
		if err != nil {
			code := domain.CodeOf(err)
			if kind, ok := codeKinds[code]; !ok || code == webhook.CodeBadSignature || domain.KindOf(err) != kind {
				t.Fatalf("refusal of code %q kind %v: %v", code, domain.KindOf(err), err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("refusal message of %d bytes may echo the body", len(err.Error()))
			}
		} else {
			checkEvent(t, a, body, ev, id)
		}

		h.Set(HeaderSignature, Sign(a.Secrets[0], append(bytes.Clone(body), 'x'))[HeaderSignature])
		if _, _, err := a.Open(body, h, v.ReceivedAt, Options{}); domain.CodeOf(err) != webhook.CodeBadSignature {
			t.Fatalf("a body under another body's signature: %v", err)
		}
	})
}

// checkEvent holds an accepted event to what Open promises.
func checkEvent(t *testing.T, a *App, body []byte, ev domain.Event, id string) {
	t.Helper()
	if !domain.IsSubjectToken(string(ev.ApplicantID)) {
		t.Fatalf("applicant id %q is no subject token", ev.ApplicantID)
	}
	if (string(ev.Type) == "" || webhook.CheckPrintable(string(ev.Type)) != nil) || (ev.ProviderStatus == "" || webhook.CheckPrintable(ev.ProviderStatus) != nil) {
		t.Fatalf("type %q or status %q not printable", ev.Type, ev.ProviderStatus)
	}
	if ev.Type != TypeDecision && string(ev.Type) != ev.ProviderStatus {
		t.Fatalf("event webhook with type %q and status %q", ev.Type, ev.ProviderStatus)
	}
	if !bytes.Equal(ev.Payload, body) || ev.Raw == nil || ev.Raw.Body != string(body) {
		t.Fatal("payload or raw is not the body")
	}
	if id != string(ContentID(a.Name, body)) || string(ev.ContentID) != id ||
		ev.AppKey != domain.AppKey(a.Name) || ev.Provider != Provider {
		t.Fatalf("content id %s, app %s, provider %s", id, ev.AppKey, ev.Provider)
	}
	if ev.EventAt.IsZero() || (ev.EventAtSource != domain.SourceReceived && ev.EventAtSource != SourceDecisionTime) {
		t.Fatalf("eventAt %s from %q", ev.EventAt, ev.EventAtSource)
	}
}
