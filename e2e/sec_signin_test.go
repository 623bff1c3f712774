package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// secSignin is one officer's browser at the console: its own pre-session cookie and
// CSRF token for each attempt, sent through a proxy that names it in X-Forwarded-For.
type secSignin struct {
	t      *testing.T
	apiURL string
	xff    string
	client *http.Client
}

// try posts tok to the sign-in form and returns the status, the session cookie (if one
// was set) and how long the answer took.
func (b secSignin) try(tok string) (int, *http.Cookie, time.Duration) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.apiURL+"/console/signin", nil)
	req.Header.Set("X-Forwarded-For", b.xff)
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	pre, csrf := signinForm(b.t, resp)
	req, _ = http.NewRequest("POST", b.apiURL+"/console/signin",
		strings.NewReader(url.Values{"token": {tok}, "csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", b.xff)
	req.AddCookie(pre)
	start := time.Now()
	resp, err = b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	for _, c := range resp.Cookies() {
		if c.Name == "kycstate_console" && c.MaxAge > 0 {
			return resp.StatusCode, c, took
		}
	}
	return resp.StatusCode, nil, took
}

// signinForm reads the console's sign-in page (GET /console/signin) and returns its
// pre-session cookie and CSRF token, which the form's POST must carry; a page without
// either fails t.
func signinForm(t testing.TB, resp *http.Response) (*http.Cookie, string) {
	t.Helper()
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var pre *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "kycstate_console_pre" {
			pre = c
		}
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if pre == nil || m == nil {
		t.Fatalf("sign-in page of %s: %d, no pre-session cookie or CSRF token", resp.Request.URL.Host, resp.StatusCode)
	}
	return pre, string(m[1])
}

// consoleGet gets a console page (pageURL) with the session cookie and returns the answer
// and its body, read and closed. It does not follow a redirect unless client does.
func consoleGet(t testing.TB, client *http.Client, pageURL string, session *http.Cookie) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", pageURL, nil)
	req.AddCookie(session)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, page
}

// TestSecuritySigninNeverLocksOut, through the built binary, behind a trusted proxy (the
// test's loopback address, api.trusted_proxies from the environment): six wrong tokens
// from one officer's address, then the admin token: signed in, and the session opens the
// console. The sixth failure was held (at least 0.5 s), and so was the sign-in after it;
// another officer behind the same proxy is not held at all. Each failure, and a 401 of
// the read API, is logged with the client's address and a fingerprint, never the token,
// and counted in kycstate_auth_refused_total. Before, the right token got 429.
func TestSecuritySigninNeverLocksOut(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	s.env = append(s.env, "KYCSTATE_API_TRUSTED_PROXIES=127.0.0.0/8,::1")
	p := s.start(t)
	client := &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	officer := secSignin{t: t, apiURL: s.apiURL, xff: "203.0.113.10", client: client}
	other := secSignin{t: t, apiURL: s.apiURL, xff: "203.0.113.11", client: client}

	var wrong []string
	for i := range 6 {
		tok := "wrong-" + randomHex(16)
		wrong = append(wrong, tok)
		code, session, took := officer.try(tok)
		if code != http.StatusUnauthorized || session != nil {
			t.Fatalf("wrong token %d: %d (session %v), want 401", i+1, code, session != nil)
		}
		if i == 5 && took < 500*time.Millisecond {
			t.Errorf("the sixth failure was answered after %s, want it held at least 500ms", took)
		}
	}
	code, session, took := officer.try(s.admin)
	if code != http.StatusSeeOther || session == nil {
		t.Fatalf("the admin token after six wrong ones: %d (session %v), want 303 with a session", code, session != nil)
	}
	t.Logf("sign-in after six failures answered in %s", took)
	if resp, _ := consoleGet(t, client, s.apiURL+"/console/ops", session); resp.StatusCode != http.StatusOK {
		t.Fatalf("console with the session: %d, want 200", resp.StatusCode)
	}
	if code, session, _ := other.try(s.reader); code != http.StatusSeeOther || session == nil {
		t.Fatalf("another officer behind the proxy: %d, want 303", code)
	}
	apiWrong := "wrong-bearer-" + randomHex(16)
	wrong = append(wrong, apiWrong)
	if code, _, _ := secGet(t, http.MethodGet, s.apiURL+"/v1/anomalies", map[string]string{
		"Authorization": "Bearer " + apiWrong, "X-Forwarded-For": "198.51.100.77"}); code != http.StatusUnauthorized {
		t.Fatalf("API with a wrong token: %d, want 401", code)
	}

	// The logs: one refusal line per failure, with the client's address and a
	// fingerprint; the sign-ins with how long each was held; no wrong token anywhere.
	// The API's refusal is logged after its answer, through the process's pipe: wait
	// for it (a bounded wait; the checks below still count every line).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output(), "198.51.100.77") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	refused := map[string][]map[string]any{} // by listener
	held := map[string]float64{}             // sign-in source -> seconds held
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch line["msg"] {
		case "authentication refused":
			l, _ := line["listener"].(string)
			refused[l] = append(refused[l], line)
		case "console sign-in":
			src, _ := line["source"].(string)
			h, ok := line["held"].(float64) // zap's production encoder: seconds
			if !ok {
				h = -1
			}
			held[src] = h
		}
	}
	fp := regexp.MustCompile(`^[0-9a-f]{8}$`)
	if len(refused["console"]) != 6 {
		t.Errorf("%d console refusals logged, want 6", len(refused["console"]))
	}
	for _, l := range refused["console"] {
		f, _ := l["fingerprint"].(string)
		if l["source"] != "203.0.113.10" || !fp.MatchString(f) {
			t.Errorf("console refusal %v: want source 203.0.113.10 and a fingerprint", l)
		}
	}
	if len(refused["api"]) != 1 || refused["api"][0]["source"] != "198.51.100.77" {
		t.Errorf("API refusals %v: want one from 198.51.100.77", refused["api"])
	}
	if h, ok := held["203.0.113.10"]; !ok || h < 0.5 {
		t.Errorf("sign-ins held %v (seconds): want the officer after six failures held at least 0.5", held)
	}
	if h, ok := held["203.0.113.11"]; !ok || h != 0 {
		t.Errorf("sign-ins held %v (seconds): want the other officer not held", held)
	}
	for _, w := range wrong {
		if strings.Contains(p.Output(), w) {
			t.Errorf("the output holds a wrong token %s", w[:12]+"...")
		}
	}
	status, _, metrics := secGet(t, http.MethodGet, s.apiURL+"/metrics", nil)
	if status != http.StatusOK || !strings.Contains(metrics, `kycstate_auth_refused_total{listener="console"} 6`) ||
		!strings.Contains(metrics, `kycstate_auth_refused_total{listener="api"} 1`) {
		t.Errorf("metrics: want 6 console and 1 api refusals counted:\n%s", grepLines(metrics, "kycstate_auth_refused_total"))
	}
}
