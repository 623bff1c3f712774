package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// /readyz reflects the log: 200 while it answers, 503 with Retry-After once the JetStream
// server is gone, so a load balancer routes webhooks to another ingest node.
func TestReadyz(t *testing.T) {
	conn, log := mustLog(t, t.TempDir())
	cbc, _ := mustApps(t, mustVectors(t))
	h, err := NewHandler(HandlerConfig{
		Apps: []*App{cbc}, Log: log,
		Ready: func(ctx context.Context) error { _, err := log.LastSeq(ctx); return err },
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
	conn.Server().Shutdown()
	if rec := get(); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("log down: %d %v", rec.Code, rec.Header())
	}
}
