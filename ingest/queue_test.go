package ingest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// heldEnv is a handler whose first limit requests stop just before their append until
// release is closed, so that every in-flight slot is taken.
type heldEnv struct {
	*env
	arrived chan struct{}
	release chan struct{}
}

func newHeldEnv(t *testing.T, limit int, queueWait time.Duration) *heldEnv {
	t.Helper()
	h := &heldEnv{arrived: make(chan struct{}, 64), release: make(chan struct{})}
	h.env = newEnv(t, func(c *HandlerConfig) {
		c.MaxInFlight = limit
		c.QueueWait = queueWait
		c.beforeAppend = func() { h.arrived <- struct{}{}; <-h.release }
	})
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
	})
	return h
}

// send posts webhook n of the cbc app in the background; its answer arrives on the
// returned channel.
func (e *env) send(t *testing.T, n int) <-chan answer {
	t.Helper()
	body, sig := seal(t, e.cbc, payload(e.cbc, n, "applicantCreated"), "2026-03-01T10:00:00Z")
	out := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.srv.URL+"/webhooks/allpass/cbc", bytes.NewReader(body))
		req.Header.Set("x-allpass-signature", sig)
		resp, err := e.client.Do(req)
		if err != nil {
			out <- answer{status: -1, raw: []byte(err.Error())}
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	}()
	return out
}

func (e *env) waitGauge(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.metric(t, name, nil) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, e.metric(t, name, nil), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQueueWaitsForSlot: past MaxInFlight a request waits for a slot instead of being
// bounced, and is answered 200 once one frees.
func TestQueueWaitsForSlot(t *testing.T) {
	const limit = 2
	e := newHeldEnv(t, limit, 10*time.Second)
	var held []<-chan answer
	for i := range limit {
		held = append(held, e.send(t, i))
	}
	for range limit {
		<-e.arrived
	}
	e.waitGauge(t, "kycstate_ingest_inflight", limit)
	queued := []<-chan answer{e.send(t, 100), e.send(t, 101), e.send(t, 102)}
	e.waitGauge(t, "kycstate_ingest_queued", 3)
	close(e.release)
	for i, ch := range append(held, queued...) {
		if a := <-ch; a.status != 200 {
			t.Fatalf("request %d: %d %s", i, a.status, a.raw)
		}
	}
	if n := len(e.logged(t)); n != limit+3 {
		t.Fatalf("%d events, want %d", n, limit+3)
	}
	e.waitGauge(t, "kycstate_ingest_queued", 0)
	e.waitGauge(t, "kycstate_ingest_inflight", 0)
}

// TestQueuePastWaitIs503: a request that finds no slot within QueueWait is answered 503
// busy with Retry-After, its body unread and not kept; the held ones still succeed.
func TestQueuePastWaitIs503(t *testing.T) {
	const limit, wait = 2, 300 * time.Millisecond
	e := newHeldEnv(t, limit, wait)
	var held []<-chan answer
	for i := range limit {
		held = append(held, e.send(t, i))
	}
	for range limit {
		<-e.arrived
	}
	start := time.Now()
	body, sig := seal(t, e.cbc, payload(e.cbc, 99, "applicantCreated"), "2026-03-01T10:00:00Z")
	a := e.post(t, "/webhooks/allpass/cbc", body, sig)
	took := time.Since(start)
	if a.status != 503 || a.errCode != CodeBusy || a.header.Get("Retry-After") == "" {
		t.Fatalf("past the queue wait: %d %s", a.status, a.raw)
	}
	if took < wait {
		t.Fatalf("answered after %s, before the queue wait of %s", took, wait)
	}
	close(e.release)
	for i, ch := range held {
		if a := <-ch; a.status != 200 {
			t.Fatalf("held request %d: %d %s", i, a.status, a.raw)
		}
	}
	if n := len(e.rejects(t)); n != 0 {
		t.Fatalf("%d rejects kept for busy answers", n)
	}
	if a := e.post(t, "/webhooks/allpass/cbc", body, sig); a.status != 200 {
		t.Fatalf("after release: %d %s", a.status, a.raw)
	}
}

// TestShutdownAnswersQueued: Shutdown refuses every queued request at once (503 busy,
// well before its queue wait), lets the one in flight finish with 200, and returns only
// once all of them are answered: the log can close after it.
func TestShutdownAnswersQueued(t *testing.T) {
	e := newHeldEnv(t, 1, time.Minute)
	held := e.send(t, 0)
	<-e.arrived
	var queued []<-chan answer
	for i := range 4 {
		queued = append(queued, e.send(t, 10+i))
	}
	e.waitGauge(t, "kycstate_ingest_queued", 4)

	shut := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- e.srv.Config.Shutdown(ctx)
	}()
	for i, ch := range queued {
		a := <-ch
		if a.status != 503 || a.header.Get("Retry-After") == "" {
			t.Fatalf("queued request %d at shutdown: %d %s", i, a.status, a.raw)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("queued requests refused after %s", took)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(e.release)
	if a := <-held; a.status != 200 {
		t.Fatalf("in-flight request at shutdown: %d %s", a.status, a.raw)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if n := len(e.logged(t)); n != 1 {
		t.Fatalf("%d events, want the one answered 200", n)
	}
}
