package veriff

import (
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// The fuzz targets assert no panic, a known code and kind for every refusal, a short
// message, and that what is accepted is a well-formed event. Seeds are the vectors; run
// one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s ./ingest/veriff

// FuzzOpen signs each input as Veriff would, with the app's X-AUTH-CLIENT, so the parser
// behind the signature check is what is fuzzed, and once more with the signature of
// other bytes, which must be refused before the body is read
// (webhooktest.Suite.FuzzSigned). Veriff's own promises: a status always, an event
// webhook named by its status, a content id over the body, and a time from the decision
// or the receive.
func FuzzOpen(f *testing.F) {
	v := loadVectors(f)
	sign := func(secret, body []byte) map[string]string {
		h := Sign(secret, body)
		h[HeaderAuthClient] = v.App.APIKey
		return h
	}
	suite().FuzzSigned(f, v.Vectors, sign, func(t *testing.T, body []byte, ev domain.Event, id string) {
		if ev.ProviderStatus == "" {
			t.Fatalf("type %q without a status", ev.Type)
		}
		if ev.Type != TypeDecision && string(ev.Type) != ev.ProviderStatus {
			t.Fatalf("event webhook with type %q and status %q", ev.Type, ev.ProviderStatus)
		}
		if id != string(ContentID(v.App.Name, body)) {
			t.Fatalf("content id %s, not the body's", id)
		}
		if ev.EventAtSource != domain.SourceReceived && ev.EventAtSource != SourceDecisionTime {
			t.Fatalf("eventAt %s from %q", ev.EventAt, ev.EventAtSource)
		}
	})
}
