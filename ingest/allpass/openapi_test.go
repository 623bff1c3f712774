package allpass

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

const (
	oaAppKey    = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	oaApplicant = domain.ApplicantID("0b6a3e4c-5d2f-4e1a-9c8b-7a6f5e4d3c2b")
	oaOther     = domain.ApplicantID("1c7b4f5d-6e30-4f2b-8d9c-8b7a6f5e4d3c")
	oaTime      = "2026-03-01T10:00:00.000Z"
)

func oaApp(t testing.TB, m Method) *App {
	t.Helper()
	var k Keys
	rand.Read(k.Secret[:])
	k.HMAC = make([]byte, 32)
	rand.Read(k.HMAC)
	return &App{Name: "main", AppKey: oaAppKey, Method: m, Keys: []Keys{k}}
}

func oaData(id domain.ApplicantID, status string, updatedAt any) []byte {
	m := map[string]any{"id": id, "status": status, "externalUserId": "user-1", "createdAt": "2026-02-01T00:00:00Z",
		"documents": []any{map[string]any{"type": "passport"}}}
	if updatedAt != nil {
		m["updatedAt"] = updatedAt
	}
	b, _ := json.Marshal(m)
	return b
}

func oaSealed(t testing.TB, a *App, data []byte) ([]byte, string) {
	t.Helper()
	body, sig, err := Seal(a.Method, a.Keys[0], data, oaTime, nil)
	if err != nil {
		t.Fatal(err)
	}
	return body, sig
}

func oaPlain(data []byte) []byte {
	return []byte(`{"status":true,"statusCode":200,"data":` + string(data) + `,"time":"` + oaTime + `"}`)
}

func TestParseOpenAPIResponseAccepts(t *testing.T) {
	for _, m := range []Method{MethodCBC, MethodGCM} {
		a := oaApp(t, m)
		data := oaData(oaApplicant, "in review", "2026-02-28T09:00:00.000Z")
		body, sig := oaSealed(t, a, data)
		got, err := a.ParseOpenAPIResponse(body, sig, oaApplicant)
		if err != nil {
			t.Fatalf("%s sealed: %v", m, err)
		}
		if got.Status != domain.StatusInReview || got.ID != oaApplicant || got.ExternalUserID != "user-1" ||
			!got.UpdatedAt.Equal(time.Date(2026, 2, 28, 9, 0, 0, 0, time.UTC)) || string(got.Data) != string(data) ||
			!got.Time.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("%s sealed: %+v", m, got)
		}
		// data as an object, no signature.
		if got, err := a.ParseOpenAPIResponse(oaPlain(data), "", oaApplicant); err != nil || got.Status != domain.StatusInReview {
			t.Errorf("%s object: %+v, %v", m, got, err)
		}
	}
	// CBC data without a signature header: decrypted, still checked.
	a := oaApp(t, MethodCBC)
	body, _ := oaSealed(t, a, oaData(oaApplicant, "APPROVED", 1772269200000))
	if got, err := a.ParseOpenAPIResponse(body, "", oaApplicant); err != nil || got.Status != domain.StatusApproved {
		t.Errorf("unsigned CBC: %+v, %v", got, err)
	}
	// An object with a CBC HMAC over the body.
	pb := oaPlain(oaData(oaApplicant, "on_hold", "2026-02-28T09:00:00Z"))
	mac := hmac.New(sha256.New, a.Keys[0].HMAC)
	mac.Write(pb)
	if got, err := a.ParseOpenAPIResponse(pb, hex.EncodeToString(mac.Sum(nil)), oaApplicant); err != nil || got.Status != domain.StatusOnHold {
		t.Errorf("signed object: %+v, %v", got, err)
	}
}

