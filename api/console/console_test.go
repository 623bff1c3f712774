package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pagesOf are the signed-in pages, each with a target that renders it.
func pagesOf() []string {
	return []string{
		"/console/",
		"/console/?q=user-1",
		"/console/applicants/" + string(idOne),
		"/console/applicants/" + string(idOne) + "?seq=1",
		"/console/anomalies",
		"/console/changes",
		"/console/ops",
		"/console/no-such-page",
	}
}

func TestHeadersOnEveryResponse(t *testing.T) {
	h := newHarness(t)
	auditor := h.signIn(t, auditorTok)
	targets := append(pagesOf(), "/console/signin", "/console/static/console.css", "/console/static/changes.js",
		"/console/static/", "/console/static/nope.css", "/console/changes/feed")
	for _, target := range targets {
		for _, ck := range []*http.Cookie{nil, auditor} {
			name := fmt.Sprintf("%s signed-in=%v", target, ck != nil)
			var rec *httptest.ResponseRecorder
			if ck == nil {
				rec = h.do("GET", target, nil)
			} else {
				rec = h.do("GET", target, nil, ck)
			}
			hd := rec.Header()
			p := hd.Get("Content-Security-Policy")
			if p == "" || strings.Contains(p, "unsafe-inline") || strings.Contains(p, "unsafe-eval") ||
				!strings.Contains(p, "frame-ancestors 'none'") || !strings.Contains(p, "default-src 'self'") {
				t.Errorf("%s: CSP %q", name, p)
			}
			if hd.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: no nosniff", name)
			}
			cc := hd.Get("Cache-Control")
			if strings.HasPrefix(target, "/console/static/") {
				if rec.Code == 200 && cc != "no-cache" {
					t.Errorf("%s: Cache-Control %q", name, cc)
				}
			} else if cc != "no-store" {
				t.Errorf("%s: Cache-Control %q, want no-store", name, cc)
			}
		}
	}
}

func TestNoSessionShowsNothing(t *testing.T) {
	h := newHarness(t)
	good := h.signIn(t, auditorTok)
	expired := *good
	forged := *good
	forged.Value = strings.Replace(forged.Value, ".", ".A", 1)
	tampered := *good
	// A session re-encoded with the auditor role but under another key.
	other := newHarness(t)
	foreign := other.signIn(t, auditorTok)

	cases := map[string]*http.Cookie{
		"none":     nil,
		"forged":   &forged,
		"tampered": &tampered,
		"foreign":  foreign,
		"garbage":  {Name: sessionCookie, Value: strings.Repeat("x", 5000)},
		"empty":    {Name: sessionCookie, Value: ""},
	}
	tampered.Value = "e30" + tampered.Value[3:] // payload changed, MAC kept
	for name, ck := range cases {
		for _, target := range pagesOf() {
			var rec *httptest.ResponseRecorder
			if ck == nil {
				rec = h.do("GET", target, nil)
			} else {
				rec = h.do("GET", target, nil, ck)
			}
			if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/console/signin") {
				t.Errorf("%s %s: %d to %q, want 303 to sign-in", name, target, rec.Code, rec.Header().Get("Location"))
			}
			if strings.Contains(rec.Body.String(), "APPROVED") || strings.Contains(rec.Body.String(), "data-test") {
				t.Errorf("%s %s: body shows data", name, target)
			}
		}
		rec := h.do("GET", "/console/changes/feed", nil)
		if ck != nil {
			rec = h.do("GET", "/console/changes/feed", nil, ck)
		}
		if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "user-1") {
			t.Errorf("%s feed: %d %s", name, rec.Code, rec.Body)
		}
	}

	h.clock.add(DefaultSessionTTL)
	for _, target := range pagesOf() {
		rec := h.do("GET", target, nil, &expired)
		if rec.Code != http.StatusSeeOther {
			t.Errorf("expired %s: %d, want 303", target, rec.Code)
		}
		if c := cookieNamed(rec, sessionCookie); c == nil || c.MaxAge >= 0 {
			t.Errorf("expired %s: stale cookie not cleared", target)
		}
	}
}

