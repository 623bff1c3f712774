package reconcile

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/ingest/veriff"
)

const (
	ssToken     = "sbx:app-token-0123"
	ssSecret    = "sumsub-app-token-secret"
	paKey       = "persona_sandbox_key_0123"
	veAPIKey    = "veriff-api-key-0123"
	veSecret    = "veriff-shared-secret"
	veOldSecret = "veriff-previous-secret"
)

// fakeProvider is a provider's status API: it authenticates each request as the
// provider does (a request that fails is answered 401) and answers per applicant what
// answer gives, signing it as the provider does (Veriff: X-HMAC-SIGNATURE over the body).
type fakeProvider struct {
	t        *testing.T
	provider domain.Provider
	srv      *httptest.Server

	mu      sync.Mutex
	answers map[domain.ApplicantID]string
	handler map[domain.ApplicantID]http.HandlerFunc
	refused int // requests whose authentication failed
}

func newFakeProvider(t *testing.T, p domain.Provider) *fakeProvider {
	f := &fakeProvider{t: t, provider: p, answers: map[domain.ApplicantID]string{}, handler: map[domain.ApplicantID]http.HandlerFunc{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func hexMAC(secret string, parts ...string) string {
	m := hmac.New(sha256.New, []byte(secret))
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// authentic checks r as the provider would, from its documented algorithm (not with the
// adapter's signing code), and returns the applicant id of the path.
func (f *fakeProvider) authentic(r *http.Request) (domain.ApplicantID, bool) {
	if r.Method != http.MethodGet {
		return "", false
	}
	p := r.URL.Path
	switch f.provider {
	case domain.ProviderSumsub:
		id, ok := strings.CutPrefix(p, "/resources/applicants/")
		id, ok2 := strings.CutSuffix(id, "/one")
		ts, err := strconv.ParseInt(r.Header.Get("X-App-Access-Ts"), 10, 64)
		if !ok || !ok2 || err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute ||
			r.Header.Get("X-App-Token") != ssToken ||
			!hmac.Equal([]byte(r.Header.Get("X-App-Access-Sig")), []byte(hexMAC(ssSecret, r.Header.Get("X-App-Access-Ts"), "GET", r.URL.RequestURI()))) {
			return "", false
		}
		return domain.ApplicantID(id), true
	case domain.ProviderPersona:
		id, ok := strings.CutPrefix(p, "/api/v1/inquiries/")
		return domain.ApplicantID(id), ok && r.Header.Get("Authorization") == "Bearer "+paKey
	case domain.ProviderVeriff:
		id, ok := strings.CutPrefix(p, "/v1/sessions/")
		id, ok2 := strings.CutSuffix(id, "/decision")
		return domain.ApplicantID(id), ok && ok2 && r.Header.Get("X-AUTH-CLIENT") == veAPIKey &&
			hmac.Equal([]byte(r.Header.Get("X-HMAC-SIGNATURE")), []byte(hexMAC(veSecret, id)))
	}
	return "", false
}

func (f *fakeProvider) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := f.authentic(r)
	f.mu.Lock()
	if !ok {
		f.refused++
	}
	body, found := f.answers[id]
	h := f.handler[id]
	f.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, `{"code":401}`, http.StatusUnauthorized)
	case h != nil:
		h(w, r)
	case !found:
		http.Error(w, `{"code":404}`, http.StatusNotFound)
	default:
		if f.provider == domain.ProviderVeriff {
			w.Header().Set("X-HMAC-SIGNATURE", hexMAC(veSecret, body))
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}
}

func (f *fakeProvider) set(id domain.ApplicantID, body string) {
	f.mu.Lock()
	f.answers[id] = body
	f.mu.Unlock()
}

func (f *fakeProvider) on(id domain.ApplicantID, h http.HandlerFunc) {
	f.mu.Lock()
	f.handler[id] = h
	f.mu.Unlock()
}

// providerCase is one provider: its app, a journey's webhooks that stop short of the
// final status, and the status API's answer of that final status.
type providerCase struct {
	p         domain.Provider
	app       string
	id        domain.ApplicantID
	webhooks  []struct{ typ, status string }
	final     func(id domain.ApplicantID) string
	truth     domain.Status
	truthType domain.EventType
	truthPS   string
}

func providerCases() []providerCase {
	return []providerCase{
		{p: domain.ProviderSumsub, app: "ss", id: "65f1c2a9e4b0a1b2c3d4e5f6",
			webhooks: []struct{ typ, status string }{{"applicantCreated", "init"}, {"applicantPending", "pending"}},
			final: func(id domain.ApplicantID) string {
				return `{"id":"` + string(id) + `","createdAt":"2026-03-01 09:58:01","externalUserId":"user-17",` +
					`"review":{"reviewStatus":"completed","createDate":"2026-03-01 09:59:12+0000","reviewDate":"2026-03-01 10:00:01+0000","reviewResult":{"reviewAnswer":"GREEN"}}}`
			},
			truth: domain.StatusApproved, truthType: "applicantReviewed", truthPS: "GREEN"},
		{p: domain.ProviderPersona, app: "pa", id: "inq_2CVZ4HyVg7qaboXz2PUHknAn",
			webhooks: []struct{ typ, status string }{{"inquiry.created", "created"}, {"inquiry.started", "pending"}},
			final: func(id domain.ApplicantID) string {
				return `{"data":{"type":"inquiry","id":"` + string(id) + `","attributes":{"status":"declined","reference-id":"user-17",` +
					`"created-at":"2026-03-01T09:58:00.000Z","decisioned-at":"2026-03-01T10:00:00.000Z"}}}`
			},
			truth: domain.StatusRejected, truthType: "inquiry.declined", truthPS: "declined"},
		{p: domain.ProviderVeriff, app: "ve", id: "f04bdb47-d3be-4b28-b028-a652feb060b5",
			webhooks: []struct{ typ, status string }{{"started", "started"}, {"submitted", "submitted"}},
			final: func(id domain.ApplicantID) string {
				return `{"status":"success","verification":{"id":"` + string(id) + `","code":9001,"status":"approved",` +
					`"vendorData":"user-17","decisionTime":"2026-03-01T09:58:31.916108Z"},"technicalData":{"ip":null}}`
			},
			truth: domain.StatusApproved, truthType: veriff.TypeDecision, truthPS: "approved"},
	}
}

// providerFixture is the Allpass fixture with one provider app reconciled through fake.
func providerFixture(t *testing.T, c providerCase) (*fixture, *fakeProvider) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	fake := newFakeProvider(t, c.p)
	pa := ProviderApp{Provider: c.p, Name: c.app, API: ProviderAPI{BaseURL: fake.srv.URL, Timeout: 300 * time.Millisecond}}
	switch c.p {
	case domain.ProviderSumsub:
		pa.API.AppToken, pa.API.SecretKey = ssToken, []byte(ssSecret)
	case domain.ProviderPersona:
		pa.API.APIKey = paKey
	case domain.ProviderVeriff:
		pa.Veriff = &veriff.App{Name: c.app, APIKey: veAPIKey, Secrets: [][]byte{[]byte(veSecret), []byte(veOldSecret)}}
	}
	if err := f.rec.WithProviders([]ProviderApp{pa}); err != nil {
		t.Fatal(err)
	}
	return f, fake
}

// providerWebhooks appends c's webhooks as ingest would and folds them.
func (f *fixture) providerWebhooks(c providerCase) {
	f.t.Helper()
	for i, w := range c.webhooks {
		at := past.Add(time.Duration(i) * time.Minute).UTC()
		ev := domain.Event{Provider: string(c.p), Origin: domain.OriginWebhook, AppKey: domain.AppKey(c.app), ApplicantID: c.id,
			Type: domain.EventType(w.typ), ProviderStatus: w.status, EventAt: at, EventAtSource: domain.SourceReceived, ReceivedAt: at,
			Payload: json.RawMessage(`{}`)}
		if _, _, err := f.events.Append(context.Background(), &ev, domain.NewUUID()); err != nil {
			f.t.Fatal(err)
		}
	}
	f.catchUp()
}

func (f *fixture) providerState(c providerCase) domain.State {
	f.t.Helper()
	st, found, err := f.proj.StateOf(domain.KeyOf(c.p, domain.AppKey(c.app), c.id))
	if err != nil || !found {
		f.t.Fatalf("state of %s: %v, %v", c.id, found, err)
	}
	return st
}

// A final status whose webhook never arrived is read from the provider's status API,
// appended once, and becomes the state; a second check finds the two in sync.
func TestProviderCheckAppendsTheMissedFinalStatus(t *testing.T) {
	for _, c := range providerCases() {
		t.Run(string(c.p), func(t *testing.T) {
			f, fake := providerFixture(t, c)
			f.providerWebhooks(c)
			before := f.providerState(c)
			if before.Status == c.truth {
				t.Fatalf("the journey already has the final status: %+v", before)
			}
			fake.set(c.id, c.final(c.id))
			last := f.lastSeq()

			dry, err := f.rec.Check(context.Background(), c.id, CheckOptions{DryRun: true})
			if err != nil || dry.Action != ActionAppended || f.lastSeq() != last {
				t.Fatalf("dry run: %+v, %v", dry, err)
			}
			rep, err := f.rec.Check(context.Background(), c.id, CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Action != ActionAppended || rep.Seq != last+1 || rep.Provider != c.p || rep.OpenAPIStatus != c.truth ||
				rep.ProjectionStatus != before.Status || rep.Error != "" {
				t.Fatalf("report %+v", rep)
			}
			f.catchUp()
			st := f.providerState(c)
			if st.Status != c.truth || st.ProviderStatus != c.truthPS || st.ReconciledAt.IsZero() || st.ExternalUserID != "user-17" {
				t.Fatalf("state after the fold: %+v", st)
			}
			hist, _, err := f.proj.HistoryOf(st.Key(), 0, 0)
			if err != nil || len(hist) != len(c.webhooks)+1 {
				t.Fatalf("history %d, %v", len(hist), err)
			}
			h := hist[len(hist)-1]
			if h.Outcome != domain.OutcomeReconciled || h.Origin != domain.OriginOpenAPI || h.Type != c.truthType {
				t.Fatalf("reconciled record %+v", h)
			}
			again, err := f.rec.CheckKey(context.Background(), st.Key(), CheckOptions{})
			if err != nil || again.Action != ActionInSync || f.lastSeq() != last+1 {
				t.Fatalf("second check: %+v, %v", again, err)
			}
			// The same answer from another node appends nothing new: its id is the same.
			if ProviderMsgID(c.p, domain.AppKey(c.app), c.id, c.truthPS, time.Time{}) == ProviderMsgID(c.p, domain.AppKey(c.app), c.id, "other", time.Time{}) {
				t.Fatal("the message id ignores the provider's status")
			}
			fake.mu.Lock()
			refused := fake.refused
			fake.mu.Unlock()
			if refused != 0 {
				t.Fatalf("the fake refused %d of kycstate's requests", refused)
			}
		})
	}
}

// A status API that is down, slow, answers garbage, another applicant, 404 or refuses
// the credentials gives a report line that says so, and nothing is appended.
func TestProviderCheckFaults(t *testing.T) {
	for _, c := range providerCases() {
		t.Run(string(c.p), func(t *testing.T) {
			f, fake := providerFixture(t, c)
			f.providerWebhooks(c)
			last := f.lastSeq()
			for _, fc := range []struct {
				name   string
				h      http.HandlerFunc
				action Action
				reason string
				says   string
			}{
				{"down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "", http.StatusServiceUnavailable) },
					ActionError, ReasonServerError, "answered 503"},
				{"slow", func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(2 * time.Second):
					case <-r.Context().Done():
					}
				}, ActionError, ReasonTimeout, "no whole answer"},
				{"garbled", func(w http.ResponseWriter, r *http.Request) {
					body := "<html>bad gateway</html>"
					w.Header().Set("X-HMAC-SIGNATURE", hexMAC(veSecret, body))
					w.Write([]byte(body))
				}, ActionError, ReasonMalformed, "answer was refused"},
				{"another applicant", func(w http.ResponseWriter, r *http.Request) {
					body := c.final(c.id[:len(c.id)-1] + "X")
					w.Header().Set("X-HMAC-SIGNATURE", hexMAC(veSecret, body))
					w.Write([]byte(body))
				}, ActionError, ReasonInvalid, "answer was refused"},
				{"not found", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "", http.StatusNotFound) },
					ActionNotFound, "", ""},
				{"credentials refused", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "", http.StatusUnauthorized) },
					ActionError, ReasonUnauthorized, "refused the API credentials (401)"},
			} {
				fake.on(c.id, fc.h)
				rep, err := f.rec.Check(context.Background(), c.id, CheckOptions{})
				if err != nil || rep.Action != fc.action || rep.Reason != fc.reason || !strings.Contains(rep.String(), fc.says) ||
					strings.Contains(rep.String(), "Open API") {
					t.Errorf("%s: %+v, %v: %s", fc.name, rep, err, rep)
				}
				if f.lastSeq() != last {
					t.Fatalf("%s: something was appended", fc.name)
				}
			}
		})
	}
}

