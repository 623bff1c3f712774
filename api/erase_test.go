package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

const adminToken = "admin-token-3c2b1a0f9e8d"

// fakeKeys seals by naming the applicant and the id, and forgets an erased applicant.
type fakeKeys struct {
	mu     sync.Mutex
	erased map[domain.ApplicantID]bool
	fail   error // when set, every OpenExternalUserID returns it
}

func (k *fakeKeys) seal(app domain.AppKey, id domain.ApplicantID, ext domain.ExternalUserID) domain.SealedExternalUserID {
	return domain.SealedExternalUserID("sealed|" + string(app) + "|" + string(id) + "|" + string(ext))
}

func (k *fakeKeys) OpenProviderExternalUserID(_ context.Context, _ domain.Provider, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserID, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return "", k.fail
	}
	if k.erased[id] {
		return "", domain.E("fake", domain.KindNotFound, "erased")
	}
	prefix := "sealed|" + string(app) + "|" + string(id) + "|"
	if !strings.HasPrefix(string(s), prefix) {
		return "", domain.E("fake", domain.KindInternal, "moved")
	}
	return domain.ExternalUserID(strings.TrimPrefix(string(s), prefix)), nil
}

func (k *fakeKeys) Index(app domain.AppKey, ext domain.ExternalUserID) domain.ExternalUserIndex {
	return domain.ExternalUserIndex("ix|" + string(app) + "|" + string(ext))
}

// sealedFixture is the fixture log with every externalUserId sealed, as a keyed log
// stores it, and an erase that appends applicantErased to it.
func sealedFixture(t *testing.T) (*fixture, *fakeKeys, *[]string) {
	keys := &fakeKeys{erased: map[domain.ApplicantID]bool{}}
	evs := fixtureEvents(t, 1, fixtureSpecs())
	for i := range evs {
		e := &evs[i]
		if e.ExternalUserID != "" {
			e.SealedExternalUserID, e.ExternalUserIndex = keys.seal(e.AppKey, e.ApplicantID, e.ExternalUserID), keys.Index(e.AppKey, e.ExternalUserID)
			e.ExternalUserID = ""
			e.V = domain.StoredVersion
			e.Stored = mustJSON(t, e)
		}
	}
	var calls []string
	var f *fixture
	f = buildFixture(t, evs, func(c *Config) {
		c.Tokens = append(c.Tokens, Token{Name: "dpo", Role: domain.RoleAdmin, Secret: adminToken})
		c.Keys = keys
		c.Erase = func(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, by, reason string) (uint64, bool, error) {
			calls = append(calls, string(id)+" by "+by+": "+reason)
			seq := uint64(len(f.stored)) + 1
			e := domain.Event{V: domain.StoredVersion, Provider: "allpass", Origin: domain.OriginOperator, AppKey: app,
				ApplicantID: id, Type: domain.EventErased, EventAt: base.Add(time.Duration(seq) * time.Minute), EventAtSource: domain.SourceReceived,
				ReceivedAt: base.Add(time.Duration(seq) * time.Minute), Seq: seq}
			e.Stored = mustJSON(t, e)
			if _, err := f.proj.Apply([]domain.Event{e}, f.folder); err != nil {
				return 0, false, err
			}
			f.stored = append(f.stored, e)
			keys.mu.Lock()
			keys.erased[id] = true
			keys.mu.Unlock()
			return seq, false, nil
		}
	})
	return f, keys, &calls
}

