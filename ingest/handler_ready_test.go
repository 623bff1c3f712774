package ingest

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/ingest/allpass"
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
