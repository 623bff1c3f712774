package console

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The fake backend's tokens and applicants.
const (
	readerTok  = "reader-secret-0123456789"
	auditorTok = "auditor-secret-9876543210"
	adminTok   = "admin-secret-5555555555555"
	idOne      = domain.ApplicantID("0a3c5e1f-6b2d-4c8e-9f10-aaaaaaaaaaa1")
	idTwo      = domain.ApplicantID("1b4d6f20-7c3e-4d9f-8021-bbbbbbbbbbb2")
	// idBroken is an applicant whose state the backend cannot read: the store's error.
	idBroken  = domain.ApplicantID("3d6f8142-9e50-4fb1-a243-ddddddddddd4")
	idThree   = domain.ApplicantID("2c5e7031-8d4f-4ea0-9132-ccccccccccc3")
	idUnknown = domain.ApplicantID("5f81a364-b072-41d3-8465-fffffffffff6")
	hostile   = `<script>window.__x=1</script><img src=x onerror="window.__y=1">`
)

var t0 = time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)

// fakeBackend answers from fixed data, so the console's own logic is tested alone; the
// tests in package api drive the real adapter over a real projection.
type fakeBackend struct {
	mu       sync.Mutex
	verifies int
	erased   []erasure
}

type erasure struct {
	id         domain.ApplicantID
	by, reason string
}

func (f *fakeBackend) Authenticate(tok string) (Principal, error) {
	switch tok {
	case readerTok:
		return Principal{Name: "product", Role: domain.RoleReader}, nil
	case auditorTok:
		return Principal{Name: "audit", Role: domain.RoleAuditor}, nil
	case adminTok:
		return Principal{Name: "dpo", Role: domain.RoleAdmin}, nil
	}
	return Principal{}, domain.E("token", domain.KindUnauthorized, "invalid token")
}

func (f *fakeBackend) states() map[domain.ApplicantID]domain.State {
	return map[domain.ApplicantID]domain.State{
		idOne:   {ApplicantID: idOne, ExternalUserID: "user-1", Status: domain.StatusApproved, Events: 2, LastSeq: 3},
		idTwo:   {ApplicantID: idTwo, ExternalUserID: hostile, Status: domain.StatusInit, Warnings: []string{hostile}, StepsPassed: []string{hostile}, Events: 1, LastSeq: 2},
		idThree: {ApplicantID: idThree, ExternalUserID: "shared", Status: domain.StatusRejected},
	}
}

func str(s string) *string { return &s }

// events is an applicant's history as the API answers it.
func (f *fakeBackend) events(id domain.ApplicantID) []client.Event {
	switch id {
	case idOne:
		return []client.Event{
			{Seq: 1, Type: domain.EventCreated, Origin: domain.OriginWebhook, Outcome: domain.OutcomeApplied, To: str("INIT"),
				EventAt: client.Time(t0), ReceivedAt: client.Time(t0), Warnings: []string{}},
			{Seq: 3, Type: domain.EventApproved, Origin: domain.OriginWebhook, Outcome: domain.OutcomeIrregular, From: str("INIT"), To: str("APPROVED"),
				EventAt: client.Time(t0.Add(time.Minute)), EventAtSource: domain.SourceReceived, ReceivedAt: client.Time(t0.Add(time.Minute)),
				Warnings: []string{}, TimeFlag: str(string(domain.TimeFlagClockSkew))},
		}
	case idTwo:
		return []client.Event{{Seq: 2, Type: hostile, Origin: domain.OriginWebhook, StepName: str(hostile), Warnings: []string{hostile},
			Outcome: domain.OutcomeUnknown, EventAt: client.Time(t0), ReceivedAt: client.Time(t0), EventAtSource: hostile, TimeFlag: str(hostile)}}
	}
	return nil
}

func (f *fakeBackend) State(ctx context.Context, p domain.Provider, id domain.ApplicantID) (domain.State, error) {
	if id == idBroken {
		return domain.State{}, domain.E("projection.Projection.State", domain.KindUnavailable, "bolt: database not open at /secret/path")
	}
	st, ok := f.states()[id]
	if !ok {
		return domain.State{}, domain.Public("api", domain.KindNotFound, "", "id: no applicant "+string(id))
	}
	return st, nil
}

func (f *fakeBackend) StateAt(ctx context.Context, p domain.Provider, id domain.ApplicantID, as AsOf) (domain.State, error) {
	st, err := f.State(ctx, p, id)
	if err != nil {
		return st, err
	}
	if as.Seq != 0 && as.Seq < 3 && id == idOne {
		st.Status = domain.StatusInit
	}
	return st, nil
}

func (f *fakeBackend) History(ctx context.Context, p domain.Provider, id domain.ApplicantID, after uint64, limit int) (client.History, error) {
	if _, err := f.State(ctx, p, id); err != nil {
		return client.History{}, err
	}
	h := client.History{ApplicantID: id, Events: []client.Event{}}
	for _, e := range f.events(id) {
		if e.Seq > after && len(h.Events) < limit {
			h.Events = append(h.Events, e)
		}
	}
	return h, nil
}

func (f *fakeBackend) Lookup(ctx context.Context, ext domain.ExternalUserID, limit int) ([]domain.State, error) {
	var out []domain.State
	for _, st := range f.states() {
		if st.ExternalUserID == ext {
			out = append(out, st)
		}
	}
	if ext == "shared" { // two applicants share it
		out = append(out, domain.State{ApplicantID: idOne, ExternalUserID: "shared"})
	}
	return out, nil
}

