package sumsub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
)

// TestSignRequest checks App-Token signing against the documented signing string: the
// time, the method, the path with its query and the body, with nothing between them.
func TestSignRequest(t *testing.T) {
	secret := []byte("app-token-secret")
	ts := time.Unix(1607551635, 0)
	path := "/resources/accessTokens?userId=cfd20712-24a2-4c7d-9ab0-146f3c142335&levelName=basic-kyc-level&ttlInSecs=600"
	for _, c := range []struct {
		method, path, body, signed string
	}{
		{"POST", path, "", "1607551635POST" + path},
		{"GET", "/resources/applicants/65f1c2a9e4b0a1b2c3d4e5f6/one", "", "1607551635GET/resources/applicants/65f1c2a9e4b0a1b2c3d4e5f6/one"},
		{"POST", "/resources/applicants?levelName=basic-kyc-level", `{"externalUserId":"u1"}`,
			`1607551635POST/resources/applicants?levelName=basic-kyc-level{"externalUserId":"u1"}`},
	} {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(c.signed))
		h := SignRequest("sbx:token", secret, ts, c.method, c.path, []byte(c.body))
		if h[AppTokenHeader] != "sbx:token" || h[AccessTsHeader] != "1607551635" || h[AccessSigHeader] != hex.EncodeToString(m.Sum(nil)) {
			t.Errorf("%s %s: %v", c.method, c.path, h)
		}
	}
}

// Answers of GET /resources/applicants/{applicantId}/one in the documented shape
// (docs.sumsub.com/reference/get-applicant-data), with values made up here.
const (
	applicantGreen = `{
  "id": "65f1c2a9e4b0a1b2c3d4e5f6",
  "createdAt": "2026-03-01 09:58:01",
  "clientId": "acme",
  "inspectionId": "65f1c2a9e4b0a1b2c3d4e5f7",
  "externalUserId": "user-17",
  "info": {"firstName": "Jane", "idDocs": [{"idDocType": "PASSPORT", "country": "GBR"}]},
  "requiredIdDocs": {"docSets": [{"idDocSetType": "IDENTITY", "types": ["PASSPORT"]}]},
  "review": {
    "reviewId": "IUeLG", "attemptId": "wLjuf", "attemptCnt": 1, "elapsedSincePendingMs": 82,
    "levelName": "basic-kyc-level",
    "createDate": "2026-03-01 09:59:12+0000",
    "reviewDate": "2026-03-01 10:00:01+0000",
    "reviewResult": {"reviewAnswer": "GREEN"},
    "reviewStatus": "completed",
    "priority": 0
  },
  "type": "individual"
}`
	applicantRetry = `{
  "id": "65f1c2a9e4b0a1b2c3d4e5f6",
  "createdAt": "2026-03-01 09:58:01",
  "review": {
    "reviewId": "IUeLG", "attemptId": "XBasm", "attemptCnt": 2,
    "createDate": "2026-03-01 09:59:12+0000",
    "reviewDate": "2026-03-01 10:00:02+0000",
    "reviewResult": {
      "moderationComment": "Upload a sharper photo.",
      "reviewAnswer": "RED",
      "rejectLabels": ["BAD_PROOF_OF_IDENTITY"],
      "reviewRejectType": "RETRY",
      "buttonIds": ["badPhoto"]
    },
    "reviewStatus": "completed"
  }
}`
	applicantPending = `{
  "id": "65f1c2a9e4b0a1b2c3d4e5f6",
  "createdAt": "2026-03-01 09:58:01",
  "externalUserId": null,
  "review": {"createDate": "2026-03-01 09:58:01+0000", "startDate": "2026-03-01 09:59:12+0000",
             "reviewStatus": "queued", "elapsedSinceQueuedMs": 10}
}`
	applicantInit = `{"id":"65f1c2a9e4b0a1b2c3d4e5f6","createdAt":"2026-03-01 09:58:01","review":{"reviewStatus":"init"}}`
	applicantHold = `{"id":"65f1c2a9e4b0a1b2c3d4e5f6","review":{"reviewStatus":"onHold","createDate":"2026-03-01 10:00:03+0000"}}`
)

