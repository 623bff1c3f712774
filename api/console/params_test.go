package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// hostileValues are malformed, oversized and hostile values for every parameter.
func hostileValues() []string {
	return []string{
		"-1", "+1", "1e3", "0x10", "abc", " ", "18446744073709551616", "99999999999999999999999",
		"%zz", "\x00", "\xff\xfe", "<script>alert(1)</script>", `"'><img src=x onerror=alert(1)>`,
		"2024-13-45T99:99:99Z", "2024-05-01", "yesterday", strings.Repeat("9", 5000),
		strings.Repeat("<", 2000), "../../etc/passwd", "\u202e\u200b", "1;2", "1 OR 1=1",
	}
}

// TestEveryParameterRefusesBadInput sends each hostile value in each parameter of each
// page: never a 500 or a panic; a refusal is a 4xx page with data-test="error".
func TestEveryParameterRefusesBadInput(t *testing.T) {
	h := newHarness(t)
	s := h.signIn(t, auditorTok)
	app := "/console/applicants/" + string(idOne)
	params := map[string][]string{
		"/console/":             {"q"},
		app:                     {"seq", "at", "after", "provider"},
		"/console/anomalies":    {"after"},
		"/console/changes":      {"after"},
		"/console/ops":          {"x"},
		"/console/signin":       {"next"},
		"/console/changes/feed": {"after"},
	}
	for page, names := range params {
		for _, name := range names {
			for _, v := range hostileValues() {
				target := page + "?" + name + "=" + url.QueryEscape(v)
				rec := h.do("GET", target, nil, s)
				body := rec.Body.String()
				switch {
				case rec.Code >= 500:
					t.Errorf("%s: %d", target, rec.Code)
				case rec.Code >= 400 && page != "/console/changes/feed" && !strings.Contains(body, `data-test="error"`):
					t.Errorf("%s: %d without an error element", target, rec.Code)
				case rec.Code >= 400 && page == "/console/changes/feed" && !strings.Contains(body, `"error"`):
					t.Errorf("%s: %d without an error field", target, rec.Code)
				}
				if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
					t.Errorf("%s: the value came back as markup", target)
				}
			}
		}
	}
	// A malformed query string, an oversized one, and a bad id in the path.
	for _, target := range []string{
		"/console/anomalies?after=%zz",
		"/console/?q=" + strings.Repeat("a", maxQueryBytes),
		// {id} is a UUID or another provider's id (DESIGN.md section 13).
		"/console/applicants/not.a.uuid",
		"/console/applicants/not-a-uuid?provider=allpass",
		"/console/applicants/" + string(idOne) + "?provider=allpas",
		"/console/applicants/" + strings.Repeat("a", 65) + "?provider=sumsub",
		"/console/applicants/" + strings.Repeat("a", 4000),
		"/console/applicants/%3Cscript%3E",
	} {
		rec := h.do("GET", target, nil, s)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `data-test="error"`) {
			t.Errorf("%.80s: %d, want 400 with an error", target, rec.Code)
		}
	}
}

// TestParameterValues checks the accepted forms of each parameter.
func TestParameterValues(t *testing.T) {
	h := newHarness(t)
	s := h.signIn(t, auditorTok)
	app := "/console/applicants/" + string(idOne)
	for target, want := range map[string]int{
		app + "?seq=1":                                200,
		app + "?seq=0":                                400,
		app + "?seq=3&at=2024-05-01T09:00:00Z":        400,
		app + "?at=2024-05-01T09:00:00Z":              200,
		app + "?at=2024-05-01T11:00:00%2B02:00":       200,
		app + "?at=2024-05-01T09:00":                  200, // the browser's datetime-local
		app + "?at=2024-05-01T09:00:30":               200,
		app + "?seq=&at=":                             200, // an empty as-of form: the current state
		app + "?after=1":                              200,
		"/console/applicants/" + string(idUnknown):    404,
		"/console/anomalies?after=2":                  200,
		"/console/changes?after=18446744073709551615": 200,
	} {
		if rec := h.do("GET", target, nil, s); rec.Code != want {
			t.Errorf("%s: %d, want %d\n%s", target, rec.Code, want, rec.Body)
		}
	}
}

// FuzzPages sends arbitrary paths and query strings to the signed-in console.
func FuzzPages(f *testing.F) {
	for _, v := range hostileValues() {
		f.Add("applicants/"+string(idOne), "seq="+url.QueryEscape(v))
		f.Add("", "q="+url.QueryEscape(v))
	}
	f.Add("anomalies", "after=%zz")
	f.Add("changes/feed", "after=1")
	h := newHarness(f)
	s := h.signIn(f, auditorTok)
	f.Fuzz(func(t *testing.T, path, query string) {
		u := &url.URL{Path: "/console/" + path, RawQuery: query}
		target := u.String()
		if !strings.HasPrefix(target, "/console/") {
			return
		}
		req, err := http.NewRequest("GET", target, nil)
		if err != nil {
			return
		}
		rec := h.doRequest(req, s)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d", target, rec.Code)
		}
		if rec.Code >= 400 && strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") &&
			!strings.Contains(rec.Body.String(), `data-test="error"`) && rec.Code != 405 {
			t.Fatalf("%q: %d without an error element", target, rec.Code)
		}
	})
}

// FuzzSignin posts arbitrary forms to sign-in: no panic, no session without the token.
func FuzzSignin(f *testing.F) {
	f.Add("token=wrong&csrf=x")
	f.Add("token=" + auditorTok)
	f.Add("%zz")
	f.Add(strings.Repeat("a=b&", 5000))
	h := newHarness(f)
	pre, csrf := h.signinForm(f)
	f.Fuzz(func(t *testing.T, body string) {
		h.c.slower = newSlower(defaultFreeFailures, defaultForget, defaultFirstHold, defaultMaxHold, defaultLimiterSize)
		h.takeHolds()
		req, _ := http.NewRequest("POST", "/console/signin", strings.NewReader(body+"&csrf="+url.QueryEscape(csrf)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := h.doRequest(req, pre)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d", body, rec.Code)
		}
		if cookieNamed(rec, sessionCookie) != nil {
			v, _ := url.ParseQuery(body)
			if strings.TrimSpace(v.Get("token")) != auditorTok && strings.TrimSpace(v.Get("token")) != readerTok {
				t.Fatalf("%q: a session without a valid token", body)
			}
		}
	})
}
