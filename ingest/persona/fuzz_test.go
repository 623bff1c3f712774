package persona

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// FuzzOpen asserts no panic, a known kind and code for every refusal, and that whatever
// is accepted is a storable event: an inquiry id that is a subject token, a printable
// name, the body as the payload. With sign set, the fuzzed body gets a real signature
// (after the fuzzed header's sets, so the parser of the header sees them too) and must
// never be refused as unauthorized; without it, the fuzzed header must never verify
// unless it is a seed's. Seeds are the vectors. Run with
//
//	go test ./ingest/persona -run '^$' -fuzz FuzzOpen -fuzztime 30s
func FuzzOpen(f *testing.F) {
	vf := loadVectors(f)
	for _, c := range vf.Cases {
		f.Add([]byte(c.Body), c.Headers["Persona-Signature"], false)
		f.Add([]byte(c.Body), "", true)
	}
	app := vf.app()
	at := vf.receivedAt(f)
	f.Fuzz(func(t *testing.T, body []byte, sig string, sign bool) {
		if sign {
			valid := Sign(app.Secrets[len(body)%2], body, time.Unix(1772359200, 0))[SignatureHeader]
			if sets := strings.Fields(sig); len(sets) < maxSignatureSets {
				sig = strings.Join(append(sets, valid), " ")
			} else {
				sig = valid
			}
		}
		h := http.Header{}
		h.Set(SignatureHeader, sig)
		ev, id, err := app.Open(body, h, at, Options{KeepRaw: true})
		if err != nil {
			kind, code := domain.KindOf(err), domain.CodeOf(err)
			switch {
			case kind == domain.KindUnauthorized && code == webhook.CodeBadSignature:
			case kind == domain.KindInvalid && code == webhook.CodeMalformedPayload:
			case kind == domain.KindUnprocessable && code == webhook.CodeInvalidPayload:
			default:
				t.Fatalf("refusal of kind %v code %q: %v", kind, code, err)
			}
			if sign && kind == domain.KindUnauthorized {
				t.Fatalf("a body with a real signature was refused as unauthorized: %q: %v", sig, err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("refusal of %d bytes may echo the body", len(err.Error()))
			}
			return
		}
		if !sign && !seedSignature(vf, sig) {
			t.Fatalf("a fuzzed signature verified: %q", sig)
		}
		if !domain.IsSubjectToken(string(ev.ApplicantID)) || !strings.HasPrefix(string(ev.ApplicantID), inquiryPrefix) {
			t.Fatalf("accepted inquiry id %q", ev.ApplicantID)
		}
		if ev.Type == "" || webhook.CheckPrintable(string(ev.Type)) != nil || webhook.CheckPrintable(ev.ProviderStatus) != nil {
			t.Fatalf("accepted name %q status %q", ev.Type, ev.ProviderStatus)
		}
		if !bytes.Equal(ev.Payload, body) || ev.Raw == nil || ev.Raw.Body != string(body) || ev.Raw.Signature != sig {
			t.Fatal("the payload is not the body, or the signature not the header")
		}
		if ev.EventAt.IsZero() || ev.EventAt.Location() != time.UTC {
			t.Fatalf("event time %v", ev.EventAt)
		}
		if b, err := hex.DecodeString(id); err != nil || len(b) != 32 || string(ev.ContentID) != id {
			t.Fatalf("content id %q", id)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("the event does not marshal: %v", err)
		}
	})
}

// seedSignature reports whether sig holds a v1 one of the vectors carries: the only
// signatures that may verify without sign.
func seedSignature(vf vectorFile, sig string) bool {
	for _, c := range vf.Cases {
		for _, set := range strings.Fields(c.Headers["Persona-Signature"]) {
			for _, pair := range strings.Split(set, ",") {
				if v, ok := strings.CutPrefix(pair, "v1="); ok && len(v) == 64 && strings.Contains(strings.ToLower(sig), v) {
					return true
				}
			}
		}
	}
	return false
}