// Veriff signs its answers: one whose X-HMAC-SIGNATURE is missing, forged, or made with
// a secret kycstate does not hold is refused and appends nothing; one signed with a
// previous secret still in rotation is taken.
func TestVeriffForgedAnswerRefused(t *testing.T) {
	c := providerCases()[2]
	f, fake := providerFixture(t, c)
	f.providerWebhooks(c)
	last := f.lastSeq()
	body := c.final(c.id)
	for name, sig := range map[string]string{
		"missing": "", "forged": strings.Repeat("ab", 32), "wrong secret": hexMAC("a-stranger", body),
		"over another body": hexMAC(veSecret, body+" "),
	} {
		fake.on(c.id, func(w http.ResponseWriter, r *http.Request) {
			if sig != "" {
				w.Header().Set("X-HMAC-SIGNATURE", sig)
			}
			w.Write([]byte(body))
		})
		rep, err := f.rec.Check(context.Background(), c.id, CheckOptions{})
		if err != nil || rep.Action != ActionError || rep.Reason != ReasonBadSignature || !strings.Contains(rep.Error, "signature") {
			t.Errorf("%s: %+v, %v", name, rep, err)
		}
		if f.lastSeq() != last {
			t.Fatalf("%s: a forged answer was appended", name)
		}
	}
	fake.on(c.id, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-HMAC-SIGNATURE", hexMAC(veOldSecret, body))
		w.Write([]byte(body))
	})
	rep, err := f.rec.Check(context.Background(), c.id, CheckOptions{})
	if err != nil || rep.Action != ActionAppended {
		t.Fatalf("signed with the previous secret: %+v, %v", rep, err)
	}
	// No decision yet: nothing to compare, nothing appended.
	f.catchUp()
	last = f.lastSeq()
	fake.on(c.id, func(w http.ResponseWriter, r *http.Request) {
		b := `{"status":"success","verification":null,"technicalData":{"ip":null}}`
		w.Header().Set("X-HMAC-SIGNATURE", hexMAC(veSecret, b))
		w.Write([]byte(b))
	})
	rep, err = f.rec.Check(context.Background(), c.id, CheckOptions{})
	if err != nil || rep.Action != ActionNotFound || f.lastSeq() != last {
		t.Fatalf("no decision yet: %+v, %v", rep, err)
	}
}