func TestParseStatusSpellings(t *testing.T) {
	for in, want := range map[string]domain.Status{
		"INIT": domain.StatusInit, "in progress": domain.StatusInProgress, "In_Review": domain.StatusInReview,
		" ON HOLD ": domain.StatusOnHold, "completed": domain.StatusCompleted, "Rejected": domain.StatusRejected,
	} {
		if got, ok := ParseStatus(in); !ok || got != want {
			t.Errorf("ParseStatus(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "NEW", "IN-REVIEW", "APPROVED!", "in  review"} {
		if got, ok := ParseStatus(in); ok {
			t.Errorf("ParseStatus(%q) = %q, want refused", in, got)
		}
	}
}

func TestParseOpenAPIResponseRefuses(t *testing.T) {
	cbc, gcm := oaApp(t, MethodCBC), oaApp(t, MethodGCM)
	good := oaData(oaApplicant, "APPROVED", "2026-02-28T09:00:00Z")
	body, sig := oaSealed(t, cbc, good)
	gbody, gsig := oaSealed(t, gcm, good)
	flip := func(s string) string { b, _ := hex.DecodeString(s); b[3] ^= 1; return hex.EncodeToString(b) }
	for _, c := range []struct {
		name string
		app  *App
		body []byte
		sig  string
		kind domain.ErrorKind
		code string
	}{
		{"html", cbc, []byte("<html><body>502 Bad Gateway</body></html>"), "", domain.KindInvalid, CodeMalformedResponse},
		{"empty", cbc, nil, "", domain.KindInvalid, CodeMalformedResponse},
		{"json array", cbc, []byte(`[{"data":{}}]`), "", domain.KindInvalid, CodeMalformedResponse},
		{"data missing", cbc, []byte(`{"status":true,"statusCode":200}`), "", domain.KindInvalid, CodeMalformedResponse},
		{"data a number", cbc, []byte(`{"status":true,"data":5}`), "", domain.KindInvalid, CodeMalformedResponse},
		{"wrong hmac", cbc, body, flip(sig), domain.KindUnauthorized, CodeBadSignature},
		{"wrong tag", gcm, gbody, flip(gsig), domain.KindUnauthorized, CodeBadSignature},
		{"gcm without tag", gcm, gbody, "", domain.KindUnauthorized, CodeBadSignature},
		{"other app's keys", oaApp(t, MethodCBC), body, "", domain.KindUnauthorized, CodeBadSignature},
		{"object with wrong hmac", cbc, oaPlain(good), flip(sig), domain.KindUnauthorized, CodeBadSignature},
		{"another applicant", cbc, oaPlain(oaData(oaOther, "APPROVED", "2026-02-28T09:00:00Z")), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"id missing", cbc, oaPlain([]byte(`{"status":"APPROVED","updatedAt":"2026-02-28T09:00:00Z"}`)), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"status unknown", cbc, oaPlain(oaData(oaApplicant, "PENDING", "2026-02-28T09:00:00Z")), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"status a number", cbc, oaPlain([]byte(`{"id":"` + string(oaApplicant) + `","status":7,"updatedAt":"2026-02-28T09:00:00Z"}`)), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"updatedAt missing", cbc, oaPlain(oaData(oaApplicant, "APPROVED", nil)), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"updatedAt malformed", cbc, oaPlain(oaData(oaApplicant, "APPROVED", "yesterday")), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"updatedAt a bool", cbc, oaPlain(oaData(oaApplicant, "APPROVED", true)), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"appKey of another app", cbc, oaPlain([]byte(`{"id":"` + string(oaApplicant) + `","appKey":"` + string(oaOther) + `","status":"APPROVED","updatedAt":"2026-02-28T09:00:00Z"}`)), "", domain.KindUnprocessable, CodeInvalidResponse},
		{"id twice", cbc, oaPlain([]byte(`{"id":"` + string(oaApplicant) + `","id":"` + string(oaOther) + `","status":"APPROVED","updatedAt":"2026-02-28T09:00:00Z"}`)), "", domain.KindInvalid, CodeMalformedResponse},
		{"envelope 404", cbc, []byte(`{"status":false,"statusCode":404,"data":null}`), "", domain.KindNotFound, CodeApplicantNotFound},
		{"envelope 500", cbc, []byte(`{"status":false,"statusCode":500,"data":null}`), "", domain.KindUnavailable, CodeOpenAPIRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.app.ParseOpenAPIResponse(c.body, c.sig, oaApplicant)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if domain.KindOf(err) != c.kind || domain.CodeOf(err) != c.code {
				t.Fatalf("kind %v code %q (%v), want %v %q", domain.KindOf(err), domain.CodeOf(err), err, c.kind, c.code)
			}
			if strings.Contains(err.Error(), "user-1") || strings.Contains(err.Error(), "html") {
				t.Fatalf("message echoes the body: %v", err)
			}
		})
	}
}

func TestReconciledEvent(t *testing.T) {
	a := oaApp(t, MethodCBC)
	body, sig := oaSealed(t, a, oaData(oaApplicant, "approved", "2026-02-28T09:00:00Z"))
	r, err := a.ParseOpenAPIResponse(body, sig, oaApplicant)
	if err != nil {
		t.Fatal(err)
	}
	fetched := time.Date(2026, 3, 1, 10, 0, 5, 0, time.UTC)
	ev, id := r.ReconciledEvent(a.AppKey, body, sig, fetched, true)
	if ev.Origin != domain.OriginOpenAPI || ev.Type != domain.EventApproved || ev.EventAtSource != domain.SourceOpenAPITime ||
		!ev.EventAt.Equal(r.Time) || !ev.ReceivedAt.Equal(fetched) || ev.Raw == nil || ev.Raw.Body != string(body) || ev.Raw.Signature != sig {
		t.Fatalf("event %+v", ev)
	}
	if id != ReconcileMsgID(a.AppKey, oaApplicant, domain.StatusApproved, r.UpdatedAt) || len(id) != 64 {
		t.Fatalf("msg id %q", id)
	}
	r.Time = time.Time{}
	if ev, _ := r.ReconciledEvent(a.AppKey, body, sig, fetched, false); !ev.EventAt.Equal(fetched) || ev.Raw != nil {
		t.Fatalf("without an envelope time: %+v", ev)
	}
	// The id changes with each of its four inputs.
	ids := map[string]bool{}
	for _, in := range []struct {
		app    domain.AppKey
		id     domain.ApplicantID
		status domain.Status
		at     time.Time
	}{
		{oaAppKey, oaApplicant, domain.StatusApproved, fetched},
		{domain.AppKey(oaOther), oaApplicant, domain.StatusApproved, fetched},
		{oaAppKey, oaOther, domain.StatusApproved, fetched},
		{oaAppKey, oaApplicant, domain.StatusRejected, fetched},
		{oaAppKey, oaApplicant, domain.StatusApproved, fetched.Add(time.Millisecond)},
	} {
		ids[ReconcileMsgID(in.app, in.id, in.status, in.at)] = true
	}
	if len(ids) != 5 {
		t.Fatalf("%d distinct ids of 5 inputs", len(ids))
	}
}

// FuzzOpenAPIResponse: no panic, a known kind and code for every refusal, a short
// message, and an accepted answer names the applicant asked for with a valid status.
func FuzzOpenAPIResponse(f *testing.F) {
	a := oaApp(f, MethodCBC)
	body, sig := oaSealed(f, a, oaData(oaApplicant, "IN PROGRESS", "2026-02-28T09:00:00Z"))
	f.Add(body, sig)
	f.Add(body, "")
	f.Add(oaPlain(oaData(oaApplicant, "approved", 1772269200)), "")
	f.Add([]byte(`{"status":false,"statusCode":404}`), "")
	f.Add([]byte(`<html></html>`), "")
	known := map[string]domain.ErrorKind{
		CodeMalformedResponse: domain.KindInvalid, CodeBadSignature: domain.KindUnauthorized,
		CodeInvalidResponse: domain.KindUnprocessable, CodeApplicantNotFound: domain.KindNotFound,
		CodeOpenAPIRefused: domain.KindUnavailable,
	}
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		got, err := a.ParseOpenAPIResponse(body, sig, oaApplicant)
		if err != nil {
			if k, ok := known[domain.CodeOf(err)]; !ok || k != domain.KindOf(err) {
				t.Fatalf("refusal of kind %v code %q: %v", domain.KindOf(err), domain.CodeOf(err), err)
			}
			if len(err.Error()) > 300 {
				t.Fatalf("refusal message of %d bytes may echo the body", len(err.Error()))
			}
			return
		}
		if got.ID != oaApplicant || !got.Status.Valid() || got.UpdatedAt.IsZero() || !json.Valid(got.Data) {
			t.Fatalf("accepted %+v", got)
		}
	})
}
