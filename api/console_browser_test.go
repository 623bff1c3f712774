package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"go.uber.org/goleak"
)

// The hostile applicant: every text field the log carries holds markup that would run
// script if the console ever wrote it as HTML.
const (
	idHostile   = domain.ApplicantID("6a92b475-c183-42e4-9576-07a8b9c0d1e7")
	hostileExt  = `<script>window.__x=1</script>`
	hostileWarn = `<img src=x onerror="window.__y=1">`
	hostileStep = `<svg onload="window.__z=1"></svg>`
)

// chromium returns the browser to drive. Without one the test skips, except in CI,
// where .ci/run installs Debian's chromium and a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH; CI must run the browser tests (.ci/run installs it)")
	}
	t.Skip("no chromium on PATH (install Debian's chromium package to run the browser tests)")
	return ""
}

// browser drives one headless Chromium against the test server and records every
// request it makes and every script error or CSP report.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	requests []string
	problems []string // dialogs, exceptions, CSP reports
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 700),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &browser{t: t, base: base}
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.record))
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	b.ctx = ctx
	// The first run starts the browser and binds it to its context: give it b.ctx itself,
	// not one of do's bounded children.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1000, 700)); err != nil {
		t.Fatal(err)
	}
	return b
}

// record runs on chromedp's reader goroutine: it only appends under the lock.
func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, e.Request.URL)
	case *page.EventJavascriptDialogOpening:
		b.problems = append(b.problems, "dialog: "+e.Message)
	case *runtime.EventExceptionThrown:
		b.problems = append(b.problems, "exception: "+e.ExceptionDetails.Text)
	case *log.EventEntryAdded:
		if strings.Contains(e.Entry.Text, "Content Security Policy") {
			b.problems = append(b.problems, "CSP: "+e.Entry.Text)
		}
	}
}

// do runs steps, each bounded so that a missing element fails with what the page shows
// rather than a timeout of the whole test.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		b.t.Fatalf("%v\nat %s, showing:\n%.2000s", err, loc, body)
	}
}

func (b *browser) open(path string) { b.t.Helper(); b.do(chromedp.Navigate(b.base + path)) }

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return strings.TrimPrefix(loc, b.base)
}

func hook(name string) chromedp.CSS { return chromedp.CSS(`[data-test="` + name + `"]`) }

func (b *browser) text(name string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(hook(name)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", name, err)
	}
	return strings.TrimSpace(s)
}

func (b *browser) count(name string) int {
	b.t.Helper()
	return evalJS[int](b, `document.querySelectorAll('[data-test="`+name+`"]').length`)
}

func evalJS[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// fill types into a hooked input and submits with a hooked button, then waits for the
// next page to have the hook wait.
func (b *browser) fill(input, value, submit, wait string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(hook(input)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-test="`+input+`"]').value = ""`),
		chromedp.SendKeys(hook(input), value), b.marked(), chromedp.Click(hook(submit)), b.fresh(wait))
}

