package api

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// TestConsoleAnswersAsTheAPI: for the same error the console's page says what the API's
// answer says (status, code, message), and neither shows what the error carries for the
// logs only: a master key id, a parser's text. The key ring's error is the one it gives
// for a data key wrapped under an unknown master key (store/eventlog).
func TestConsoleAnswersAsTheAPI(t *testing.T) {
	var parseErr error
	if err := json.Unmarshal([]byte(`{"externalUserId": user-7f3a}`), new(any)); err != nil {
		parseErr = err
	} else {
		t.Fatal("the parser accepted a bare word")
	}
	const keyID = "6b1f0c9e2a7d"
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
		hidden []string // in the error's text, never in an answer
	}{
		{"key id in a conflict", domain.E("eventlog.Keyring", domain.KindConflict,
			"keys.master does not open the key ring: KYC_KEYS seq 7 is wrapped under master key id "+keyID),
			http.StatusConflict, client.CodeConflict, []string{keyID, "KYC_KEYS", "Keyring"}},
		{"parser text", domain.E("eventlog.Open", domain.KindInvalid, parseErr),
			http.StatusBadRequest, client.CodeInvalid, []string{"user-7f3a", "invalid character"}},
		{"key id in a 500", domain.E("eventlog.Keyring", domain.KindInternal, "KYC_KEYS seq 7 does not unwrap under master key id "+keyID),
			http.StatusInternalServerError, client.CodeInternal, []string{keyID}},
		{"a message for the caller", domain.WithPublic(domain.E("eventlog.Keyring", domain.KindUnavailable, "key id "+keyID),
			"", "the key ring cannot answer now; retry"), http.StatusServiceUnavailable, client.CodeUnavailable, []string{keyID}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, keys, _ := sealedFixture(t)
			keys.mu.Lock()
			keys.fail = c.err
			keys.mu.Unlock()

			rec := f.get(t, "/v1/applicants/"+string(idA), readerToken)
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != c.status || body.Error.Code != c.code {
				t.Fatalf("API: %d %s (%v), want %d %s", rec.Code, rec.Body, err, c.status, c.code)
			}

			req := httptest.NewRequest(http.MethodGet, "/console/applicants/"+string(idA), nil)
			req.AddCookie(consoleSignIn(t, f, readerToken))
			page := httptest.NewRecorder()
			f.h.ServeHTTP(page, req)
			m := regexp.MustCompile(`data-test="error" data-code="([^"]*)">([^<]*)<`).FindStringSubmatch(page.Body.String())
			if page.Code != c.status || m == nil || m[1] != body.Error.Code || html.UnescapeString(m[2]) != body.Error.Message {
				t.Fatalf("console: %d %q, want what the API answered: %d %q %q\n%s", page.Code, m, rec.Code, body.Error.Code, body.Error.Message, page.Body)
			}
			for _, h := range c.hidden {
				if strings.Contains(rec.Body.String(), h) || strings.Contains(page.Body.String(), h) {
					t.Errorf("%q reached an answer", h)
				}
			}
		})
	}
}
