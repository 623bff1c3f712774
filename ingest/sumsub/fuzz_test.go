package sumsub

import (
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
)

// FuzzOpen asserts no panic, a known kind and code for every refusal, and that whatever
// is accepted is a storable event: a subject-safe id, a printable type, the body as the
// payload. With sign set, the fuzzed body gets a real digest, so the parser sees
// hostile bodies past the signature; without it, the fuzzed digest and algorithm must
// never verify. Seeds are the vectors. Run with
//
//	go test ./ingest/sumsub -run '^$' -fuzz FuzzOpen -fuzztime 30s
func FuzzOpen(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.Cases {
		body := webhooktest.Body(f, c)
		f.Add(body, c.Headers["X-Payload-Digest"], c.Headers["X-Payload-Digest-Alg"], false)
		f.Add(body, "", AlgSHA512, true)
	}
	app := testApp(v)
	f.Fuzz(func(t *testing.T, body []byte, digest, alg string, sign bool) {
		h := header(map[string]string{DigestHeader: digest, DigestAlgHeader: alg})
		if sign {
			d := digestAlgs()[len(body)%3]
			h.Set(DigestHeader, webhook.SumHex(d.new, app.Secrets[len(body)%2], body))
			h.Set(DigestAlgHeader, d.name)
		}
		ev, id, err := app.Open(body, h, v.At, Options{KeepRaw: true})
		if err != nil {
			if code := webhooktest.CheckFuzzRefusal(t, err); sign && code == webhook.CodeBadSignature {
				t.Fatalf("a body with a real digest was refused as unauthorized: %v", err)
			}
			return
		}
		if !sign && !knownDigest(v, digest) {
			t.Fatalf("a fuzzed digest verified: %q %q", digest, alg)
		}
		webhooktest.CheckFuzzEvent(t, domain.ProviderSumsub, app.Name, body, ev, id)
		if ev.Raw == nil {
			t.Fatal("KeepRaw kept nothing")
		}
	})
}

// knownDigest reports whether digest is a vector's: the only digests that may verify
// without sign are the ones the seeds carry.
func knownDigest(v webhooktest.Vectors, digest string) bool {
	for _, c := range v.Cases {
		if d := c.Headers["X-Payload-Digest"]; d != "" && strings.EqualFold(d, digest) {
			return true
		}
	}
	return false
}
