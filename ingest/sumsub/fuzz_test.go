package sumsub

import (
	"bytes"
	"crypto/hmac"
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
// is accepted is a storable event: a subject-safe id, a printable type, the body as the
// payload. With sign set, the fuzzed body gets a real digest, so the parser sees
// hostile bodies past the signature; without it, the fuzzed digest and algorithm must
// never verify. Seeds are the vectors. Run with
//
//	go test ./ingest/sumsub -run '^$' -fuzz FuzzOpen -fuzztime 30s
func FuzzOpen(f *testing.F) {
	vf := loadVectors(f)
	for _, c := range vf.Cases {
		f.Add([]byte(c.Body), c.Headers["X-Payload-Digest"], c.Headers["X-Payload-Digest-Alg"], false)
		f.Add([]byte(c.Body), "", AlgSHA512, true)
	}
	app := vf.app()
	at := vf.receivedAt(f)
	f.Fuzz(func(t *testing.T, body []byte, digest, alg string, sign bool) {
		h := http.Header{}
		if sign {
			d := digestAlgs()[len(body)%3]
			m := hmacFor(d, app.Secrets[len(body)%2], body)
			h.Set(DigestHeader, m)
			h.Set(DigestAlgHeader, d.name)
		} else {
			h.Set(DigestHeader, digest)
			h.Set(DigestAlgHeader, alg)
		}
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
				t.Fatalf("a body with a real digest was refused as unauthorized: %v", err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("refusal of %d bytes may echo the body", len(err.Error()))
			}
			return
		}
		if !sign && !knownDigest(vf, digest) {
			t.Fatalf("a fuzzed digest verified: %q %q", digest, alg)
		}
		if !domain.IsSubjectToken(string(ev.ApplicantID)) || ev.Type == "" || len(ev.Type) > webhook.MaxName {
			t.Fatalf("accepted id %q type %q", ev.ApplicantID, ev.Type)
		}
		if webhook.CheckPrintable(string(ev.Type)) != nil || webhook.CheckPrintable(ev.ProviderStatus) != nil {
			t.Fatalf("accepted type %q status %q", ev.Type, ev.ProviderStatus)
		}
		if !bytes.Equal(ev.Payload, body) || ev.Raw == nil || ev.Raw.Body != string(body) {
			t.Fatal("the payload is not the body")
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

func hmacFor(d digestAlg, secret, body []byte) string {
	m := hmac.New(d.new, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// knownDigest reports whether digest is a vector's: the only digests that may verify
// without sign are the ones the seeds carry.
func knownDigest(vf vectorFile, digest string) bool {
	for _, c := range vf.Cases {
		if d := c.Headers["X-Payload-Digest"]; d != "" && strings.EqualFold(d, digest) {
			return true
		}
	}
	return false
}
