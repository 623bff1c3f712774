package veriff

import (
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/ingest/webhook/webhooktest"
)

// decisionAnswer is an answer of GET /v1/sessions/{id}/decision in the shape Veriff
// documents (https://devdocs.veriff.com/apidocs/v1sessionsiddecision-1): the decision
// webhook's, values ours.
const decisionAnswer = `{
  "status": "success",
  "verification": {
    "id": "f04bdb47-d3be-4b28-b028-a652feb060b5",
    "attemptId": "e30122d1-740b-4764-853f-470374a7abf4",
    "code": 9102,
    "status": "declined",
    "reason": "Physical document not used",
    "reasonCode": 102,
    "vendorData": "user-4711",
    "endUserId": null,
    "decisionTime": "2026-03-01T09:58:31.916108Z",
    "acceptanceTime": "2026-03-01T09:40:12.000Z",
    "person": {"firstName": "JANE", "lastName": "ROE", "dateOfBirth": "1990-02-03"},
    "document": {"type": "PASSPORT", "country": "EE", "number": null},
    "comments": [],
    "additionalVerifiedData": {}
  },
  "technicalData": {"ip": "192.0.2.10"}
}`

// noDecisionYet is the answer while the session is submitted and no decision is ready.
const noDecisionYet = `{"status":"success","verification":null,"technicalData":{"ip":null}}`

func TestParseDecision(t *testing.T) {
	d, err := ParseDecision(testSession, []byte(decisionAnswer))
	if err != nil {
		t.Fatal(err)
	}
	want := Decision{Ready: true, SessionID: testSession, Type: "decision", ProviderStatus: "declined",
		Class: domain.ClassStatus, Status: domain.StatusRejected,
		UpdatedAt: time.Date(2026, 3, 1, 9, 58, 31, 916108000, time.UTC), ExternalUserID: "user-4711"}
	if d != want {
		t.Fatalf("decision %+v\nwant %+v", d, want)
	}

	d, err = ParseDecision(testSession, []byte(noDecisionYet))
	if err != nil || d.Ready || d != (Decision{}) {
		t.Fatalf("no decision yet: %+v, %v", d, err)
	}

	review := strings.Replace(decisionAnswer, `"declined"`, `"review"`, 1)
	if d, err := ParseDecision(testSession, []byte(review)); err != nil || d.Status != domain.StatusInReview || d.Class != domain.ClassStatus {
		t.Fatalf("review: %+v, %v", d, err)
	}
	newStatus := strings.Replace(decisionAnswer, `"declined"`, `"escalated"`, 1)
	if d, err := ParseDecision(testSession, []byte(newStatus)); err != nil || d.Class != domain.ClassUnknown || d.Status != domain.StatusNone || d.ProviderStatus != "escalated" {
		t.Fatalf("a status Veriff may add: %+v, %v", d, err)
	}
	noTime := strings.Replace(decisionAnswer, `"2026-03-01T09:58:31.916108Z"`, `null`, 1)
	if d, err := ParseDecision(testSession, []byte(noTime)); err != nil || !d.UpdatedAt.IsZero() {
		t.Fatalf("no decisionTime: %+v, %v", d, err)
	}

	for name, c := range map[string]struct {
		id   domain.ApplicantID
		body string
		code string
	}{
		"another session":         {"a1c68aea-7f4d-478d-80ab-ca9356074f69", decisionAnswer, webhook.CodeInvalidPayload},
		"an error answer":         {testSession, `{"status":"fail","code":"1102","message":"Mandatory X-AUTH-CLIENT header containing the API key is missing from the request."}`, webhook.CodeInvalidPayload},
		"no verification":         {testSession, `{"status":"success"}`, webhook.CodeInvalidPayload},
		"verification not object": {testSession, `{"status":"success","verification":"approved"}`, webhook.CodeInvalidPayload},
		"no status":               {testSession, `{"status":"success","verification":{"id":"` + string(testSession) + `"}}`, webhook.CodeInvalidPayload},
		"truncated":               {testSession, decisionAnswer[:200], webhook.CodeMalformedPayload},
		"verification twice":      {testSession, `{"status":"success","verification":null,"verification":{}}`, webhook.CodeMalformedPayload},
		"status twice":            {testSession, `{"status":"fail","status":"success","verification":null}`, webhook.CodeMalformedPayload},
	} {
		_, err := ParseDecision(c.id, []byte(c.body))
		if domain.CodeOf(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
		if err != nil && (strings.Contains(err.Error(), "user-4711") || strings.Contains(err.Error(), "X-AUTH-CLIENT header")) {
			t.Errorf("%s: message echoes the answer: %v", name, err)
		}
	}
}

func TestDecisionRequest(t *testing.T) {
	a := testApp()
	path, h, err := a.DecisionRequest(testSession)
	if err != nil {
		t.Fatal(err)
	}
	if path != "/v1/sessions/f04bdb47-d3be-4b28-b028-a652feb060b5/decision" {
		t.Fatalf("path %s", path)
	}
	if h[HeaderAuthClient] != a.APIKey || h[HeaderSignature] != SignSessionID([]byte("secret-now"), testSession) || len(h) != 2 {
		t.Fatalf("headers %v", h)
	}
	if _, _, err := a.DecisionRequest("a/../b"); domain.CodeOf(err) != webhook.CodeInvalidPayload || domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("an id that is no subject token: %v", err)
	}
	a.APIKey = ""
	if _, _, err := a.DecisionRequest(testSession); domain.KindOf(err) != domain.KindInternal {
		t.Fatalf("an invalid app: %v", err)
	}
}

// TestSignSessionIDMatchesVectors holds the status API's signature to the generator's.
func TestSignSessionIDMatchesVectors(t *testing.T) {
	for _, g := range loadVectors(t).GetSignatures {
		if got := SignSessionID([]byte(g.Secret), domain.ApplicantID(g.SessionID)); got != g.Signature {
			t.Errorf("SignSessionID(%s) = %s, want %s", g.SessionID, got, g.Signature)
		}
	}
}

// FuzzParseDecision reads status API answers for one session.
func FuzzParseDecision(f *testing.F) {
	f.Add([]byte(decisionAnswer))
	f.Add([]byte(noDecisionYet))
	for _, c := range loadVectors(f).Cases {
		f.Add(webhooktest.Body(f, c))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseDecision(testSession, body)
		if err != nil {
			if webhooktest.CheckFuzzRefusal(t, err) == webhook.CodeBadSignature {
				t.Fatalf("an answer refused as unauthorized: %v", err)
			}
			return
		}
		if !d.Ready {
			if d != (Decision{}) {
				t.Fatalf("not ready but %+v", d)
			}
			return
		}
		class, status := domain.ProviderVeriff.Classify(d.Type, d.ProviderStatus)
		if d.SessionID != testSession || (d.ProviderStatus == "" || webhook.CheckPrintable(d.ProviderStatus) != nil) || class != d.Class || status != d.Status {
			t.Fatalf("decision %+v", d)
		}
	})
}