// marked marks the current document, so that fresh finds an element of the next one,
// not of the page the click is leaving.
func (b *browser) marked() chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.stale = "1"`)
}

// fresh waits for a hooked element on a document that marked did not mark.
func (b *browser) fresh(name string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(`html:not([data-stale]) [data-test="` + name + `"]`))
}

func (b *browser) signIn(token, wait string) {
	b.t.Helper()
	b.fill("signin-token", token, "signin-submit", wait)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do(b.marked(), chromedp.Click(hook("signout-submit")), b.fresh("signin-token"))
}

// screenshot writes docs/console/name.png with -update.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	if !*update {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	dir := filepath.Join("..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// add appends events to the log fixture's stream and folds them into its projection, as
// ingest and the projector would.
func (f *logFixture) add(tb testing.TB, specs ...spec) {
	tb.Helper()
	logged := appendAll(tb, f.events, fixtureEvents(tb, uint64(len(f.stored))+1, specs))
	if _, err := f.proj.Apply(logged, f.folder); err != nil {
		tb.Fatal(err)
	}
	f.stored = append(f.stored, logged...)
}

// apiJSON reads one API answer with the auditor token.
func apiJSON[T any](t *testing.T, f *logFixture, target string) T {
	t.Helper()
	rec := f.get(t, target, auditorToken)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestConsoleInBrowser drives the console in a real headless Chromium against the real
// API server over a real projection and event log: sign-in, search, the timeline against
// the API's history, "as of" against the API's point-in-time state, roles, hostile text,
// the live change view, verify, sign-out; and no request leaves the server's origin.
func TestConsoleInBrowser(t *testing.T) {
	chromium(t) // skip before building anything when there is no browser
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last: after the browser and server stop

	f := newLogFixture(t, func(c *Config) { c.Lag = func() uint64 { return 0 } })
	f.add(t,
		spec{id: idHostile, app: app1, ext: hostileExt, typ: domain.EventApproved, at: 25 * time.Minute, recv: 25 * time.Minute, warnings: []string{hostileWarn}},
		spec{id: idHostile, app: app1, ext: hostileExt, typ: domain.EventStepPassed, at: 26 * time.Minute, recv: 26 * time.Minute, step: hostileStep, warnings: []string{hostileWarn}},
	)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	b := newBrowser(t, srv.URL)
	A := "/console/applicants/" + string(idA)
	// Each step builds on the browser state the one before left; after a failure the
	// rest would only time out.
	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}

	step("no session shows nothing", func(t *testing.T) {
		b.t = t
		for _, p := range []string{A, "/console/anomalies", "/console/changes", "/console/ops", "/console/"} {
			b.open(p)
			b.do(chromedp.WaitVisible(hook("signin-token")))
			if loc := b.location(); !strings.HasPrefix(loc, "/console/signin") {
				t.Errorf("%s: at %s, want the sign-in page", p, loc)
			}
			if n := b.count("applicant-status") + b.count("history-row") + b.count("anomaly-row") + b.count("change-row"); n != 0 {
				t.Errorf("%s: %d data elements without a session", p, n)
			}
		}
		b.screenshot("signin")
	})

	step("a wrong token is refused", func(t *testing.T) {
		b.t = t
		b.open("/console/signin")
		b.signIn(wrongToken, "error")
		if b.count("applicant-status") != 0 {
			t.Error("data shown after a refused sign-in")
		}
	})

	step("sign in returns to the page asked for", func(t *testing.T) {
		b.t = t
		b.open(A)
		b.signIn(auditorToken, "applicant-status")
		if loc := b.location(); loc != A {
			t.Errorf("after sign-in at %s, want %s", loc, A)
		}
		cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cookies.Cookies {
			if c.Name == "kycstate_console" {
				if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || strings.Contains(c.Value, auditorToken) {
					t.Errorf("session cookie %+v", c)
				}
			}
		}
		if strings.Contains(evalJS[string](b, `document.documentElement.outerHTML`), auditorToken) {
			t.Error("the token is in the page")
		}
	})

	step("search", func(t *testing.T) {
		b.t = t
		b.open("/console/")
		b.fill("search-input", "user-5", "search-submit", "applicant-status")
		if loc := b.location(); loc != "/console/applicants/"+string(idE) {
			t.Errorf("one match: at %s, want applicant E", loc)
		}
		want := apiJSON[client.State](t, f, "/v1/applicants/"+string(idE))
		if got := b.text("applicant-status"); got != *want.Status {
			t.Errorf("status %q, API says %q", got, *want.Status)
		}
		b.open("/console/")
		b.fill("search-input", "user-1", "search-submit", "search-row")
		if n := b.count("search-row"); n != 2 {
			t.Errorf("user-1: %d rows, want 2 (A in app1, C in app2)", n)
		}
		b.screenshot("search")
		b.open("/console/")
		b.fill("search-input", strings.ToUpper(string(idB)), "search-submit", "applicant-status")
		if loc := b.location(); loc != "/console/applicants/"+string(idB) {
			t.Errorf("by id: at %s", loc)
		}
		b.open("/console/")
		b.fill("search-input", "nobody-has-this", "search-submit", "error")
	})

	step("timeline matches the API's history", func(t *testing.T) {
		b.t = t
		for _, id := range []domain.ApplicantID{idA, idB, idC, idD} {
			b.open("/console/applicants/" + string(id))
			b.do(chromedp.WaitVisible(hook("applicant-status")))
			got := evalJS[[]string](b, `Array.from(document.querySelectorAll('[data-test="history-row"]')).map(e => e.dataset.seq + ":" + e.dataset.outcome)`)
			h := apiJSON[client.History](t, f, "/v1/applicants/"+string(id)+"/history")
			var want []string
			for _, e := range h.Events {
				want = append(want, strings.Join([]string{jsonNum(e.Seq), string(e.Outcome)}, ":"))
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s: rows %v, API history %v", id, got, want)
			}
			st := apiJSON[client.State](t, f, "/v1/applicants/"+string(id))
			if got, want := b.text("applicant-status"), statusOrNone(st.Status); got != want {
				t.Errorf("%s: status %q, API %q", id, got, want)
			}
		}
		b.open(A)
		b.do(chromedp.WaitVisible(hook("applicant-status")))
		b.screenshot("applicant")
	})

	step("as of matches the API's point-in-time state", func(t *testing.T) {
		b.t = t
		for _, seq := range []string{"3", "10", "13", "19"} {
			b.open(A)
			b.fill("asof-seq", seq, "asof-submit", "applicant-status")
			want := apiJSON[client.State](t, f, "/v1/applicants/"+string(idA)+"?seq="+seq)
			if got := b.text("applicant-status"); got != statusOrNone(want.Status) {
				t.Errorf("seq %s: %q, API %q", seq, got, statusOrNone(want.Status))
			}
			if seq == "13" {
				b.screenshot("applicant-asof")
			}
		}
		at := base.Add(12*time.Minute + 30*time.Second).Format(time.RFC3339)
		b.open(A)
		b.fill("asof-time", at, "asof-submit", "applicant-status")
		want := apiJSON[client.State](t, f, "/v1/applicants/"+string(idA)+"?at="+url.QueryEscape(at))
		if got := b.text("applicant-status"); got != statusOrNone(want.Status) {
			t.Errorf("at %s: %q, API %q", at, got, statusOrNone(want.Status))
		}
		b.open(A)
		b.fill("asof-seq", "not-a-number", "asof-submit", "error")
	})

	step("hostile text runs nothing", func(t *testing.T) {
		b.t = t
		b.open("/console/")
		b.fill("search-input", hostileExt, "search-submit", "applicant-status")
		if got := b.text("applicant-ext"); got != hostileExt {
			t.Errorf("externalUserId shown as %q, want the characters %q", got, hostileExt)
		}
		page := evalJS[string](b, `document.body.innerText`)
		for _, s := range []string{hostileWarn, hostileStep} {
			if !strings.Contains(page, s) {
				t.Errorf("%q not shown as text", s)
			}
		}
		for _, p := range []string{"/console/applicants/" + string(idHostile), "/console/anomalies", "/console/changes"} {
			b.open(p)
			b.do(chromedp.WaitReady(chromedp.CSS("main")))
			if ran := evalJS[bool](b, `window.__x !== undefined || window.__y !== undefined || window.__z !== undefined`); ran {
				t.Errorf("%s: hostile markup ran script", p)
			}
			if n := evalJS[int](b, `document.querySelectorAll('main script, main img, main svg').length`); n != 0 {
				t.Errorf("%s: %d elements made from log text", p, n)
			}
		}
	})

	step("anomalies name their applicants", func(t *testing.T) {
		b.t = t
		b.open("/console/anomalies")
		b.do(chromedp.WaitVisible(hook("anomaly-row")))
		want := apiJSON[client.Anomalies](t, f, "/v1/anomalies")
		if n := b.count("anomaly-row"); n != len(want.Anomalies) {
			t.Errorf("%d rows, API lists %d", n, len(want.Anomalies))
		}
		rows := evalJS[string](b, `Array.from(document.querySelectorAll('[data-test="anomaly-row"]')).map(e => e.innerText).join("\n")`)
		for _, a := range want.Anomalies {
			if !strings.Contains(rows, string(a.ApplicantID)) {
				t.Errorf("no row names %s", a.ApplicantID)
			}
		}
		b.screenshot("anomalies")
	})

	step("live changes follow the log", func(t *testing.T) {
		b.t = t
		b.open("/console/changes")
		b.do(chromedp.WaitVisible(hook("change-row")))
		want := apiJSON[client.Changes](t, f, "/v1/changes")
		before := b.count("change-row")
		if before != len(want.Changes) {
			t.Errorf("%d rows, API lists %d changes", before, len(want.Changes))
		}
		b.screenshot("changes")
		f.add(t, spec{id: idE, app: app1, ext: "user-5", typ: domain.EventIncomplete, at: 40 * time.Minute, recv: 40 * time.Minute})
		deadline := time.Now().Add(15 * time.Second)
		for b.count("change-row") == before {
			if time.Now().After(deadline) {
				t.Fatal("the new change did not appear: changes.js did not follow the feed")
			}
			time.Sleep(200 * time.Millisecond)
		}
		last := evalJS[string](b, `Array.from(document.querySelectorAll('[data-test="change-row"]')).pop().innerText`)
		if !strings.Contains(last, string(idE)) || !strings.Contains(last, "INCOMPLETE") {
			t.Errorf("appended row %q", last)
		}
	})

	step("ops and verify", func(t *testing.T) {
		b.t = t
		b.open("/console/ops")
		b.do(chromedp.WaitVisible(hook("ops-checkpoint")))
		if got, want := b.text("ops-checkpoint"), jsonNum(f.proj.Checkpoint()); got != want {
			t.Errorf("checkpoint %s, want %s", got, want)
		}
		if got := b.text("ops-lag"); got != "0 sequences behind the log" {
			t.Errorf("lag %q", got)
		}
		if got := b.text("ops-sweep"); got != "not configured on this node" {
			t.Errorf("sweep %q", got)
		}
		b.do(b.marked(), chromedp.Click(hook("verify-submit")), b.fresh("verify-result"))
		if got := b.text("verify-result"); !strings.Contains(got, "The projection matches the log.") {
			t.Errorf("verify: %q", got)
		}
		b.screenshot("ops")
	})

	step("a reader sees state, not history", func(t *testing.T) {
		b.t = t
		b.signOut()
		b.open(A)
		b.signIn(readerToken, "applicant-status")
		if n := b.count("history-row"); n != 0 {
			t.Errorf("reader sees %d history rows", n)
		}
		if b.count("asof-seq") != 0 || b.count("history-hidden") != 1 {
			t.Error("reader sees the as-of form, or no note on history")
		}
		b.screenshot("reader")
		b.open(A + "?seq=3")
		b.do(chromedp.WaitVisible(hook("error")))
		b.open("/console/anomalies")
		b.do(chromedp.WaitVisible(hook("error")))
		if b.count("anomaly-row") != 0 {
			t.Error("reader sees anomalies")
		}
	})

	step("signed out shows nothing", func(t *testing.T) {
		b.t = t
		b.open("/console/")
		b.do(chromedp.WaitVisible(hook("search-input")))
		b.signOut()
		b.open(A)
		b.do(chromedp.WaitVisible(hook("signin-token")))
		if b.count("applicant-status") != 0 {
			t.Error("state shown after sign-out")
		}
	})

	b.t = t
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) == 0 {
		t.Fatal("recorded no requests: the network listener saw nothing")
	}
	for _, u := range b.requests {
		if !strings.HasPrefix(u, srv.URL+"/") {
			t.Errorf("a request left the service: %s", u)
		}
		for _, tok := range []string{auditorToken, readerToken, wrongToken} {
			if strings.Contains(u, tok) {
				t.Errorf("a token in a URL: %s", u)
			}
		}
	}
	for _, p := range b.problems {
		t.Errorf("browser reported %s", p)
	}
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func statusOrNone(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}
