package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialerFrom dials from the loopback address src (127.0.0.0/8 is all loopback on Linux),
// so that one test can be several sources.
func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
}

// clientFrom is an HTTP client whose connections come from src.
func clientFrom(tb testing.TB, src string) *http.Client {
	tr := &http.Transport{DialContext: dialerFrom(src).DialContext}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// postWith is env.post through client.
func (e *env) postWith(tb testing.TB, client *http.Client, path string, body []byte, sig string) answer {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("x-allpass-signature", sig)
	resp, err := client.Do(req)
	if err != nil {
		return answer{status: -1, raw: []byte(err.Error())}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return decodeAnswer(tb, resp.StatusCode, resp.Header, raw)
}

// slowHeaders starts a webhook whose body (of declared length n) has not come yet.
func slowHeaders(path string, n int) string {
	return "POST " + path + " HTTP/1.1\r\nHost: kycstate\r\nContent-Type: application/json\r\n" +
		"x-allpass-signature: " + strings.Repeat("0", 64) + "\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", n)
}

// slowStats counts what the slow senders saw.
type slowStats struct {
	conns    atomic.Int64 // connections opened and headers sent
	answered atomic.Int64 // connections the server answered (then closed)
	tooSlow  atomic.Int64 // of those, answered body_too_slow
	refused  atomic.Int64 // of those, answered too_many_connections, or closed unanswered
}

// slowSender keeps a connection from src sending a webhook body one byte a second (the
// 1 s read between bytes is its clock); when the server answers or cuts it, it connects
// again, until ctx ends.
func slowSender(ctx context.Context, addr, src string, st *slowStats) {
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		c, err := dialerFrom(src).DialContext(ctx, "tcp", addr)
		if err != nil {
			continue
		}
		if _, err := io.WriteString(c, slowHeaders("/webhooks/allpass/cbc", 1000)); err != nil {
			c.Close()
			continue
		}
		st.conns.Add(1)
		for ctx.Err() == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if n > 0 || (err != nil && !isTimeout(err)) {
				st.answered.Add(1)
				switch s := string(buf[:n]); {
				case strings.Contains(s, CodeBodyTooSlow):
					st.tooSlow.Add(1)
				case n == 0, strings.Contains(s, CodeTooManyConnections):
					st.refused.Add(1)
				}
				break
			}
			if _, err := c.Write([]byte{'x'}); err != nil {
				break
			}
		}
		c.Close()
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSlowBodiesDoNotTakeSlots: 300 connections sending their bodies one byte a second,
// from five sources under the per-source cap, while 50 genuine webhooks arrive from a
// sixth: every genuine one is answered 200. The slow ones cost their own connections
// (cut at the minimum rate, 400 body_too_slow), never an in-flight slot: with 16 slots
// and a 2 s queue wait, a handler that took a slot before reading the body would answer
// the genuine ones 503 (issue 21, point 2).
func TestSlowBodiesDoNotTakeSlots(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds of slow senders")
	}
	const slow, genuine, sources = 300, 50, 5
	e := buildEnv(t, t.TempDir(), nil, &ListenerConfig{MaxConnsPerSource: DefaultMaxConnsPerSource},
		func(c *HandlerConfig) { c.MaxInFlight = 16 })
	addr := e.srv.Listener.Addr().String()

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var st slowStats
	for i := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slowSender(ctx, addr, fmt.Sprintf("127.0.0.%d", 10+i%sources), &st)
		}()
	}
	defer func() { stop(); wg.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for st.conns.Load() < slow {
		if time.Now().After(deadline) {
			t.Fatalf("only %d slow connections made", st.conns.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}

	client := clientFrom(t, "127.0.0.2")
	start := time.Now()
	answers := make([]answer, genuine)
	var gw sync.WaitGroup
	for i := range genuine {
		body, sig := seal(t, e.cbc, payload(e.cbc, 1000+i, "applicantCreated"), "2026-03-01T10:00:00Z")
		gw.Add(1)
		go func() {
			defer gw.Done()
			// Spread over 2.5 s: the slow senders are cut and come back meanwhile.
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			answers[i] = e.postWith(t, client, "/webhooks/allpass/cbc", body, sig)
		}()
	}
	gw.Wait()
	took := time.Since(start)
	for i, a := range answers {
		if a.status != http.StatusOK {
			t.Errorf("genuine webhook %d: %d %s", i, a.status, a.raw)
		}
	}
	stop()
	wg.Wait()
	t.Logf("%d genuine webhooks in %s beside %d slow connections (%d made, %d cut as too slow, %d refused)",
		genuine, took, slow, st.conns.Load(), st.tooSlow.Load(), st.refused.Load())
	if st.tooSlow.Load() == 0 || e.metric(t, "kycstate_ingest_rejects_total", map[string]string{"reason": CodeBodyTooSlow}) == 0 {
		t.Fatal("no slow sender was cut at the minimum rate")
	}
	if n := e.metric(t, "kycstate_ingest_connections_refused_total", nil); n != 0 {
		t.Fatalf("%v connections refused: the slow sources were under their cap", n)
	}
	if n := len(e.logged(t)); n != genuine {
		t.Fatalf("%d events, want %d", n, genuine)
	}
}

// TestSlowBodyCutAtMinimumRate: a body trickling below 1 KiB/s is answered 400
// body_too_slow once the first second is over, not after the server's read timeout.
func TestSlowBodyCutAtMinimumRate(t *testing.T) {
	e := newEnv(t)
	c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, slowHeaders("/webhooks/allpass/cbc", 5000)+strings.Repeat("x", 100)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	a := decodeAnswer(t, resp.StatusCode, resp.Header, raw)
	if a.status != http.StatusBadRequest || a.errCode != CodeBodyTooSlow {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	if took < minBodyGrace || took > 3*time.Second {
		t.Fatalf("cut after %s; want just after %s + 100 B at %d B/s", took, minBodyGrace, minBodyRate)
	}
}

// TestSlowBodyCutAtReadTimeout: a body above the minimum rate that has not ended by the
// read timeout is cut then.
func TestSlowBodyCutAtReadTimeout(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	e := newEnv(t, func(c *HandlerConfig) { c.ReadTimeout = timeout })
	c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, slowHeaders("/webhooks/allpass/cbc", 1<<20)); err != nil {
		t.Fatal(err)
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			got <- answer{status: -1, raw: []byte(err.Error())}
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	}()
	chunk := []byte(strings.Repeat("x", 1<<10))
	tick := time.NewTicker(250 * time.Millisecond) // 4 KiB/s, above the rate
	defer tick.Stop()
	for {
		select {
		case a := <-got:
			took := time.Since(start)
			if a.status != http.StatusBadRequest || !strings.Contains(string(a.raw), CodeBodyTooSlow) {
				t.Fatalf("answer %d %s", a.status, a.raw)
			}
			if took < timeout || took > timeout+time.Second {
				t.Fatalf("cut after %s, want the read timeout %s", took, timeout)
			}
			return
		case <-tick.C:
			if _, err := c.Write(chunk); err != nil {
				t.Fatalf("write before the answer: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("never cut")
		}
	}
}

func TestBodyClock(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	c := bodyClock{start: start, timeout: 5 * time.Second}
	for _, tc := range []struct {
		n    int64
		want time.Duration
	}{
		{0, time.Second},
		{512, 1500 * time.Millisecond},
		{1024, 2 * time.Second},
		{4096, 5 * time.Second},
		{1 << 20, 5 * time.Second},
	} {
		if got := c.deadline(tc.n).Sub(start); got != tc.want {
			t.Errorf("deadline after %d bytes: start+%s, want start+%s", tc.n, got, tc.want)
		}
	}
}

// TestConnsPerSourceCapped: a source holding max_conns_per_source connections has its
// next one refused (503 too_many_connections, or closed) while another source is
// served; once one of its connections closes, it is served again.
func TestConnsPerSourceCapped(t *testing.T) {
	const limit = 4
	e := buildEnv(t, t.TempDir(), nil, &ListenerConfig{MaxConnsPerSource: limit})
	addr := e.srv.Listener.Addr().String()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range limit {
		c, err := dialerFrom("127.0.0.10").Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		// One request answered, then idle: the connection stays open (keep-alive).
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: kycstate\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("healthz %d", resp.StatusCode)
		}
	}

	// The next one from the same source: answered 503 and closed, unread.
	c, err := dialerFrom("127.0.0.10").Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, err := io.ReadAll(c)
	c.Close()
	if isTimeout(err) {
		t.Fatal("a connection over the cap was left open")
	}
	if len(raw) > 0 && (!strings.HasPrefix(string(raw), "HTTP/1.1 503") || !strings.Contains(string(raw), CodeTooManyConnections)) {
		t.Fatalf("over the cap: %q", raw)
	}
	if len(raw) > 0 {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		decodeAnswer(t, resp.StatusCode, resp.Header, body)
		if resp.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	}
	if n := e.metric(t, "kycstate_ingest_connections_refused_total", nil); n != 1 {
		t.Fatalf("refused counter %v, want 1", n)
	}

	// Another source is served meanwhile.
	body, sig := seal(t, e.cbc, payload(e.cbc, 1, "applicantCreated"), "2026-03-01T10:00:00Z")
	if a := e.postWith(t, clientFrom(t, "127.0.0.2"), "/webhooks/allpass/cbc", body, sig); a.status != 200 {
		t.Fatalf("other source: %d %s", a.status, a.raw)
	}

	// One of the first source's connections ends: it has a place again.
	held[0].Close()
	held = held[1:]
	body, sig = seal(t, e.cbc, payload(e.cbc, 2, "applicantCreated"), "2026-03-01T10:00:00Z")
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr := &http.Transport{DialContext: dialerFrom("127.0.0.10").DialContext}
		a := e.postWith(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "/webhooks/allpass/cbc", body, sig)
		tr.CloseIdleConnections()
		if a.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first source is still refused after a connection closed: %d %s", a.status, a.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