func (f *fakeBackend) Anomalies(ctx context.Context, after uint64, limit int) (client.Anomalies, error) {
	page := client.Anomalies{Anomalies: []client.Anomaly{}}
	for _, id := range []domain.ApplicantID{idOne, idTwo} {
		st := f.states()[id]
		for _, e := range f.events(id) {
			if e.Seq > after && (e.Outcome == domain.OutcomeIrregular || e.Outcome == domain.OutcomeUnknown) {
				page.Anomalies = append(page.Anomalies, client.Anomaly{ApplicantID: id, ExternalUserID: str(string(st.ExternalUserID)), Event: e})
			}
		}
	}
	return page, nil
}

func (f *fakeBackend) Changes(ctx context.Context, after uint64, limit int) ([]domain.Change, error) {
	all := []domain.Change{
		{Seq: 1, ApplicantID: idOne, ExternalUserID: "user-1", To: domain.StatusInit, At: t0},
		{Seq: 2, ApplicantID: idTwo, ExternalUserID: hostile, To: domain.StatusInit, At: t0},
		{Seq: 3, ApplicantID: idOne, ExternalUserID: "user-1", From: domain.StatusInit, To: domain.StatusApproved, At: t0},
	}
	var out []domain.Change
	for _, c := range all {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeBackend) Health(ctx context.Context) Health { return Health{Checkpoint: 3} }

func (f *fakeBackend) Erase(ctx context.Context, p domain.Provider, id domain.ApplicantID, by, reason string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.erased = append(f.erased, erasure{id: id, by: by, reason: reason})
	return 1, nil
}

func (f *fakeBackend) Verify(ctx context.Context) (domain.VerifyResult, error) {
	f.mu.Lock()
	f.verifies++
	f.mu.Unlock()
	return domain.VerifyResult{Checkpoint: 3, LogLast: 3, Applicants: 3, Events: 3}, nil
}

// testClock is a settable test clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	c     *Console
	b     *fakeBackend
	clock *testClock

	mu    sync.Mutex
	holds []time.Duration // every sign-in hold, in order
}

// sleep is the console's Sleep: it records the hold and moves the clock past it, as a
// real wait would, and returns at once.
func (h *harness) sleep(ctx context.Context, d time.Duration) error {
	h.mu.Lock()
	h.holds = append(h.holds, d)
	h.mu.Unlock()
	h.clock.add(d)
	return ctx.Err()
}

// takeHolds returns the holds recorded since the last call.
func (h *harness) takeHolds() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.holds
	h.holds = nil
	return out
}

func newHarness(tb testing.TB) *harness { return newHarnessWith(tb, nil) }

// newHarnessWith is newHarness with cfg changed by adjust (nil: as it is).
func newHarnessWith(tb testing.TB, adjust func(*Config)) *harness {
	tb.Helper()
	h := &harness{b: &fakeBackend{}, clock: &testClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}
	var err error
	log := zap.NewNop() // a fuzz target may not log through its *testing.F
	if t, ok := tb.(*testing.T); ok {
		log = zaptest.NewLogger(t)
	}
	cfg := Config{Backend: h.b, Logger: log, Now: h.clock.Now, Sleep: h.sleep}
	if adjust != nil {
		adjust(&cfg)
	}
	h.c, err = New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// do serves one request; cookies are sent as given.
func (h *harness) do(method, target string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.c.ServeHTTP(rec, req)
	return rec
}

// doRequest serves req with cookies added.
func (h *harness) doRequest(req *http.Request, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.c.ServeHTTP(rec, req)
	return rec
}

func cookieNamed(rec *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signinForm loads the sign-in page and returns its pre-session cookie and CSRF token.
func (h *harness) signinForm(tb testing.TB) (*http.Cookie, string) {
	tb.Helper()
	rec := h.do("GET", "/console/signin", nil)
	pre := cookieNamed(rec, preCookie)
	if pre == nil {
		tb.Fatal("sign-in page set no pre-session cookie")
	}
	return pre, hiddenValue(tb, rec.Body.String(), "csrf")
}

// hiddenValue finds <input type="hidden" name="NAME" value="..."> in a page.
func hiddenValue(tb testing.TB, page, name string) string {
	tb.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		tb.Fatalf("no hidden %s in page:\n%s", name, page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// signIn signs in with tok and returns the session cookie.
func (h *harness) signIn(tb testing.TB, tok string) *http.Cookie {
	tb.Helper()
	pre, csrf := h.signinForm(tb)
	rec := h.do("POST", "/console/signin", url.Values{"token": {tok}, "csrf": {csrf}}, pre)
	if rec.Code != http.StatusSeeOther {
		tb.Fatalf("sign-in: %d, want 303\n%s", rec.Code, rec.Body)
	}
	c := cookieNamed(rec, sessionCookie)
	if c == nil {
		tb.Fatal("sign-in set no session cookie")
	}
	return c
}

// csrfOf reads a signed-in page's CSRF token (the sign-out form carries it).
func (h *harness) csrfOf(tb testing.TB, session *http.Cookie) string {
	tb.Helper()
	rec := h.do("GET", "/console/ops", nil, session)
	return hiddenValue(tb, rec.Body.String(), "csrf")
}

// tlsRequest marks a request as having arrived over TLS.
func tlsRequest(r *http.Request) *http.Request {
	r.TLS = &tls.ConnectionState{}
	return r
}
