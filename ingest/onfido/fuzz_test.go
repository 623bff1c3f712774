package onfido

import (
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// FuzzOpen asserts no panic, a known code and kind for every refusal, a short message,
// that what is accepted is a well-formed event, and that a body under another body's
// signature is refused before it is read (webhooktest.Suite.FuzzSigned). Onfido's own
// promises: a content id over the body (its webhooks carry no event id) and a time from
// the run or the receive. Run it with
//
//	go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 30s ./ingest/onfido
func FuzzOpen(f *testing.F) {
	v := loadVectors(f)
	suite().FuzzSigned(f, v, Sign, func(t *testing.T, body []byte, ev domain.Event, id string) {
		if id != string(ContentID(v.App.Name, body)) {
			t.Fatalf("content id %s, not the body's", id)
		}
		switch ev.EventAtSource {
		case domain.SourceReceived, SourceCompletedAt, SourceStartedAt:
		default:
			t.Fatalf("eventAt %s from %q", ev.EventAt, ev.EventAtSource)
		}
	})
}
