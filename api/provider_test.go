package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// The read side of DESIGN.md section 13 on a real projection holding Allpass's and other
// providers' applicants: provider and providerStatus on every state, history event and
// change; ?provider=; a lookup by externalUserId across providers; point-in-time for
// every provider; an erasure of one provider's applicant leaves the other's readable.

const (
	pAllpassID = domain.ApplicantID("6a1b2c3d-4e5f-4a6b-8c7d-0123456789ab") // Allpass: person-1; a Veriff session shares its id
	pSumsubID  = domain.ApplicantID("5cb56e8e0a975a35f333cb83")             // Sumsub: person-1
	pSharedID  = domain.ApplicantID("7d2e3f40-5a6b-4c7d-9e8f-abcdefabcdef") // a Veriff session and an Onfido run
	pApp       = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
)

// pev is one stored event of the mixed log.
type pev struct {
	provider domain.Provider
	app      domain.AppKey
	id       domain.ApplicantID
	ext      domain.ExternalUserID
	typ      domain.EventType
	status   string // providerStatus
	at       time.Duration
	origin   domain.Origin
}

func providerEvents(tb testing.TB, first uint64, evs []pev) []domain.Event {
	tb.Helper()
	out := make([]domain.Event, len(evs))
	for i, p := range evs {
		src := domain.SourcePayloadUpdatedAt
		if p.provider != domain.ProviderAllpass {
			src = "payload.createdAtMs"
		}
		if p.origin == domain.OriginOperator {
			src = domain.SourceReceived
		}
		ev := domain.Event{V: domain.StoredVersionClear, Provider: string(p.provider), Origin: p.origin, AppKey: p.app,
			ApplicantID: p.id, ExternalUserID: p.ext, Type: p.typ, ProviderStatus: p.status,
			EventAt: base.Add(p.at), EventAtSource: src, ReceivedAt: base.Add(p.at + time.Second),
			Payload: mustJSON(tb, map[string]any{"type": p.typ}), Seq: first + uint64(i)}
		var err error
		if ev.Stored, err = json.Marshal(ev); err != nil {
			tb.Fatal(err)
		}
		out[i] = ev
	}
	return out
}

func mixedLog() []pev {
	m := time.Minute
	ap, ss, ve, on := domain.ProviderAllpass, domain.ProviderSumsub, domain.ProviderVeriff, domain.ProviderOnfido
	return []pev{
		{provider: ap, app: pApp, id: pAllpassID, ext: "person-1", typ: domain.EventCreated, at: 0},                      // 1
		{provider: ss, app: "ss", id: pSumsubID, ext: "person-1", typ: "applicantCreated", status: "init", at: 1 * m},    // 2
		{provider: ss, app: "ss", id: pSumsubID, ext: "person-1", typ: "applicantPending", status: "pending", at: 2 * m}, // 3
		{provider: ap, app: pApp, id: pAllpassID, ext: "person-1", typ: domain.EventInProgress, at: 3 * m},               // 4
		{provider: ss, app: "ss", id: pSumsubID, ext: "person-1", typ: "applicantReviewed", status: "GREEN", at: 4 * m},  // 5
		{provider: ve, app: "ve", id: pSharedID, ext: "person-2", typ: "started", status: "started", at: 5 * m},          // 6
		{provider: on, app: "on", id: pSharedID, typ: "workflow_run.completed", status: "approved", at: 6 * m},           // 7
		{provider: ve, app: "ve", id: pAllpassID, ext: "person-3", typ: "submitted", status: "submitted", at: 7 * m},     // 8
		{provider: ap, app: pApp, id: pAllpassID, ext: "person-1", typ: domain.EventApproved, at: 8 * m},                 // 9
	}
}

func newMixedFixture(t *testing.T) *fixture {
	t.Helper()
	return buildFixture(t, providerEvents(t, 1, mixedLog()), nil)
}

// getJSON serves target, checks its status and its answer against openapi.yaml, and
// decodes the body into v (when not nil).
func (f *fixture) getJSON(t *testing.T, doc *apiDoc, target, token string, status int, v any) {
	t.Helper()
	rec := f.get(t, target, token)
	if rec.Code != status {
		t.Fatalf("GET %s: %d, want %d: %s", target, rec.Code, status, rec.Body)
	}
	doc.check(t, target, rec)
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
	}
}

