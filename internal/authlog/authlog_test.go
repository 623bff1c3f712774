package authlog

import (
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newRefusals(t *testing.T, lines int) (*Refusals, *observer.ObservedLogs, *fakeClock, *prometheus.Registry) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	clk := &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	r, err := New(Config{Logger: zap.New(core), Metrics: reg, Lines: lines, Every: time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r, logs, clk, reg
}

// TestRefusedRateLimited: a spray of 100 refusals logs Lines lines, every one with the
// source and the token's fingerprint and none with the token; once the window has passed,
// the next refusal brings one summary with the count left out. The counter counts all,
// and each listener has its own budget.
func TestRefusedRateLimited(t *testing.T) {
	r, logs, clk, reg := newRefusals(t, 5)
	api, console := r.Listener(ListenerAPI), r.Listener(ListenerConsole)
	src := netip.MustParseAddr("198.51.100.9")
	const token = "wrong-token-0123456789abcdef"
	for range 100 {
		api.Refused(src, token, "unknown token", zap.String("path", "/v1/anomalies"))
	}
	console.Refused(src, token, "unknown token")
	refused := logs.FilterMessage("authentication refused").All()
	if len(refused) != 6 {
		t.Fatalf("%d lines, want 5 of api and 1 of console", len(refused))
	}
	fp := r.Fingerprint(token)
	if !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q: want 8 hex characters", fp)
	}
	for _, e := range refused {
		m := e.ContextMap()
		if m["source"] != "198.51.100.9" || m["fingerprint"] != fp || m["reason"] != "unknown token" {
			t.Errorf("line %v: want the source, the fingerprint and the reason", m)
		}
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, token) {
				t.Errorf("field %s holds the token", k)
			}
		}
	}
	if n := logs.FilterMessage("authentication refusals not logged").Len(); n != 0 {
		t.Fatalf("%d summaries before the window ended", n)
	}
	clk.add(time.Minute)
	api.Refused(src, "", "no token")
	sum := logs.FilterMessage("authentication refusals not logged").All()
	if len(sum) != 1 || sum[0].ContextMap()["count"] != int64(95) || sum[0].ContextMap()["listener"] != ListenerAPI {
		t.Fatalf("summaries %v: want one of api counting 95", sum)
	}
	last := logs.All()[logs.Len()-1].ContextMap()
	if _, ok := last["fingerprint"]; ok || last["reason"] != "no token" {
		t.Errorf("a refusal without a token: %v, want no fingerprint", last)
	}
	if got := counted(t, reg); len(got) != 2 || got[ListenerAPI] != 101 || got[ListenerConsole] != 1 {
		t.Errorf("kycstate_auth_refused_total %v, want api 101 and console 1", got)
	}
}

// TestFingerprintPerProcess: one process gives a token one fingerprint; another process
// (another random key) gives it another, so a fingerprint cannot be computed ahead.
func TestFingerprintPerProcess(t *testing.T) {
	a, _, _, _ := newRefusals(t, 1)
	b, _, _, _ := newRefusals(t, 1)
	if a.Fingerprint("tok") != a.Fingerprint("tok") {
		t.Fatal("one process, two fingerprints of one token")
	}
	if a.Fingerprint("tok") == a.Fingerprint("tok2") {
		t.Error("two tokens, one fingerprint")
	}
	if a.Fingerprint("tok") == b.Fingerprint("tok") {
		t.Error("two processes, one fingerprint: the key is not per process")
	}
}

// counted reads kycstate_auth_refused_total by listener from reg.
func counted(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "kycstate_auth_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
