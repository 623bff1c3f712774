package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/internal/authlog"
	"github.com/kycstate/kycstate/internal/source"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// signinFrom posts tok to sign-in from remote (with X-Forwarded-For xff if not empty)
// and returns the answer.
func (h *harness) signinFrom(tb testing.TB, remote, xff, tok string) *httptest.ResponseRecorder {
	tb.Helper()
	pre, csrf := h.signinForm(tb)
	req := httptest.NewRequest("POST", "/console/signin", strings.NewReader(url.Values{"token": {tok}, "csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = remote
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return h.doRequest(req, pre)
}

// mustRefuse and mustSignIn check one sign-in's answer.
func mustRefuse(tb testing.TB, rec *httptest.ResponseRecorder, what string) {
	tb.Helper()
	if rec.Code != http.StatusUnauthorized || cookieNamed(rec, sessionCookie) != nil {
		tb.Fatalf("%s: %d (session cookie %v), want 401 without a session", what, rec.Code, cookieNamed(rec, sessionCookie) != nil)
	}
}

func mustSignIn(tb testing.TB, rec *httptest.ResponseRecorder, what string) {
	tb.Helper()
	if rec.Code != http.StatusSeeOther || cookieNamed(rec, sessionCookie) == nil {
		tb.Fatalf("%s: %d, want 303 with a session\n%s", what, rec.Code, rec.Body)
	}
}

// TestSigninNeverLockedOut: six wrong tokens from one address, then the right one: signed
// in. After a hundred more wrong ones, the admin token still signs in, held no longer
// than the cap. Before, the sixth attempt got 429 whatever its token.
func TestSigninNeverLockedOut(t *testing.T) {
	h := newHarness(t)
	const officer = "192.0.2.10:40000"
	for i := range 6 {
		mustRefuse(t, h.signinFrom(t, officer, "", fmt.Sprintf("wrong-%d", i)), fmt.Sprintf("wrong token %d", i+1))
	}
	mustSignIn(t, h.signinFrom(t, officer, "", auditorTok), "the right token after six wrong ones")
	for i := range 100 {
		mustRefuse(t, h.signinFrom(t, officer, "", fmt.Sprintf("spray-%d", i)), "spray")
	}
	h.takeHolds()
	mustSignIn(t, h.signinFrom(t, officer, "", adminTok), "the admin token after a hundred more")
	if holds := h.takeHolds(); len(holds) != 1 || holds[0] != defaultMaxHold {
		t.Errorf("holds of the sign-in at a hot source: %v, want one of %s (the cap)", holds, defaultMaxHold)
	}
}

// TestSigninSprayIsSlowed: a spray of wrong tokens from one source is held, measured by
// the console's Sleep hook on the test clock: the first five attempts are not, the sixth
// is held firstHold, each later one twice as long as the one before, from the ninth on
// the cap, never more. Another source is not held. Once the spray stops, the source
// cools: two minutes later an attempt is not held.
func TestSigninSprayIsSlowed(t *testing.T) {
	h := newHarness(t)
	const attacker = "198.51.100.7:5555"
	var holds []time.Duration
	for i := range 30 {
		mustRefuse(t, h.signinFrom(t, attacker, "", fmt.Sprintf("guess-%d", i)), "guess")
		hs := h.takeHolds()
		var d time.Duration
		if len(hs) > 0 {
			d = hs[0]
		}
		holds = append(holds, d)
	}
	t.Logf("holds of 30 guesses: %v", holds)
	for i, d := range holds {
		n := i + 1
		switch {
		case n <= defaultFreeFailures && d != 0:
			t.Errorf("guess %d held %s; the first %d are not", n, d, defaultFreeFailures)
		case n == defaultFreeFailures+1 && d != defaultFirstHold:
			t.Errorf("guess %d held %s, want %s", n, d, defaultFirstHold)
		case n > defaultFreeFailures+1 && n < defaultFreeFailures+4 && d != 2*holds[i-1]:
			t.Errorf("guess %d held %s, want twice the one before (%s)", n, d, holds[i-1])
		case n >= defaultFreeFailures+4 && d != defaultMaxHold:
			t.Errorf("guess %d held %s, want the cap %s", n, d, defaultMaxHold)
		case d > defaultMaxHold:
			t.Errorf("guess %d held %s, over the cap", n, d)
		}
	}
	var total time.Duration
	for _, d := range holds {
		total += d
	}
	// The 30 answers took at least this long on the console's clock: at most one guess
	// per cap once the source is hot.
	if least := time.Duration(30-defaultFreeFailures-3) * defaultMaxHold; total < least {
		t.Errorf("30 guesses held %s in all, want at least %s", total, least)
	}
	mustRefuse(t, h.signinFrom(t, "198.51.100.8:1", "", "guess"), "another source")
	if hs := h.takeHolds(); len(hs) != 0 {
		t.Errorf("another source was held %v", hs)
	}
	h.clock.add(2 * time.Minute)
	mustRefuse(t, h.signinFrom(t, attacker, "", "guess"), "after a pause")
	if hs := h.takeHolds(); len(hs) != 0 {
		t.Errorf("two minutes after the spray, held %v", hs)
	}
}

// TestSigninHoldSaysNothing: at a hot source the right token is held exactly as long as
// a wrong one would be, so neither the answer's delay nor a client that gives up early
// learns whether a guess was right before the hold is over.
func TestSigninHoldSaysNothing(t *testing.T) {
	const src = "203.0.113.5:1"
	var holds [2][]time.Duration
	for i, last := range []string{auditorTok, "wrong-last"} {
		h := newHarness(t)
		for j := range 7 {
			h.signinFrom(t, src, "", fmt.Sprintf("wrong-%d", j))
		}
		h.takeHolds()
		h.signinFrom(t, src, "", last)
		holds[i] = h.takeHolds()
	}
	if len(holds[0]) != 1 || len(holds[1]) != 1 || holds[0][0] != holds[1][0] {
		t.Fatalf("held %v for the right token and %v for a wrong one: want one equal hold", holds[0], holds[1])
	}
}

// TestSigninHoldCancelled: a browser that goes away during the hold gets nothing, and no
// session is made.
func TestSigninHoldCancelled(t *testing.T) {
	h := newHarness(t)
	const src = "192.0.2.99:1"
	for j := range 6 {
		h.signinFrom(t, src, "", fmt.Sprintf("wrong-%d", j))
	}
	pre, csrf := h.signinForm(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "/console/signin", strings.NewReader(url.Values{"token": {auditorTok}, "csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = src
	rec := h.doRequest(req, pre)
	if rec.Body.Len() != 0 || cookieNamed(rec, sessionCookie) != nil || len(h.takeHolds()) == 0 {
		t.Fatalf("cancelled during the hold: %d %q, want nothing written", rec.Code, rec.Body)
	}
}

// TestSigninTrustedProxies: X-Forwarded-For is believed only from a trusted proxy. A
// client that is not one cannot move itself to a fresh bucket by writing the header; two
// officers behind the proxy are told apart by it.
func TestSigninTrustedProxies(t *testing.T) {
	trusted, err := source.ParseCIDR("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, func(c *Config) { c.Proxies = source.NewProxies([]netip.Prefix{trusted}) })

	// Spoofed: a different X-Forwarded-For on every attempt from one untrusted address.
	for i := range 6 {
		h.signinFrom(t, "192.0.2.1:1000", fmt.Sprintf("198.51.100.%d", i+1), "wrong")
	}
	if hs := h.takeHolds(); len(hs) != 1 || hs[0] != defaultFirstHold {
		t.Errorf("spoofed X-Forwarded-For: holds %v, want the sixth attempt held %s (one bucket)", hs, defaultFirstHold)
	}

	// Through the proxy: officer A fails six times; B is not held; A's token signs in.
	const proxy = "10.0.0.1:443"
	for range 6 {
		h.signinFrom(t, proxy, "203.0.113.10", "wrong")
	}
	if hs := h.takeHolds(); len(hs) != 1 {
		t.Errorf("six failures of A behind the proxy: holds %v, want the sixth held", hs)
	}
	mustSignIn(t, h.signinFrom(t, proxy, "203.0.113.11", readerTok), "B behind the proxy")
	if hs := h.takeHolds(); len(hs) != 0 {
		t.Errorf("B shares A's bucket: held %v", hs)
	}
	// A second proxy hop that is trusted too, and entries a client wrote to the left.
	mustSignIn(t, h.signinFrom(t, proxy, "6.6.6.6, 203.0.113.10, 10.0.0.2", readerTok), "A through two proxies")
	if hs := h.takeHolds(); len(hs) != 1 {
		t.Errorf("A through two proxies: holds %v, want A's bucket", hs)
	}
}

// TestSigninRefusalLogged: a failed sign-in is logged with the source (the client behind
// the trusted proxy) and the token's fingerprint, never the token; a spray is logged
// within the line budget and counted whole.
func TestSigninRefusalLogged(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	lg := zap.New(core)
	refusals, err := authlog.New(authlog.Config{Logger: lg, Lines: 3})
	if err != nil {
		t.Fatal(err)
	}
	trusted, _ := source.ParseCIDR("10.0.0.0/8")
	h := newHarnessWith(t, func(c *Config) {
		c.Logger = lg
		c.Refusals = refusals.Listener(authlog.ListenerConsole)
		c.Proxies = source.NewProxies([]netip.Prefix{trusted})
	})
	const wrong = "wrong-token-that-must-not-be-logged"
	for range 10 {
		h.signinFrom(t, "10.0.0.1:443", "203.0.113.10", wrong)
	}
	lines := logs.FilterMessage("authentication refused").All()
	if len(lines) != 3 {
		t.Fatalf("%d lines for 10 failures, want the budget of 3", len(lines))
	}
	for _, e := range lines {
		m := e.ContextMap()
		if m["source"] != "203.0.113.10" || m["fingerprint"] != refusals.Fingerprint(wrong) || m["listener"] != "console" {
			t.Errorf("line %v: want the client's address, the fingerprint and the listener", m)
		}
	}
	for _, e := range logs.All() {
		if strings.Contains(e.Message, wrong) {
			t.Errorf("message %q holds the token", e.Message)
		}
		for k, v := range e.ContextMap() {
			if strings.Contains(fmt.Sprint(v), wrong) {
				t.Errorf("%q: field %s holds the token", e.Message, k)
			}
		}
	}
}

func TestSlowerMemoryBounded(t *testing.T) {
	s := newSlower(2, time.Minute, time.Second, 4*time.Second, 100)
	now := time.Now()
	for i := range 20_000 {
		s.attempt(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now, true)
	}
	if n := s.size(); n > 101 {
		t.Fatalf("%d levels, want at most 101", n)
	}
	// Sources it does not track share the overflow level, which the spray made hot.
	if d := s.attempt("10.200.0.3", now, false); d != 4*time.Second {
		t.Errorf("an untracked source past a full slower: held %s, want the overflow's %s", d, 4*time.Second)
	}
	// Once time passes, cooled levels are forgotten and new sources tracked again.
	later := now.Add(time.Hour)
	s.attempt("10.201.0.1", later, true)
	if n := s.size(); n > 2 {
		t.Errorf("%d levels after the sweep", n)
	}
	// A success never makes a level.
	s.attempt("10.202.0.1", later, false)
	if n := s.size(); n > 2 {
		t.Errorf("%d levels after a success", n)
	}
}
