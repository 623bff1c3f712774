package persona

import (
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
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
	v := loadVectors(f)
	for _, c := range v.Cases {
		body := webhooktest.Body(f, c)
		f.Add(body, c.Headers["Persona-Signature"], false)
		f.Add(body, "", true)
	}
	app := testApp(v)
	f.Fuzz(func(t *testing.T, body []byte, sig string, sign bool) {
		if sign {
			valid := Sign(app.Secrets[len(body)%2], body, time.Unix(1772359200, 0))[SignatureHeader]
			if sets := strings.Fields(sig); len(sets) < maxSignatureSets {
				sig = strings.Join(append(sets, valid), " ")
			} else {
				sig = valid
			}
		}
		ev, id, err := app.Open(body, header(map[string]string{SignatureHeader: sig}), v.At, Options{KeepRaw: true})
		if err != nil {
			if code := webhooktest.CheckFuzzRefusal(t, err); sign && code == webhook.CodeBadSignature {
				t.Fatalf("a body with a real signature was refused as unauthorized: %q: %v", sig, err)
			}
			return
		}
		if !sign && !seedSignature(v, sig) {
			t.Fatalf("a fuzzed signature verified: %q", sig)
		}
		webhooktest.CheckFuzzEvent(t, domain.ProviderPersona, app.Name, body, ev, id)
		if !strings.HasPrefix(string(ev.ApplicantID), inquiryPrefix) {
			t.Fatalf("accepted inquiry id %q", ev.ApplicantID)
		}
		if ev.Raw == nil || ev.Raw.Signature != sig {
			t.Fatal("the signature kept is not the header")
		}
	})
}

// seedSignature reports whether sig holds a v1 one of the vectors carries: the only
// signatures that may verify without sign.
func seedSignature(v webhooktest.Vectors, sig string) bool {
	for _, c := range v.Cases {
		for _, set := range strings.Fields(c.Headers["Persona-Signature"]) {
			for _, pair := range strings.Split(set, ",") {
				if v1, ok := strings.CutPrefix(pair, "v1="); ok && len(v1) == 64 && strings.Contains(strings.ToLower(sig), v1) {
					return true
				}
			}
		}
	}
	return false
}