func TestRedirectComesBack(t *testing.T) {
	h := newHarness(t)
	target := "/console/applicants/" + string(idOne) + "?seq=1"
	rec := h.do("GET", target, nil)
	loc := rec.Header().Get("Location")
	if loc != "/console/signin?next="+url.QueryEscape(target) {
		t.Fatalf("Location %q", loc)
	}
	page := h.do("GET", loc, nil)
	if got := hiddenValue(t, page.Body.String(), "next"); got != target {
		t.Errorf("next %q, want %q", got, target)
	}
}

func TestSessionCookie(t *testing.T) {
	h := newHarness(t)
	pre, csrf := h.signinForm(t)
	// Over TLS, or behind a TLS-terminating proxy that says so, the cookie is Secure;
	// over plain HTTP (a forwarded "http" too) it is not.
	for i, via := range []string{"http", "tls", "X-Forwarded-Proto: HTTPS", "Forwarded: for=192.0.2.9;proto=https",
		"X-Forwarded-Proto: http", "Forwarded: proto=http, proto=http"} {
		overTLS := i >= 1 && i <= 3
		r, _ := http.NewRequest("POST", "/console/signin", strings.NewReader(url.Values{"token": {auditorTok}, "csrf": {csrf}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.1:1234"
		r.AddCookie(pre)
		if via == "tls" {
			r = tlsRequest(r)
		} else if k, v, ok := strings.Cut(via, ": "); ok {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.c.ServeHTTP(rec, r)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", via, rec.Code, rec.Body)
		}
		c := cookieNamed(rec, sessionCookie)
		switch {
		case c == nil:
			t.Fatal("no session cookie")
		case !c.HttpOnly, c.SameSite != http.SameSiteStrictMode, c.Path != "/console/":
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/", c)
		case c.Secure != overTLS:
			t.Errorf("%s: Secure=%v", via, c.Secure)
		case c.MaxAge != int(DefaultSessionTTL/time.Second):
			t.Errorf("MaxAge %d", c.MaxAge)
		}
		all := strings.Join(rec.Header().Values("Set-Cookie"), ";") + rec.Header().Get("Location") + rec.Body.String()
		if strings.Contains(all, auditorTok) {
			t.Error("the token appears in the answer")
		}
	}
}

func TestSigninRefusals(t *testing.T) {
	h := newHarness(t)
	pre, csrf := h.signinForm(t)
	other, _ := h.signinForm(t)
	for _, tc := range []struct {
		name   string
		form   url.Values
		cookie *http.Cookie
		want   int
	}{
		{"no pre-session cookie", url.Values{"token": {auditorTok}, "csrf": {csrf}}, nil, 403},
		{"csrf of another nonce", url.Values{"token": {auditorTok}, "csrf": {csrf}}, other, 403},
		{"no csrf", url.Values{"token": {auditorTok}}, pre, 403},
		{"wrong token", url.Values{"token": {"nope"}, "csrf": {csrf}}, pre, 401},
		{"empty token", url.Values{"token": {"  "}, "csrf": {csrf}}, pre, 401},
		{"huge token", url.Values{"token": {strings.Repeat("t", maxTokenBytes+1)}, "csrf": {csrf}}, pre, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			if tc.cookie != nil {
				rec = h.do("POST", "/console/signin", tc.form, tc.cookie)
			} else {
				rec = h.do("POST", "/console/signin", tc.form)
			}
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), `data-test="error"`) {
				t.Errorf("%d, want %d with an error\n%s", rec.Code, tc.want, rec.Body)
			}
			if cookieNamed(rec, sessionCookie) != nil {
				t.Error("a session cookie was set")
			}
			if strings.Contains(rec.Body.String(), "nope") {
				t.Error("the typed token is echoed")
			}
		})
	}
	// An oversized form body.
	rec := h.do("POST", "/console/signin", url.Values{"token": {strings.Repeat("a", maxFormBytes)}, "csrf": {csrf}}, pre)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("oversized form: %d", rec.Code)
	}
}

