package ingest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
)

// /readyz reflects the log: 200 while it answers, 503 with Retry-After once the JetStream
// server is gone, so a load balancer routes webhooks to another ingest node.
func TestReadyz(t *testing.T) {
	conn, events := mustLog(t, t.TempDir())
	cbc, _ := mustApps(t, mustVectors(t))
	h, err := NewHandler(HandlerConfig{
		Apps: []*allpass.App{cbc}, Events: events,
		Ready: func(ctx context.Context) error { _, err := events.LastSeq(ctx); return err },
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec
	}
	if rec := get(); rec.Code != http.StatusOK {
		t.Fatalf("log up: %d %s", rec.Code, rec.Body)
	}
	conn.NS.Shutdown()
	if rec := get(); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("log down: %d %v", rec.Code, rec.Header())
	}
}

// A log that answers reads but refuses writes (here: a stream at its message limit with
// Discard new; in production, nats-server after its disk filled) takes the node out of
// rotation: /readyz is 503 while appends fail, and ready again once one succeeds or after
// the window, so the node is tried again.
func TestReadyzFollowsAppends(t *testing.T) {
	conn, events := mustLog(t, t.TempDir())
	cbc, _ := mustApps(t, mustVectors(t))
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, err := NewHandler(HandlerConfig{
		Apps: []*allpass.App{cbc}, Events: events, Now: clock,
		Ready: func(ctx context.Context) error { _, err := events.LastSeq(ctx); return err },
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, body []byte, sig string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("x-allpass-signature", sig)
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	post := func(n int) int {
		body, sig := seal(t, cbc, payload(cbc, n, "applicantCreated"), "2026-03-01T10:00:00.000Z")
		return do(http.MethodPost, "/webhooks/allpass/"+cbc.Name, body, sig)
	}
	if code := post(1); code != http.StatusOK {
		t.Fatalf("first webhook: %d", code)
	}
	ctx := context.Background()
	stream, err := conn.JS.Stream(ctx, eventlog.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgs = 1
	if _, err := conn.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if code := do(http.MethodGet, "/readyz", nil, ""); code != http.StatusOK {
		t.Fatalf("readyz before any failed append: %d", code)
	}
	if code := post(2); code != http.StatusServiceUnavailable {
		t.Fatalf("webhook to a full stream: %d, want 503", code)
	}
	if code := do(http.MethodGet, "/readyz", nil, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while appends fail and reads work: %d, want 503", code)
	}
	mu.Lock()
	now = now.Add(appendFailWindow + time.Second)
	mu.Unlock()
	if code := do(http.MethodGet, "/readyz", nil, ""); code != http.StatusOK {
		t.Fatalf("readyz after the window: %d, want 200 so the node is tried again", code)
	}
	cfg.MaxMsgs = -1
	if _, err := conn.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if post(3) != http.StatusOK || do(http.MethodGet, "/readyz", nil, "") != http.StatusOK {
		t.Fatal("not ready after a good append")
	}
}

// A webhook under ingest.max_body whose stored event, sealed, is over the server's
// maximum payload (an external cluster keeps nats-server's 1 MiB default) is the
// request's own fault: 413 for it alone. The node stays ready, the refusal is counted
// as refused (not unavailable), and the next webhook is stored. (It was recorded as a
// failure of the log: /readyz 503 for 30 s, for every webhook the node would take.)
func TestSealedOverMaxPayloadIs413AndNodeStaysReady(t *testing.T) {
	const maxPayload = 64 << 10
	e := newEnvServer(t, t.TempDir(), []jstest.Option{jstest.MaxPayload(maxPayload)})
	readyz := func() int {
		req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	p := payload(e.cbc, 1, "applicantCreated")
	p["padding"] = strings.Repeat("x", maxPayload/2) // the body is about twice that, under 1 MiB
	body, sig := seal(t, e.cbc, p, "2026-03-01T10:00:00Z")
	if len(body) >= DefaultMaxBody || len(body) < maxPayload/2 {
		t.Fatalf("body of %d bytes: the test needs it under max_body", len(body))
	}
	a := e.post(t, "/webhooks/allpass/cbc", body, sig)
	if a.status != http.StatusRequestEntityTooLarge || a.errCode != CodeBodyTooLarge {
		t.Fatalf("sealed over the maximum payload: %d %s, want 413 %s", a.status, a.raw, CodeBodyTooLarge)
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("readyz after a webhook too large for the log: %d, want 200", code)
	}
	for _, c := range []struct {
		outcome string
		want    float64
	}{{outcomeRefused, 1}, {outcomeUnavailable, 0}, {outcomeError, 0}} {
		if got := e.metric(t, "kycstate_ingest_requests_total",
			map[string]string{"app": "cbc", "outcome": c.outcome}); got != c.want {
			t.Errorf("requests{outcome=%s} = %v, want %v", c.outcome, got, c.want)
		}
	}
	if n := e.lastSeq(t); n != 0 {
		t.Fatalf("stream at %d after a refusal", n)
	}
	body, sig = seal(t, e.cbc, payload(e.cbc, 2, "applicantCreated"), "2026-03-01T10:00:01Z")
	if a := e.post(t, "/webhooks/allpass/cbc", body, sig); a.status != http.StatusOK || a.seq != 1 {
		t.Fatalf("next webhook: %d %s", a.status, a.raw)
	}
}
