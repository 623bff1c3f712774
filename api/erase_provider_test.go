package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats.go/jetstream"
)

// appendProvider appends one webhook event of another provider's applicant to the real
// log (sealed under that applicant's data key) and returns it as stored.
func (f *headFixture) appendProvider(p domain.Provider, app domain.AppKey, id domain.ApplicantID, ext, typ, status string) domain.Event {
	f.t.Helper()
	now := time.Now().UTC()
	ev := domain.Event{Provider: string(p), Origin: domain.OriginWebhook, AppKey: app, ApplicantID: id,
		ExternalUserID: domain.ExternalUserID(ext), Type: domain.EventType(typ), ProviderStatus: status,
		EventAt: now, EventAtSource: domain.SourceReceived, ReceivedAt: now,
		Payload: json.RawMessage(`{"type":"` + typ + `"}`)}
	seq, _, err := f.events.Append(context.Background(), &ev, string(p)+"-"+string(app)+"-"+string(id)+"-"+typ)
	if err != nil {
		f.t.Fatal(err)
	}
	var stored domain.Event
	if err := json.Unmarshal(ev.Stored, &stored); err != nil {
		f.t.Fatal(err)
	}
	stored.Seq = seq
	return stored
}

func (f *headFixture) do(method, target, body string) *httptest.ResponseRecorder {
	f.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// keyMsgs counts the messages left on an applicant's key subject that are not its
// tombstone: the data key, until it is destroyed.
func (f *headFixture) keyMsgs(subject string) int {
	f.t.Helper()
	ctx := context.Background()
	st, err := f.srv.JS.Stream(ctx, eventlog.KeyStream)
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	for seq := uint64(1); ; {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n
		}
		if err != nil {
			f.t.Fatal(err)
		}
		seq = msg.Sequence + 1
		var m struct{ Kind string }
		if json.Unmarshal(msg.Data, &m) == nil && m.Kind != "erased" {
			n++
		}
	}
}

// A Sumsub applicant is erased through the API by its own id and ?provider=: its state
// says erased, its data key is gone, and a Persona applicant and an Allpass one of the
// same person (same externalUserId) keep theirs and stay readable.
func TestEraseOtherProvider(t *testing.T) {
	f := newHeadFixture(t)
	f.startProjector()
	ctx := context.Background()
	const ss, pa = domain.ApplicantID("ssApplicant1"), domain.ApplicantID("inq_person1")
	ssEv := f.appendProvider(domain.ProviderSumsub, "ss", ss, "person-1", "applicantCreated", "applicantCreated")
	f.appendProvider(domain.ProviderPersona, "pa", pa, "person-1", "inquiry.created", "inquiry.created")
	allpassID, last := f.webhook("person-1")
	f.proj.WaitFor(ctx, last)
	if n := f.keyMsgs("kyc.keys.sumsub.ss." + string(ss)); n != 1 {
		t.Fatalf("sumsub data key messages before erasure: %d, want 1", n)
	}

	// Bad ids and providers are refused before anything is erased.
	for target, want := range map[string]int{
		"/v1/applicants/" + string(ss) + "/erase?provider=nosuch":  http.StatusBadRequest,
		"/v1/applicants/" + string(ss) + "/erase?provider=allpass": http.StatusBadRequest,
		"/v1/applicants/a.b/erase":                                 http.StatusBadRequest,
		"/v1/applicants/" + string(ss) + "/erase?provider=persona": http.StatusNotFound,
		"/v1/applicants/unknownId/erase":                           http.StatusNotFound,
	} {
		rec := f.do(http.MethodPost, target, `{"reason":"test"}`)
		if rec.Code != want || !strings.Contains(rec.Body.String(), `"message"`) {
			t.Errorf("POST %s: %d %s, want %d with a message", target, rec.Code, rec.Body, want)
		}
	}

	rec := f.do(http.MethodPost, "/v1/applicants/"+string(ss)+"/erase?provider=sumsub", `{"reason":"the person asked"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("erase: %d %s", rec.Code, rec.Body)
	}
	var er struct {
		ApplicantID  string `json:"applicantId"`
		Erased       bool   `json:"erased"`
		Seq          uint64 `json:"seq"`
		KeyDestroyed bool   `json:"keyDestroyed"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.ApplicantID != string(ss) || !er.Erased || !er.KeyDestroyed || er.Seq <= last {
		t.Fatalf("erase answer: %s (%v)", rec.Body, err)
	}

	var st struct {
		Provider       string  `json:"provider"`
		AppKey         string  `json:"appKey"`
		Erased         bool    `json:"erased"`
		ExternalUserID *string `json:"externalUserId"`
	}
	rec = f.do(http.MethodGet, "/v1/applicants/"+string(ss)+"?provider=sumsub", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &st); rec.Code != http.StatusOK || err != nil || !st.Erased || st.ExternalUserID != nil || st.Provider != "sumsub" {
		t.Fatalf("sumsub state after erasure: %d %s", rec.Code, rec.Body)
	}
	if n := f.keyMsgs("kyc.keys.sumsub.ss." + string(ss)); n != 0 {
		t.Errorf("sumsub data key messages after erasure: %d, want 0", n)
	}
	if err := f.events.Keys().Open(ctx, &ssEv); !errors.Is(err, eventlog.ErrErased) {
		t.Errorf("opening the erased applicant's event: %v, want ErrErased", err)
	}

	// The erasure event names the provider and app.
	rec = f.do(http.MethodGet, "/v1/applicants/"+string(ss)+"/history?provider=sumsub", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"applicantErased"`) {
		t.Errorf("sumsub history: %d %s", rec.Code, rec.Body)
	}
	// The same person's other applicants keep their keys and personal data.
	for target, wantProvider := range map[string]string{
		"/v1/applicants/" + string(pa):        "persona",
		"/v1/applicants/" + string(allpassID): "allpass",
	} {
		st.ExternalUserID, st.Erased = nil, false
		rec = f.do(http.MethodGet, target, "")
		if err := json.Unmarshal(rec.Body.Bytes(), &st); rec.Code != http.StatusOK || err != nil || st.Erased ||
			st.ExternalUserID == nil || *st.ExternalUserID != "person-1" || st.Provider != wantProvider {
			t.Errorf("GET %s after the sumsub erasure: %d %s", target, rec.Code, rec.Body)
		}
	}
	if n := f.keyMsgs("kyc.keys.persona.pa." + string(pa)); n != 1 {
		t.Errorf("persona data key messages: %d, want 1", n)
	}

	// /reconcile resolves the same way: a Persona applicant named by ?provider= is
	// checked by its key (its app has no status API here: a 200 whose report says so);
	// an unknown provider is a 400, an id no provider holds a 404.
	rec = f.do(http.MethodPost, "/v1/applicants/"+string(pa)+"/reconcile?provider=persona&dryRun=true", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"applicantId":"`+string(pa)+`"`) ||
		!strings.Contains(rec.Body.String(), "no status API configured") {
		t.Errorf("reconcile persona: %d %s", rec.Code, rec.Body)
	}
	for target, want := range map[string]int{
		"/v1/applicants/" + string(pa) + "/reconcile?provider=nosuch": http.StatusBadRequest,
		"/v1/applicants/" + string(pa) + "/reconcile?provider=veriff": http.StatusNotFound,
		"/v1/applicants/a.b/reconcile":                                http.StatusBadRequest,
	} {
		if rec := f.do(http.MethodPost, target, ""); rec.Code != want {
			t.Errorf("POST %s: %d %s, want %d", target, rec.Code, rec.Body, want)
		}
	}
}
