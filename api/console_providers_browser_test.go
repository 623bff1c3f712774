package api

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"go.uber.org/goleak"
)

// addProvider appends another provider's events to the log fixture's stream and folds
// them, as ingest and the projector would.
func (f *logFixture) addProvider(tb testing.TB, evs ...pev) {
	tb.Helper()
	logged := appendAll(tb, f.events, providerEvents(tb, uint64(len(f.stored))+1, evs))
	if _, err := f.proj.Apply(logged, f.folder); err != nil {
		tb.Fatal(err)
	}
	f.stored = append(f.stored, logged...)
}

// TestConsoleProvidersInBrowser drives the console in a real headless Chromium over a log
// holding a Sumsub applicant beside the fixture's Allpass ones (DESIGN.md section 13): the
// search lists both providers' applicants of one externalUserId, each with its provider;
// the Sumsub applicant's page shows provider and providerStatus on the state and on
// every history row, as the API answers them, and "as of" keeps to that applicant; the
// live change view names each change's provider.
func TestConsoleProvidersInBrowser(t *testing.T) {
	chromium(t) // skip before building anything when there is no browser
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last: after the browser and server stop

	f := newLogFixture(t, nil)
	m := time.Minute
	first := uint64(len(f.stored)) + 1
	f.addProvider(t,
		pev{provider: domain.ProviderSumsub, app: "ss", id: pSumsubID, ext: "user-1", typ: "applicantCreated", status: "init", at: 30 * m},
		pev{provider: domain.ProviderSumsub, app: "ss", id: pSumsubID, ext: "user-1", typ: "applicantPending", status: "pending", at: 31 * m},
		pev{provider: domain.ProviderSumsub, app: "ss", id: pSumsubID, ext: "user-1", typ: "applicantReviewed", status: "GREEN", at: 32 * m},
	)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	b := newBrowser(t, srv.URL)
	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}
	page := "/console/applicants/" + string(pSumsubID) + "?provider=sumsub"

	step("sign in", func(t *testing.T) {
		b.t = t
		b.open("/console/signin")
		b.signIn(auditorToken, "search-input")
	})

	step("search lists every provider's applicants", func(t *testing.T) {
		b.t = t
		b.open("/console/")
		b.fill("search-input", "user-1", "search-submit", "search-row")
		if n := b.count("search-row"); n != 3 {
			t.Fatalf("user-1: %d rows, want 3 (A and C of Allpass, one of Sumsub)", n)
		}
		providers := evalJS[string](b, `Array.from(document.querySelectorAll('[data-test="search-row"]')).map(r => r.dataset.provider).sort().join(",")`)
		if providers != "allpass,allpass,sumsub" {
			t.Errorf("row providers %q", providers)
		}
		b.do(b.marked(), chromedp.Click(`[data-test="search-row"][data-provider="sumsub"] a`), b.fresh("applicant-status"))
		if loc := b.location(); loc != page {
			t.Errorf("the Sumsub row opened %s, want %s", loc, page)
		}
	})

	step("the applicant page shows provider and providerStatus", func(t *testing.T) {
		b.t = t
		want := apiJSON[client.State](t, f, "/v1/applicants/"+string(pSumsubID)+"?provider=sumsub")
		if got := b.text("applicant-status"); got != *want.Status {
			t.Errorf("status %q, API says %q", got, *want.Status)
		}
		if got := b.text("applicant-provider"); got != "sumsub" {
			t.Errorf("provider %q", got)
		}
		if got := b.text("applicant-provider-status"); got != "GREEN" || got != *want.ProviderStatus {
			t.Errorf("provider's status %q, API says %q", got, *want.ProviderStatus)
		}
		h := apiJSON[client.History](t, f, "/v1/applicants/"+string(pSumsubID)+"/history?provider=sumsub")
		if n := b.count("history-row"); n != len(h.Events) || n != 3 {
			t.Fatalf("%d history rows, API lists %d", n, len(h.Events))
		}
		rows := evalJS[string](b, `Array.from(document.querySelectorAll('[data-test="history-row"]')).map(r =>
			r.dataset.seq + " " + r.dataset.provider + " " + r.querySelector('[data-test="history-provider-status"]').textContent).join("|")`)
		var want2 []string
		for _, e := range h.Events {
			want2 = append(want2, fmt.Sprintf("%d %s %s", e.Seq, e.Provider, *e.ProviderStatus))
		}
		if rows != strings.Join(want2, "|") {
			t.Errorf("history rows %q, API says %q", rows, strings.Join(want2, "|"))
		}
		if b.count("erase-submit") != 0 {
			t.Error("an erase form for another provider's applicant")
		}
		b.screenshot("applicant-provider")
	})

	step("as of keeps to the applicant", func(t *testing.T) {
		b.t = t
		seq := fmt.Sprint(first + 1) // applicantPending
		b.fill("asof-seq", seq, "asof-submit", "applicant-status")
		want := apiJSON[client.State](t, f, "/v1/applicants/"+string(pSumsubID)+"?provider=sumsub&seq="+seq)
		if got := b.text("applicant-status"); got != *want.Status || got != "IN_PROGRESS" {
			t.Errorf("as of %s: status %q, API says %q", seq, got, *want.Status)
		}
		if got := b.text("applicant-provider-status"); got != "pending" {
			t.Errorf("as of %s: provider's status %q, want pending", seq, got)
		}
		if loc := b.location(); !strings.Contains(loc, "provider=sumsub") {
			t.Errorf("as of at %s: the provider was dropped", loc)
		}
	})

	step("live changes name the provider", func(t *testing.T) {
		b.t = t
		b.open("/console/changes")
		b.do(chromedp.WaitVisible(hook("change-row")))
		n := evalJS[int](b, `document.querySelectorAll('[data-test="change-row"][data-provider="sumsub"]').length`)
		if n != 3 {
			t.Errorf("%d Sumsub change rows, want 3", n)
		}
		before := b.count("change-row")
		f.addProvider(t, pev{provider: domain.ProviderSumsub, app: "ss", id: pSumsubID, ext: "user-1", typ: "applicantReset", status: "", at: 40 * m})
		deadline := time.Now().Add(15 * time.Second)
		for b.count("change-row") == before {
			if time.Now().After(deadline) {
				t.Fatal("the new change did not appear: changes.js did not follow the feed")
			}
			time.Sleep(200 * time.Millisecond)
		}
		last := evalJS[string](b, `(r => r.dataset.provider + " " + r.innerText)(Array.from(document.querySelectorAll('[data-test="change-row"]')).pop())`)
		if !strings.HasPrefix(last, "sumsub ") || !strings.Contains(last, string(pSumsubID)) || !strings.Contains(last, "INCOMPLETE") {
			t.Errorf("appended row %q", last)
		}
	})
}