type stateBody struct {
	ApplicantID    string  `json:"applicantId"`
	AppKey         string  `json:"appKey"`
	Provider       string  `json:"provider"`
	ProviderStatus *string `json:"providerStatus"`
	Status         *string `json:"status"`
	ExternalUserID *string `json:"externalUserId"`
	Erased         bool    `json:"erased"`
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

func TestProviderStates(t *testing.T) {
	doc := loadSpec(t)
	f := newMixedFixture(t)
	cases := []struct {
		target                             string
		provider, app, status, providerSts string
	}{
		{"/v1/applicants/" + string(pSumsubID), "sumsub", "ss", "APPROVED", "GREEN"},
		{"/v1/applicants/" + string(pSumsubID) + "?provider=sumsub", "sumsub", "ss", "APPROVED", "GREEN"},
		// Allpass stays the default: the id a Veriff session shares answers Allpass's...
		{"/v1/applicants/" + string(pAllpassID), "allpass", string(pApp), "APPROVED", "<null>"},
		{"/v1/applicants/" + string(pAllpassID) + "?provider=allpass", "allpass", string(pApp), "APPROVED", "<null>"},
		// ...and ?provider= reaches the other.
		{"/v1/applicants/" + string(pAllpassID) + "?provider=veriff", "veriff", "ve", "IN_PROGRESS", "submitted"},
		{"/v1/applicants/" + string(pSharedID) + "?provider=veriff", "veriff", "ve", "INCOMPLETE", "started"},
		{"/v1/applicants/" + string(pSharedID) + "?provider=onfido", "onfido", "on", "APPROVED", "approved"},
	}
	for _, c := range cases {
		var st stateBody
		f.getJSON(t, doc, c.target, readerToken, http.StatusOK, &st)
		if st.Provider != c.provider || st.AppKey != c.app || deref(st.Status) != c.status || deref(st.ProviderStatus) != c.providerSts {
			t.Errorf("%s: provider %s app %s status %s providerStatus %s; want %s %s %s %s", c.target,
				st.Provider, st.AppKey, deref(st.Status), deref(st.ProviderStatus), c.provider, c.app, c.status, c.providerSts)
		}
	}

	// Two providers hold pSharedID and neither is Allpass: no guess, a 409 naming both.
	for _, target := range []string{"/v1/applicants/" + string(pSharedID), "/v1/applicants/" + string(pSharedID) + "/history"} {
		rec := f.get(t, target, auditorToken)
		if rec.Code != http.StatusConflict {
			t.Fatalf("%s: %d, want 409: %s", target, rec.Code, rec.Body)
		}
		doc.check(t, target, rec)
		checkErrorBody(t, rec, "ambiguous_applicant", "id:")
		for _, name := range []string{"veriff (app ve)", "onfido (app on)"} {
			if !strings.Contains(rec.Body.String(), name) {
				t.Errorf("%s: the 409 does not name %s: %s", target, name, rec.Body)
			}
		}
	}
	for target, code := range map[string]int{
		"/v1/applicants/" + string(pSumsubID) + "?provider=persona": http.StatusNotFound,
		"/v1/applicants/" + string(pSumsubID) + "?provider=allpass": http.StatusBadRequest,
		"/v1/applicants/" + string(pSumsubID) + "?provider=SUMSUB":  http.StatusBadRequest,
		"/v1/applicants/" + string(pSharedID) + "?provider=sumsub":  http.StatusNotFound,
	} {
		f.getJSON(t, doc, target, readerToken, code, nil)
	}
}

func TestProviderHistoryAndPointInTime(t *testing.T) {
	doc := loadSpec(t)
	f := newMixedFixture(t)
	var h struct {
		ApplicantID string `json:"applicantId"`
		Provider    string `json:"provider"`
		Events      []struct {
			Seq            uint64  `json:"seq"`
			Provider       string  `json:"provider"`
			Type           string  `json:"type"`
			ProviderStatus *string `json:"providerStatus"`
			Outcome        string  `json:"outcome"`
			To             *string `json:"to"`
		} `json:"events"`
	}
	f.getJSON(t, doc, "/v1/applicants/"+string(pSumsubID)+"/history", auditorToken, http.StatusOK, &h)
	if h.ApplicantID != string(pSumsubID) || h.Provider != "sumsub" || len(h.Events) != 3 {
		t.Fatalf("history: %+v", h)
	}
	want := []struct {
		seq                  uint64
		typ, ps, outcome, to string
	}{
		{2, "applicantCreated", "init", "applied", "INIT"},
		{3, "applicantPending", "pending", "applied", "IN_PROGRESS"},
		{5, "applicantReviewed", "GREEN", "applied", "APPROVED"},
	}
	for i, w := range want {
		e := h.Events[i]
		if e.Seq != w.seq || e.Provider != "sumsub" || e.Type != w.typ || deref(e.ProviderStatus) != w.ps || e.Outcome != w.outcome || deref(e.To) != w.to {
			t.Errorf("event %d: %+v (providerStatus %s, to %s), want %+v", i, e, deref(e.ProviderStatus), deref(e.To), w)
		}
	}
	// An Allpass event states no providerStatus.
	var ah struct {
		Events []struct {
			Provider       string  `json:"provider"`
			ProviderStatus *string `json:"providerStatus"`
		} `json:"events"`
	}
	f.getJSON(t, doc, "/v1/applicants/"+string(pAllpassID)+"/history?provider=allpass", auditorToken, http.StatusOK, &ah)
	if len(ah.Events) != 3 || ah.Events[0].Provider != "allpass" || ah.Events[0].ProviderStatus != nil {
		t.Errorf("allpass history: %+v", ah)
	}

	// Point in time, for another provider's applicant: by sequence and by time.
	for target, want := range map[string][2]string{
		"/v1/applicants/" + string(pSumsubID) + "?seq=3":                                               {"IN_PROGRESS", "pending"},
		"/v1/applicants/" + string(pSumsubID) + "?seq=4&provider=sumsub":                               {"IN_PROGRESS", "pending"},
		"/v1/applicants/" + string(pSumsubID) + "?at=" + base.Add(90*time.Second).Format(time.RFC3339): {"INIT", "init"},
		"/v1/applicants/" + string(pAllpassID) + "?seq=8&provider=veriff":                              {"IN_PROGRESS", "submitted"},
		"/v1/applicants/" + string(pAllpassID) + "?seq=8":                                              {"IN_PROGRESS", "<null>"},
	} {
		var st stateBody
		f.getJSON(t, doc, target, auditorToken, http.StatusOK, &st)
		if deref(st.Status) != want[0] || deref(st.ProviderStatus) != want[1] {
			t.Errorf("%s: status %s providerStatus %s, want %v", target, deref(st.Status), deref(st.ProviderStatus), want)
		}
	}
	f.getJSON(t, doc, "/v1/applicants/"+string(pSumsubID)+"?seq=1", auditorToken, http.StatusNotFound, nil)
}

func TestProviderChanges(t *testing.T) {
	doc := loadSpec(t)
	f := newMixedFixture(t)
	var ch struct {
		Changes []struct {
			Seq         uint64 `json:"seq"`
			ApplicantID string `json:"applicantId"`
			AppKey      string `json:"appKey"`
			Provider    string `json:"provider"`
			To          string `json:"to"`
		} `json:"changes"`
	}
	f.getJSON(t, doc, "/v1/changes", readerToken, http.StatusOK, &ch)
	var got []string
	for _, c := range ch.Changes {
		got = append(got, c.Provider+" "+c.AppKey+" "+c.ApplicantID+" "+c.To)
	}
	want := []string{
		"allpass " + string(pApp) + " " + string(pAllpassID) + " INIT",
		"sumsub ss " + string(pSumsubID) + " INIT",
		"sumsub ss " + string(pSumsubID) + " IN_PROGRESS",
		"allpass " + string(pApp) + " " + string(pAllpassID) + " IN_PROGRESS",
		"sumsub ss " + string(pSumsubID) + " APPROVED",
		"veriff ve " + string(pSharedID) + " INCOMPLETE",
		"onfido on " + string(pSharedID) + " APPROVED",
		"veriff ve " + string(pAllpassID) + " IN_PROGRESS",
		"allpass " + string(pApp) + " " + string(pAllpassID) + " APPROVED",
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n got %q\nwant %q", got, want)
	}
}

// One externalUserId verified by Allpass and Sumsub (issue 23): the lookup finds both,
// each with its provider; erasing one leaves the other readable and findable.
func TestOnePersonTwoProviders(t *testing.T) {
	doc := loadSpec(t)
	f := newMixedFixture(t)
	lookup := func() []stateBody {
		t.Helper()
		var a struct {
			Applicants []stateBody `json:"applicants"`
		}
		f.getJSON(t, doc, "/v1/applicants?externalUserId=person-1", readerToken, http.StatusOK, &a)
		return a.Applicants
	}
	got := lookup()
	if len(got) != 2 {
		t.Fatalf("lookup: %d applicants, want 2: %+v", len(got), got)
	}
	byProvider := map[string]stateBody{}
	for _, st := range got {
		byProvider[st.Provider] = st
	}
	if a := byProvider["allpass"]; a.ApplicantID != string(pAllpassID) || deref(a.Status) != "APPROVED" || deref(a.ExternalUserID) != "person-1" {
		t.Errorf("allpass applicant: %+v", a)
	}
	if s := byProvider["sumsub"]; s.ApplicantID != string(pSumsubID) || s.AppKey != "ss" || deref(s.Status) != "APPROVED" ||
		deref(s.ProviderStatus) != "GREEN" || deref(s.ExternalUserID) != "person-1" {
		t.Errorf("sumsub applicant: %+v", s)
	}
	// Narrowed to the Sumsub app by its name.
	var one struct {
		Applicants []stateBody `json:"applicants"`
	}
	f.getJSON(t, doc, "/v1/applicants?externalUserId=person-1&appKey=ss", readerToken, http.StatusOK, &one)
	if len(one.Applicants) != 1 || one.Applicants[0].Provider != "sumsub" {
		t.Errorf("lookup in app ss: %+v", one.Applicants)
	}

	// Erase the Allpass applicant (the operator's event, as erase appends it).
	f.stored = append(f.stored, providerEvents(t, uint64(len(f.stored))+1, []pev{
		{provider: domain.ProviderAllpass, app: pApp, id: pAllpassID, typ: domain.EventErased, origin: domain.OriginOperator, at: 9 * time.Minute},
	})...)
	if _, err := f.proj.Apply(f.stored[len(f.stored)-1:], f.folder); err != nil {
		t.Fatal(err)
	}
	got = lookup()
	if len(got) != 1 || got[0].Provider != "sumsub" || got[0].ApplicantID != string(pSumsubID) {
		t.Fatalf("lookup after erasing the Allpass applicant: %+v", got)
	}
	var st stateBody
	f.getJSON(t, doc, "/v1/applicants/"+string(pSumsubID)+"?provider=sumsub", readerToken, http.StatusOK, &st)
	if st.Erased || deref(st.ExternalUserID) != "person-1" || deref(st.Status) != "APPROVED" {
		t.Errorf("sumsub applicant after the other's erasure: %+v", st)
	}
	f.getJSON(t, doc, "/v1/applicants/"+string(pAllpassID), readerToken, http.StatusOK, &st)
	if !st.Erased || st.ExternalUserID != nil || st.Provider != "allpass" || deref(st.Status) != "APPROVED" {
		t.Errorf("erased allpass applicant: %+v", st)
	}
}

// The Go client names the provider and reads provider and providerStatus back, and an
// ambiguous id is its own code.
func TestClientProviders(t *testing.T) {
	f := newMixedFixture(t)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	ctx := t.Context()
	c, err := client.New(srv.URL, auditorToken)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := c.State(ctx, pAllpassID, client.StateQuery{Provider: domain.ProviderVeriff})
	if err != nil || st.Provider != domain.ProviderVeriff || st.AppKey != "ve" || deref(st.ProviderStatus) != "submitted" {
		t.Errorf("State(veriff): %+v, %v", st, err)
	}
	st, _, err = c.State(ctx, pAllpassID, client.StateQuery{})
	if err != nil || st.Provider != domain.ProviderAllpass || st.ProviderStatus != nil {
		t.Errorf("State(default): %+v, %v", st, err)
	}
	st, _, err = c.State(ctx, pSumsubID, client.StateQuery{Seq: 3, Provider: domain.ProviderSumsub})
	if err != nil || deref(st.Status) != "IN_PROGRESS" || deref(st.ProviderStatus) != "pending" {
		t.Errorf("State(sumsub, seq 3): %+v, %v", st, err)
	}
	h, _, err := c.ProviderHistory(ctx, domain.ProviderOnfido, pSharedID, 0, 0)
	if err != nil || h.Provider != domain.ProviderOnfido || len(h.Events) != 1 || h.Events[0].Provider != domain.ProviderOnfido ||
		deref(h.Events[0].ProviderStatus) != "approved" {
		t.Errorf("ProviderHistory(onfido): %+v, %v", h, err)
	}
	if _, _, err := c.History(ctx, pSharedID, 0, 0); client.Code(err) != client.CodeAmbiguousApplicant {
		t.Errorf("History of a shared id: %v, want %s", err, client.CodeAmbiguousApplicant)
	}
	ch, _, err := c.Changes(ctx, 0, 0, 0)
	if err != nil || len(ch.Changes) != 9 || ch.Changes[1].Provider != domain.ProviderSumsub {
		t.Errorf("Changes: %+v, %v", ch, err)
	}
}