func TestPostsNeedTheSessionsCSRF(t *testing.T) {
	h := newHarness(t)
	a, b := h.signIn(t, auditorTok), h.signIn(t, auditorTok)
	csrfB := h.csrfOf(t, b)
	for _, target := range []string{"/console/ops/verify", "/console/signout"} {
		for name, form := range map[string]url.Values{
			"none":          {},
			"other session": {"csrf": {csrfB}},
			"garbage":       {"csrf": {"%%%"}},
		} {
			rec := h.do("POST", target, form, a)
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `data-test="error"`) {
				t.Errorf("%s csrf %s: %d", target, name, rec.Code)
			}
		}
	}
	if h.b.verifies != 0 {
		t.Errorf("verify ran %d times without a valid CSRF token", h.b.verifies)
	}
	rec := h.do("POST", "/console/ops/verify", url.Values{"csrf": {h.csrfOf(t, a)}}, a)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "The projection matches the log.") {
		t.Errorf("verify with CSRF: %d\n%s", rec.Code, rec.Body)
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	h := newHarness(t)
	s := h.signIn(t, readerTok)
	rec := h.do("POST", "/console/signout", url.Values{"csrf": {h.csrfOf(t, s)}}, s)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", rec.Code)
	}
	if c := cookieNamed(rec, sessionCookie); c == nil || c.MaxAge >= 0 {
		t.Error("sign-out did not clear the cookie")
	}
	// A copy of the cookie taken before sign-out no longer works.
	if rec := h.do("GET", "/console/", nil, s); rec.Code != http.StatusSeeOther {
		t.Errorf("signed-out cookie: %d, want 303", rec.Code)
	}
}

func TestRevocationsBounded(t *testing.T) {
	v := newRevocations(10)
	now := time.Now()
	for i := range 1000 {
		v.add(fmt.Sprint(i), now.Add(time.Duration(i+1)*time.Second).Unix(), now)
	}
	if len(v.m) > 10 {
		t.Fatalf("%d entries", len(v.m))
	}
	if !v.has("999", now) {
		t.Error("the latest revocation was forgotten")
	}
}

func TestRolesLimitWhatIsShown(t *testing.T) {
	h := newHarness(t)
	reader, auditor := h.signIn(t, readerTok), h.signIn(t, auditorTok)
	app := "/console/applicants/" + string(idOne)

	rec := h.do("GET", app, nil, reader)
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `data-test="applicant-status">APPROVED<`) {
		t.Fatalf("reader applicant: %d\n%s", rec.Code, body)
	}
	if strings.Contains(body, `data-test="history-row"`) || strings.Contains(body, `data-test="asof-seq"`) {
		t.Error("a reader sees history or the as-of form")
	}
	for _, target := range []string{app + "?seq=1", app + "?at=2024-05-01T09:00:00Z", app + "?after=1", "/console/anomalies"} {
		if rec := h.do("GET", target, nil, reader); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `data-test="error"`) {
			t.Errorf("reader %s: %d, want 403", target, rec.Code)
		}
	}
	if rec := h.do("POST", "/console/ops/verify", url.Values{"csrf": {h.csrfOf(t, reader)}}, reader); rec.Code != http.StatusForbidden {
		t.Errorf("reader verify: %d", rec.Code)
	}
	if strings.Contains(h.do("GET", "/console/", nil, reader).Body.String(), "/console/anomalies") {
		t.Error("a reader's nav links to anomalies")
	}

	rec = h.do("GET", app, nil, auditor)
	if n := strings.Count(rec.Body.String(), `data-test="history-row"`); n != 2 {
		t.Errorf("auditor: %d history rows, want 2", n)
	}
	// The timeline shows a flagged time beside the time it explains, on that row only.
	if n := strings.Count(rec.Body.String(), `<span class="timeflag"`); n != 1 || !strings.Contains(rec.Body.String(), `(received) · received`) {
		t.Errorf("auditor: %d time flags shown, want 1 on the flagged row", n)
	}
	rec = h.do("GET", app+"?seq=1", nil, auditor)
	if !strings.Contains(rec.Body.String(), `data-test="applicant-status">INIT<`) {
		t.Errorf("auditor as of seq 1: %s", rec.Body)
	}
}