// An applicant of a provider app without a status API is reported so; provider apps
// with a bad api setting are refused.
func TestProviderNotConfigured(t *testing.T) {
	c := providerCases()[0]
	f := newFixture(t, allpass.MethodCBC, Config{})
	f.providerWebhooks(c)
	rep, err := f.rec.Check(context.Background(), c.id, CheckOptions{})
	if err != nil || rep.Action != ActionError || rep.Reason != ReasonNoOpenAPI || !strings.Contains(rep.Error, "apps[].api") {
		t.Fatalf("%+v, %v", rep, err)
	}
	for _, pa := range []ProviderApp{
		{Provider: domain.ProviderSumsub, Name: "ss", API: ProviderAPI{BaseURL: "http://x", AppToken: ssToken}},
		{Provider: domain.ProviderPersona, Name: "pa", API: ProviderAPI{BaseURL: "http://x"}},
		{Provider: domain.ProviderVeriff, Name: "ve", API: ProviderAPI{BaseURL: "http://x"}},
		{Provider: domain.ProviderOnfido, Name: "on", API: ProviderAPI{BaseURL: "http://x", APIKey: "k"}},
		{Provider: domain.ProviderPersona, Name: "pa", API: ProviderAPI{BaseURL: "ftp://x", APIKey: "k"}},
	} {
		if err := f.rec.WithProviders([]ProviderApp{pa}); domain.KindOf(err) != domain.KindInvalid ||
			strings.Contains(err.Error(), "k\"") {
			t.Errorf("%s %+v: %v", pa.Provider, pa.API, err)
		}
	}
}
