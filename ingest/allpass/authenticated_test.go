package allpass

import (
	"errors"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// TestOpenSaysWhatAuthenticated: a refusal past the MAC or tag is an AuthenticatedError
// naming the app and the applicant when its id is valid, with the refusal's own kind and
// code; a refusal before it is not.
func TestOpenSaysWhatAuthenticated(t *testing.T) {
	const id = "ea0562d3-00f9-4fce-88c3-6bbae056eed6"
	for _, m := range []Method{MethodCBC, MethodGCM} {
		a := newTestApp(t, m)
		cases := []struct {
			name, plaintext string
			auth            bool
			applicant       domain.ApplicantID
			code            string
		}{
			{"type missing", `{"id":"` + id + `","appKey":"` + string(a.AppKey) + `"}`, true, id, CodeInvalidPayload},
			{"upper-case id, other app", `{"id":"EA0562D3-00F9-4FCE-88C3-6BBAE056EED6","appKey":"0b6c3c1e-58d4-4f61-9d7c-1f0e2d3c4b5a","type":"x"}`, true, id, CodeInvalidPayload},
			{"id invalid", `{"id":"a.b","appKey":"` + string(a.AppKey) + `","type":"x"}`, true, "", CodeInvalidPayload},
			{"plaintext not JSON", `not json`, true, "", CodeMalformedPlaintext},
		}
		for _, c := range cases {
			body, sig := mustSeal(t, a, c.plaintext, "2026-03-01T10:00:00Z")
			_, _, err := a.Open(body, sig, time.Now(), Options{})
			var ae *AuthenticatedError
			if !errors.As(err, &ae) || ae.AppKey != a.AppKey || ae.ApplicantID != c.applicant || domain.CodeOf(err) != c.code {
				t.Errorf("%s %s: %v (%+v), want authenticated, applicant %q, code %s", m, c.name, err, ae, c.applicant, c.code)
			}
		}
		body, _ := mustSeal(t, a, `{"id":"`+id+`"}`, "2026-03-01T10:00:00Z")
		_, _, err := a.Open(body, "00", time.Now(), Options{})
		if ae := (*AuthenticatedError)(nil); errors.As(err, &ae) || domain.CodeOf(err) != CodeBadSignature {
			t.Errorf("%s bad signature: %v", m, err)
		}
		_, _, err = a.Open([]byte("{"), "00", time.Now(), Options{})
		if ae := (*AuthenticatedError)(nil); errors.As(err, &ae) || domain.CodeOf(err) != CodeMalformedEnvelope {
			t.Errorf("%s malformed envelope: %v", m, err)
		}
	}
}