func (f *fixture) post(t *testing.T, target, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func stateOf(t *testing.T, f *fixture, id domain.ApplicantID) client.State {
	t.Helper()
	rec := f.get(t, "/v1/applicants/"+string(id), readerToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", id, rec.Code, rec.Body)
	}
	var st client.State
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func lookup(t *testing.T, f *fixture, query string) []client.State {
	t.Helper()
	rec := f.get(t, "/v1/applicants?"+query, readerToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("lookup %s: %d %s", query, rec.Code, rec.Body)
	}
	var a client.Applicants
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	return a.Applicants
}

// The API opens sealed ids at the edge and finds them by their blind index; an erasure
// needs an admin and a reason, answers 404 for an unknown applicant, and leaves the
// state erased with no id and no lookup finding it, its status and digest kept.
func TestEraseAndSealedIDs(t *testing.T) {
	f, _, calls := sealedFixture(t)
	st := stateOf(t, f, idA)
	if st.ExternalUserID == nil || *st.ExternalUserID != "user-1" || st.Erased {
		t.Fatalf("sealed id not opened: %+v", st)
	}
	if got := lookup(t, f, "externalUserId=user-1"); len(got) != 2 || got[0].ApplicantID != idA || got[1].ApplicantID != idC {
		t.Fatalf("lookup user-1: %+v", got)
	}
	if got := lookup(t, f, "externalUserId=user-1&appKey="+string(app2)); len(got) != 1 || got[0].ApplicantID != idC {
		t.Fatalf("lookup user-1 in app2: %+v", got)
	}
	rec := f.get(t, "/v1/changes?after=0&limit=100", readerToken)
	if !strings.Contains(rec.Body.String(), `"externalUserId":"user-2"`) {
		t.Fatalf("change feed does not open ids: %s", rec.Body)
	}

	for _, tc := range []struct {
		name, token, id, body string
		want                  int
	}{
		{"reader", readerToken, string(idA), `{"reason":"x"}`, http.StatusForbidden},
		{"auditor", auditorToken, string(idA), `{"reason":"x"}`, http.StatusForbidden},
		{"no token", "", string(idA), `{"reason":"x"}`, http.StatusUnauthorized},
		{"no reason", adminToken, string(idA), `{}`, http.StatusBadRequest},
		{"blank reason", adminToken, string(idA), `{"reason":"  "}`, http.StatusBadRequest},
		{"not json", adminToken, string(idA), `reason`, http.StatusBadRequest},
		{"unknown field", adminToken, string(idA), `{"reason":"x","force":true}`, http.StatusBadRequest},
		{"unknown applicant", adminToken, string(idNone), `{"reason":"x"}`, http.StatusNotFound},
		{"bad id", adminToken, "nope!", `{"reason":"x"}`, http.StatusBadRequest},
		{"unknown other provider's id", adminToken, "nope", `{"reason":"x"}`, http.StatusNotFound},
	} {
		if rec := f.post(t, "/v1/applicants/"+tc.id+"/erase", tc.token, tc.body); rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.want)
		}
	}
	// An unknown field is named, so the caller knows what to drop.
	if rec := f.post(t, "/v1/applicants/"+string(idA)+"/erase", adminToken, `{"reason":"x","force":true}`); !strings.Contains(rec.Body.String(), `unknown field \"force\"`) {
		t.Errorf("unknown field: %s, want it named", rec.Body)
	}
	if len(*calls) != 0 {
		t.Fatalf("refused requests erased: %v", *calls)
	}

	before := stateOf(t, f, idA)
	rec = f.post(t, "/v1/applicants/"+string(idA)+"/erase", adminToken, `{"reason":"GDPR art. 17 request"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("erase: %d %s", rec.Code, rec.Body)
	}
	var e client.Erasure
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !e.Erased || e.ApplicantID != idA || e.Seq == 0 || !e.KeyDestroyed || e.Pending {
		t.Fatalf("erasure answer %s (%v)", rec.Body, err)
	}
	if (*calls)[0] != string(idA)+" by dpo: GDPR art. 17 request" {
		t.Fatalf("erase called with %q", (*calls)[0])
	}
	after := stateOf(t, f, idA)
	if !after.Erased || after.ExternalUserID != nil || *after.Status != *before.Status || after.Events != before.Events+1 {
		t.Fatalf("after erasure: %+v", after)
	}
	if got := lookup(t, f, "externalUserId=user-1"); len(got) != 1 || got[0].ApplicantID != idC {
		t.Fatalf("lookup after erasure: %+v", got)
	}
	if rec := f.post(t, "/v1/applicants/"+string(idA)+"/erase", adminToken, `{"reason":"again"}`); rec.Code != http.StatusOK {
		t.Fatalf("repeated erasure: %d %s", rec.Code, rec.Body)
	}
	rec = f.get(t, "/v1/applicants/"+string(idA)+"/history", auditorToken)
	if !strings.Contains(rec.Body.String(), `"outcome":"erased"`) || !strings.Contains(rec.Body.String(), `"origin":"operator"`) {
		t.Fatalf("history: %s", rec.Body)
	}
	rec = f.get(t, "/v1/changes?after=0&limit=100", readerToken)
	if strings.Contains(rec.Body.String(), `"applicantId":"`+string(idA)+`","appKey":"`+string(app1)+`","externalUserId":"user-1"`) {
		t.Fatalf("change feed still shows the erased id: %s", rec.Body)
	}
}

// A node without an erase function answers 404 after authentication.
func TestEraseDisabled(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Tokens = append(c.Tokens, Token{Name: "dpo", Role: domain.RoleAdmin, Secret: adminToken})
	})
	if rec := f.post(t, "/v1/applicants/"+string(idA)+"/erase", adminToken, `{"reason":"x"}`); rec.Code != http.StatusNotFound {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec := f.get(t, "/v1/applicants/"+string(idA)+"/history", adminToken); rec.Code != http.StatusOK {
		t.Fatalf("admin may read what an auditor may: %d", rec.Code)
	}
}

// consoleSignIn signs in to the console served by f's handler and returns the session
// cookie.
func consoleSignIn(t *testing.T, f *fixture, token string) *http.Cookie {
	t.Helper()
	rec := f.get(t, "/console/signin", "")
	var pre *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "kycstate_console_pre" {
			pre = c
		}
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	if pre == nil || m == nil {
		t.Fatalf("console sign-in page: %d, no pre-session cookie or CSRF token", rec.Code)
	}
	req := httptest.NewRequest("POST", "/console/signin", strings.NewReader(url.Values{"token": {token}, "csrf": {m[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	out := httptest.NewRecorder()
	f.h.ServeHTTP(out, req)
	for _, c := range out.Result().Cookies() {
		if c.Name == "kycstate_console" && c.MaxAge > 0 {
			return c
		}
	}
	t.Fatalf("console sign-in: %d, no session cookie", out.Code)
	return nil
}

// The console shows sealed (stored version 2) externalUserIds opened, on the pages that
// name them: the anomalies and the changes.
func TestConsoleOpensSealedIDs(t *testing.T) {
	f, _, _ := sealedFixture(t)
	s := consoleSignIn(t, f, auditorToken)
	for page, want := range map[string]string{"/console/anomalies": "user-1", "/console/changes": "user-2"} {
		req := httptest.NewRequest("GET", page, nil)
		req.AddCookie(s)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d, want %s shown opened\n%s", page, rec.Code, want, rec.Body)
		}
	}
}