func TestParseApplicant(t *testing.T) {
	const id domain.ApplicantID = "65f1c2a9e4b0a1b2c3d4e5f6"
	at := func(s string) time.Time { return webhooktest.MustTime(t, s) }
	for name, c := range map[string]struct {
		body string
		want ApplicantStatus
	}{
		"green":   {applicantGreen, ApplicantStatus{"GREEN", "applicantReviewed", "APPROVED", at("2026-03-01T10:00:01Z"), "user-17"}},
		"retry":   {applicantRetry, ApplicantStatus{"RED+RETRY", "applicantReviewed", "INCOMPLETE", at("2026-03-01T10:00:02Z"), ""}},
		"final":   {strings.Replace(applicantRetry, `"RETRY"`, `"FINAL"`, 1), ApplicantStatus{"RED+FINAL", "applicantReviewed", "REJECTED", at("2026-03-01T10:00:02Z"), ""}},
		"queued":  {applicantPending, ApplicantStatus{"queued", "applicantPending", "IN_PROGRESS", at("2026-03-01T09:59:12Z"), ""}},
		"pending": {strings.Replace(applicantPending, `"queued"`, `"pending"`, 1), ApplicantStatus{"pending", "applicantPending", "IN_PROGRESS", at("2026-03-01T09:59:12Z"), ""}},
		"init":    {applicantInit, ApplicantStatus{"init", "applicantCreated", "INIT", at("2026-03-01T09:58:01Z"), ""}},
		"on hold": {applicantHold, ApplicantStatus{"onHold", "applicantOnHold", "ON_HOLD", at("2026-03-01T10:00:03Z"), ""}},
	} {
		got, err := ParseApplicant(id, []byte(c.body))
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
		"another applicant":   {strings.Replace(applicantGreen, `"65f1c2a9e4b0a1b2c3d4e5f6"`, `"65f1c2a9e4b0a1b2c3d4e5f9"`, 1), domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"no id":               {`{"review":{"reviewStatus":"init"}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"no review":           {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6"}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"review not object":   {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6","review":"completed"}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"unknown status":      {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6","review":{"reviewStatus":"archived"}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"completed no answer": {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6","review":{"reviewStatus":"completed"}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"red no reject type":  {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6","review":{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED"}}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"list answer":         {`{"list":{"items":[` + applicantGreen + `],"totalItems":1}}`, domain.KindUnprocessable, webhook.CodeInvalidPayload},
		"not json":            {`<html>502</html>`, domain.KindInvalid, webhook.CodeMalformedPayload},
		"two ids":             {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6","id":"x","review":{"reviewStatus":"init"}}`, domain.KindInvalid, webhook.CodeMalformedPayload},
		"two statuses":        {`{"id":"65f1c2a9e4b0a1b2c3d4e5f6","review":{"reviewStatus":"init","reviewStatus":"completed"}}`, domain.KindInvalid, webhook.CodeMalformedPayload},
	} {
		_, err := ParseApplicant(id, []byte(c.body))
		if domain.KindOf(err) != c.kind || domain.CodeOf(err) != c.code {
			t.Errorf("%s: %v (kind %v, code %q), want kind %v code %q", name, err, domain.KindOf(err), domain.CodeOf(err), c.kind, c.code)
		}
	}
}

// TestStatusAgainstAFakeSumsub drives SignRequest and ParseApplicant against an httptest
// server that checks the App-Token signature as Sumsub does: the token, a time within a
// minute, and the HMAC of what it received.
func TestStatusAgainstAFakeSumsub(t *testing.T) {
	const token = "sbx:fake-token"
	secret := []byte("fake-secret")
	now := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, err := strconv.ParseInt(r.Header.Get("X-App-Access-Ts"), 10, 64)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(r.Header.Get("X-App-Access-Ts") + r.Method + r.URL.RequestURI()))
		m.Write(body)
		sig, _ := hex.DecodeString(r.Header.Get("X-App-Access-Sig"))
		if r.Header.Get("X-App-Token") != token || err != nil || now.Sub(time.Unix(ts, 0)).Abs() > time.Minute || !hmac.Equal(sig, m.Sum(nil)) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"description":"Invalid signature","code":401}`)
			return
		}
		if r.URL.Path != "/resources/applicants/65f1c2a9e4b0a1b2c3d4e5f6/one" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		io.WriteString(w, applicantGreen)
	}))
	defer srv.Close()

	get := func(sec []byte, id domain.ApplicantID) (int, []byte) {
		t.Helper()
		path := ApplicantPath(id)
		return webhooktest.Get(t, srv, path, SignRequest(token, sec, now, http.MethodGet, path, nil))
	}
	code, body := get(secret, "65f1c2a9e4b0a1b2c3d4e5f6")
	if code != http.StatusOK {
		t.Fatalf("fake Sumsub answered %d: %s", code, body)
	}
	st, err := ParseApplicant("65f1c2a9e4b0a1b2c3d4e5f6", body)
	if err != nil || st.Status != domain.StatusApproved || st.ExternalUserID != "user-17" {
		t.Fatalf("%+v, %v", st, err)
	}
	if code, _ := get([]byte("wrong"), "65f1c2a9e4b0a1b2c3d4e5f6"); code != http.StatusUnauthorized {
		t.Fatalf("a request signed with the wrong secret got %d", code)
	}
}
