package persona

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
)

// Answers of GET /api/v1/inquiries/{inquiry-id} in the documented JSON:API shape
// (docs.withpersona.com, "Retrieve an Inquiry"), with values made up here.
const (
	inquiryApproved = `{
  "data": {
    "type": "inquiry",
    "id": "inq_2CVZ4HyVg7qaboXz2PUHknAn",
    "attributes": {
      "status": "approved",
      "reference-id": "user-17",
      "note": null,
      "tags": [],
      "created-at": "2026-03-01T09:58:00.000Z",
      "started-at": "2026-03-01T09:58:30.000Z",
      "completed-at": "2026-03-01T10:00:00.000Z",
      "failed-at": null,
      "decisioned-at": "2026-03-01T10:00:01.000Z",
      "expired-at": null,
      "redacted-at": null,
      "updated-at": "2026-03-01T10:00:01.100Z",
      "fields": {"name-first": {"type": "string", "value": "Jane"}}
    },
    "relationships": {
      "template": {"data": {"type": "template", "id": "tmpl_JAZjHuAT738Q63BdgCuEJQre"}},
      "verifications": {"data": [{"type": "verification/selfie", "id": "ver_2aguhcwq66zcmqipmrqjxw68"}]}
    }
  },
  "included": [{"type": "template", "id": "tmpl_JAZjHuAT738Q63BdgCuEJQre", "attributes": {"name": "KYC"}}],
  "meta": {"session-token": "..."}
}`
	inquiryPendingCamel = `{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"pending","referenceId":null,"createdAt":"2026-03-01T09:58:00.000Z","startedAt":"2026-03-01T09:58:30.000Z"}}}`
	inquiryReviewSnake  = `{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"needs_review","reference_id":"user-17","created_at":"2026-03-01T09:58:00.000Z","completed_at":"2026-03-01T10:00:00.000Z"}}}`
)

func TestParseInquiry(t *testing.T) {
	const id domain.ApplicantID = "inq_2CVZ4HyVg7qaboXz2PUHknAn"
	for name, c := range map[string]struct {
		body string
		want InquiryStatus
	}{
		"approved": {inquiryApproved, InquiryStatus{"approved", "inquiry.approved", "APPROVED", webhooktest.MustTime(t, "2026-03-01T10:00:01.1Z"), "user-17"}},
		"pending":  {inquiryPendingCamel, InquiryStatus{"pending", "inquiry.started", "INCOMPLETE", webhooktest.MustTime(t, "2026-03-01T09:58:30Z"), ""}},
		"review":   {inquiryReviewSnake, InquiryStatus{"needs_review", "inquiry.marked-for-review", "IN_REVIEW", webhooktest.MustTime(t, "2026-03-01T10:00:00Z"), "user-17"}},
		"failed":   {strings.Replace(inquiryReviewSnake, "needs_review", "failed", 1), InquiryStatus{"failed", "inquiry.failed", "REJECTED", webhooktest.MustTime(t, "2026-03-01T10:00:00Z"), "user-17"}},
		"created":  {`{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"created"}}}`, InquiryStatus{"created", "inquiry.created", "INIT", webhooktest.MustTime(t, "0001-01-01T00:00:00Z"), ""}},
		"expired":  {strings.Replace(inquiryPendingCamel, `"pending"`, `"expired"`, 1), InquiryStatus{"expired", "inquiry.expired", "INCOMPLETE", webhooktest.MustTime(t, "2026-03-01T09:58:30Z"), ""}},
		"declined": {strings.Replace(inquiryApproved, `"approved"`, `"declined"`, 1), InquiryStatus{"declined", "inquiry.declined", "REJECTED", webhooktest.MustTime(t, "2026-03-01T10:00:01.1Z"), "user-17"}},
	} {
		got, err := ParseInquiry(id, []byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ProviderStatus != c.want.ProviderStatus || got.Type != c.want.Type || got.Status != c.want.Status ||
			!got.UpdatedAt.Equal(c.want.UpdatedAt) || got.ExternalUserID != c.want.ExternalUserID {
			t.Errorf("%s: %+v, want %+v", name, got, c.want)
		}
	}

	for name, c := range map[string]struct {
		body string
		kind domain.ErrorKind
		code string
	}{
		"another inquiry":    {strings.Replace(inquiryApproved, "inq_2CVZ4HyVg7qaboXz2PUHknAn", "inq_other", 1), domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"another object":     {`{"data":{"type":"account","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"approved"}}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"no data":            {`{"errors":[{"title":"Record not found"}]}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"no attributes":      {`{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn"}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"unknown status":     {strings.Replace(inquiryApproved, `"approved"`, `"archived"`, 1), domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"status not string":  {`{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":true}}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"list answer":        {`{"data":[` + inquiryPendingCamel + `]}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"not json":           {`<html>502</html>`, domain.KindInvalid, webhook.CodeMalformedPayload},
		"two statuses":       {`{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"approved","status":"declined"}}}`, domain.KindInvalid, webhook.CodeMalformedPayload},
		"two inflections":    {`{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"approved","reference-id":"a","reference_id":"b"}}}`, domain.KindInvalid, webhook.CodeMalformedPayload},
		"reference not text": {`{"data":{"type":"inquiry","id":"inq_2CVZ4HyVg7qaboXz2PUHknAn","attributes":{"status":"approved","reference-id":["a"]}}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
	} {
		_, err := ParseInquiry(id, []byte(c.body))
		if domain.KindOf(err) != c.kind || domain.CodeOf(err) != c.code {
			t.Errorf("%s: %v (kind %v, code %q), want kind %v code %q", name, err, domain.KindOf(err), domain.CodeOf(err), c.kind, c.code)
		}
	}
}

// TestStatusAgainstAFakePersona drives InquiryPath, InquiryRequestHeaders and
// ParseInquiry against an httptest server that answers as Persona does: 401 without the
// Bearer key, 404 for an inquiry it does not have, the inquiry otherwise.
func TestStatusAgainstAFakePersona(t *testing.T) {
	const key = "persona_sandbox_fake"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer "+key:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"title":"Must be authenticated to access this endpoint"}]}`)
		case r.URL.Path != "/api/v1/inquiries/inq_2CVZ4HyVg7qaboXz2PUHknAn":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":[{"title":"Record not found"}]}`)
		case r.Header.Get("Key-Inflection") != "kebab":
			io.WriteString(w, inquiryPendingCamel)
		default:
			io.WriteString(w, inquiryApproved)
		}
	}))
	defer srv.Close()
	get := func(apiKey string, id domain.ApplicantID) (int, []byte) {
		t.Helper()
		return webhooktest.Get(t, srv, InquiryPath(id), InquiryRequestHeaders(apiKey))
	}
	code, body := get(key, "inq_2CVZ4HyVg7qaboXz2PUHknAn")
	if code != http.StatusOK {
		t.Fatalf("fake Persona answered %d: %s", code, body)
	}
	st, err := ParseInquiry("inq_2CVZ4HyVg7qaboXz2PUHknAn", body)
	if err != nil || st.Status != domain.StatusApproved || st.ExternalUserID != "user-17" {
		t.Fatalf("%+v, %v", st, err)
	}
	if code, _ := get("wrong", "inq_2CVZ4HyVg7qaboXz2PUHknAn"); code != http.StatusUnauthorized {
		t.Fatalf("a request with the wrong key got %d", code)
	}
	if code, _ := get(key, "inq_unknown"); code != http.StatusNotFound {
		t.Fatalf("an unknown inquiry got %d", code)
	}
}