func TestSearch(t *testing.T) {
	h := newHarness(t)
	s := h.signIn(t, readerTok)
	for _, tc := range []struct {
		q        string
		code     int
		location string
	}{
		{string(idOne), 303, "/console/applicants/" + string(idOne)},
		{strings.ToUpper(string(idOne)), 303, "/console/applicants/" + string(idOne)},
		{"  user-1 ", 303, "/console/applicants/" + string(idOne)},
		{"shared", 200, ""},
		{"nobody", 404, ""},
		{string(idUnknown), 404, ""},
		{"", 200, ""},
	} {
		rec := h.do("GET", "/console/?q="+url.QueryEscape(tc.q), nil, s)
		if rec.Code != tc.code || rec.Header().Get("Location") != tc.location {
			t.Errorf("q=%q: %d to %q, want %d to %q", tc.q, rec.Code, rec.Header().Get("Location"), tc.code, tc.location)
		}
		if tc.code == 404 && !strings.Contains(rec.Body.String(), `data-test="error"`) {
			t.Errorf("q=%q: no error shown", tc.q)
		}
	}
	if n := strings.Count(h.do("GET", "/console/?q=shared", nil, s).Body.String(), `data-test="search-row"`); n != 2 {
		t.Errorf("shared: %d rows, want 2", n)
	}
}

// TestLogDataIsText renders every page that shows log data with markup in every field:
// it must arrive as escaped text.
func TestLogDataIsText(t *testing.T) {
	h := newHarness(t)
	s := h.signIn(t, auditorTok)
	for _, target := range []string{"/console/applicants/" + string(idTwo), "/console/anomalies", "/console/changes",
		"/console/?q=" + url.QueryEscape(hostile+"x"), "/console/applicants/" + string(idTwo) + "?at=" + url.QueryEscape(hostile)} {
		rec := h.do("GET", target, nil, s)
		body := rec.Body.String()
		if strings.Contains(body, "<script>window") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: markup from the log reached the page unescaped", target)
		}
		if !strings.Contains(body, "&lt;script&gt;") && !strings.Contains(body, `\u003cscript`) && !strings.Contains(body, `\x3cscript`) {
			t.Errorf("%s: the hostile text is not shown at all\n%s", target, body)
		}
	}
	rec := h.do("GET", "/console/changes/feed", nil, s)
	if strings.Contains(rec.Body.String(), "<script>") || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("feed: markup unescaped or not JSON: %s", rec.Body)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "/console/",
		"/console/anomalies":            "/console/anomalies",
		"/console/applicants/x?seq=1":   "/console/applicants/x?seq=1",
		"//evil.example/console/":       "/console/",
		"https://evil.example/console/": "/console/",
		"/console//evil.example":        "/console/",
		"/console/\\evil":               "/console/",
		"/console/../v1/verify":         "/console/",
		"/console/signin?next=x":        "/console/",
		"/v1/applicants":                "/console/",
		"/console/\r\nSet-Cookie: x":    "/console/",
		"javascript:alert(1)":           "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no backend": {},
		"short key":  {Backend: &fakeBackend{}, SessionKey: []byte("short")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfiguredKeySharesSessions(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	a, _ := New(Config{Backend: &fakeBackend{}, SessionKey: key})
	b, _ := New(Config{Backend: &fakeBackend{}, SessionKey: key})
	ha, hb := &harness{c: a}, &harness{c: b}
	s := ha.signIn(t, readerTok)
	if rec := hb.do("GET", "/console/", nil, s); rec.Code != 200 {
		t.Errorf("a session from a node with the same key: %d", rec.Code)
	}
}

// TestServerErrorTextNotShown: a store's error (here unavailable, naming a path) is
// answered with its status and a fixed message; its text stays out of the page.
func TestServerErrorTextNotShown(t *testing.T) {
	h := newHarness(t)
	auditor := h.signIn(t, auditorTok)
	rec := h.do("GET", "/console/applicants/"+string(idBroken), nil, auditor)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	body := rec.Body.String()
	if strings.Contains(body, "bolt") || strings.Contains(body, "/secret/path") || !strings.Contains(body, "unavailable") {
		t.Fatalf("page shows the store's error or no reason:\n%s", body)
	}
}
