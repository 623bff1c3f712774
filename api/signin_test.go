package api

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestConsoleSigninNeverLockedOut: through the real API handler over HTTP, six wrong
// tokens from one address and then the right one: signed in, and the session opens the
// console. The sixth failure and the sign-in are held (the slower), not refused.
func TestConsoleSigninNeverLockedOut(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	csrfRe := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	post := func(tok string) (*http.Response, time.Duration) {
		t.Helper()
		resp, err := c.Get(srv.URL + "/console/signin")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfRe.FindSubmatch(page)
		if m == nil {
			t.Fatalf("sign-in page %d without a CSRF token", resp.StatusCode)
		}
		start := time.Now()
		resp, err = c.PostForm(srv.URL+"/console/signin", url.Values{"token": {tok}, "csrf": {string(m[1])}})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, time.Since(start)
	}
	for i := range 6 {
		resp, took := post(fmt.Sprintf("wrong-token-%d", i))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, resp.StatusCode)
		}
		if i == 5 && took < 500*time.Millisecond {
			t.Errorf("the sixth failure took %s, want it held at least 500ms", took)
		}
	}
	resp, took := post(auditorToken)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("the right token after six wrong ones: %d %s, want 303 to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	t.Logf("sign-in after six failures held %s", took)
	home, err := c.Get(srv.URL + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(home.Body)
	home.Body.Close()
	if home.StatusCode != http.StatusOK || !strings.Contains(string(body), "audit") {
		t.Fatalf("console with the new session: %d", home.StatusCode)
	}
}

// TestRefusedBearerLogged: a 401 of the read API is logged with the source and the token's
// fingerprint, never the token, and counted under listener api. X-Forwarded-For names the
// source only when the peer is a trusted proxy; a client that writes it is logged as
// itself.
func TestRefusedBearerLogged(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	f := newFixture(t, func(c *Config) {
		c.Logger = zap.New(core)
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	const wrong = "a-wrong-bearer-token-never-logged"
	for _, tc := range []struct{ remote, xff, want string }{
		{"10.0.0.1:443", "198.51.100.20", "198.51.100.20"},
		{"192.0.2.1:5000", "198.51.100.20", "192.0.2.1"},
	} {
		req := httptest.NewRequest("GET", "/v1/anomalies", nil)
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Forwarded-For", tc.xff)
		req.Header.Set("Authorization", "Bearer "+wrong)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("%s: %d, want 401", tc.remote, rec.Code)
		}
		lines := logs.FilterMessage("authentication refused").All()
		if len(lines) == 0 {
			t.Fatalf("%s: the 401 was not logged", tc.remote)
		}
		m := lines[len(lines)-1].ContextMap()
		fp, _ := m["fingerprint"].(string)
		if m["source"] != tc.want || m["listener"] != "api" || m["reason"] != "unknown token" || len(fp) != 8 || m["path"] != "/v1/anomalies" {
			t.Errorf("%s: line %v, want source %s, listener api, the reason, the path and an 8-character fingerprint", tc.remote, m, tc.want)
		}
	}
	f.get(t, "/v1/anomalies", "") // no token at all: logged without a fingerprint
	last := logs.FilterMessage("authentication refused").All()
	if m := last[len(last)-1].ContextMap(); m["reason"] != "no token" || m["fingerprint"] != nil {
		t.Errorf("no token: line %v, want reason no token and no fingerprint", m)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), wrong) {
			t.Errorf("%q logs the token: %v", e.Message, e.ContextMap())
		}
	}
	if got := f.refused(t, "api"); got != 3 {
		t.Errorf("kycstate_auth_refused_total{listener=api} = %v, want 3", got)
	}
	if got := f.refused(t, "console"); got != 0 {
		t.Errorf("kycstate_auth_refused_total{listener=console} = %v, want 0", got)
	}
}

// refused returns kycstate_auth_refused_total{listener}; -1 when the series is missing.
func (f *fixture) refused(tb testing.TB, listener string) float64 {
	tb.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kycstate_auth_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" && l.GetValue() == listener {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
