package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/ingest/allpass/allpasstest"
	"github.com/kycstate/kycstate/internal/httperr"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// httpVectorFile is the shape of the shared Allpass vectors.
type httpVectorFile struct {
	App struct {
		AppKey    string `json:"app_key"`
		SecretKey string `json:"secret_key"`
		HMACKey   string `json:"hmac_key"`
	} `json:"app"`
	Cases []struct {
		Name    string            `json:"name"`
		Method  allpass.Method    `json:"method"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
		Expect  struct {
			OK        bool   `json:"ok"`
			Plaintext string `json:"plaintext"`
			Reason    string `json:"reason"`
		} `json:"expect"`
	} `json:"cases"`
}

func mustVectors(tb testing.TB) httpVectorFile {
	tb.Helper()
	b := allpasstest.Vectors(tb)
	var v httpVectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatal(err)
	}
	if len(v.Cases) == 0 {
		tb.Fatal("no vectors")
	}
	return v
}

// mustApps returns the vectors' app twice, once per method, named after the method: the
// vectors use one appKey and one set of keys for both.
func mustApps(tb testing.TB, v httpVectorFile) (cbc, gcm *allpass.App) {
	tb.Helper()
	secret, err := allpass.ParseKey("vectors", "secret_key", v.App.SecretKey)
	if err != nil {
		tb.Fatal(err)
	}
	mac, err := allpass.ParseHMACKey("vectors", "hmac_key", v.App.HMACKey)
	if err != nil {
		tb.Fatal(err)
	}
	keys := []allpass.Keys{{Secret: secret, HMAC: mac}}
	key := domain.AppKey(v.App.AppKey)
	return &allpass.App{Name: "cbc", AppKey: key, Method: allpass.MethodCBC, Keys: keys},
		&allpass.App{Name: "gcm", AppKey: key, Method: allpass.MethodGCM, Keys: keys}
}

// env is one handler on a real embedded JetStream server behind a real HTTP server.
type env struct {
	dir      string
	conn     *jstest.Server
	events   *eventlog.EventLog
	cbc, gcm *allpass.App
	reg      *prometheus.Registry
	logs     *observer.ObservedLogs
	srv      *httptest.Server
	client   *http.Client
}

type envOption func(*HandlerConfig)

func mustLog(tb testing.TB, dir string, opts ...jstest.Option) (*jstest.Server, *eventlog.EventLog) {
	tb.Helper()
	js := jstest.StartIn(tb, dir, opts...)
	return js, js.EventLog(tb, eventlog.Config{}, zap.NewNop())
}

func newEnv(tb testing.TB, opts ...envOption) *env {
	tb.Helper()
	return newEnvAt(tb, tb.TempDir(), opts...)
}

func newEnvAt(tb testing.TB, dir string, opts ...envOption) *env {
	tb.Helper()
	return newEnvServer(tb, dir, nil, opts...)
}

// newEnvServer is newEnvAt with the JetStream server's options.
func newEnvServer(tb testing.TB, dir string, js []jstest.Option, opts ...envOption) *env {
	tb.Helper()
	return buildEnv(tb, dir, js, nil, opts...)
}

// buildEnv is newEnvServer with, when lc is set, the HTTP server's listener wrapped in
// Listener(lc) as serve wraps it.
func buildEnv(tb testing.TB, dir string, js []jstest.Option, lc *ListenerConfig, opts ...envOption) *env {
	tb.Helper()
	e := &env{dir: dir, reg: prometheus.NewRegistry()}
	e.conn, e.events = mustLog(tb, dir, js...)
	e.cbc, e.gcm = mustApps(tb, mustVectors(tb))
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	cfg := HandlerConfig{
		Apps:    []*allpass.App{e.cbc, e.gcm},
		Events:  e.events,
		Logger:  zap.New(core),
		Metrics: e.reg,
		KeepRaw: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(h)
	e.srv.Config = NewHTTPServer("", h)
	if lc != nil {
		lc.Metrics = e.reg
		if e.srv.Listener, err = Listener(e.srv.Listener, *lc); err != nil {
			tb.Fatal(err)
		}
	}
	e.srv.Start()
	tb.Cleanup(e.srv.Close)
	e.client = e.srv.Client()
	e.client.Timeout = 30 * time.Second
	return e
}

// answer is a decoded reply of the handler.
type answer struct {
	status     int
	header     http.Header
	raw        []byte
	seq        uint64
	duplicate  bool
	errCode    string
	errMessage string
}

func (e *env) post(tb testing.TB, path string, body []byte, sig string) answer {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("x-allpass-signature", sig)
	}
	return e.do(tb, req)
}

func (e *env) do(tb testing.TB, req *http.Request) answer {
	tb.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return decodeAnswer(tb, resp.StatusCode, resp.Header, raw)
}

// decodeAnswer checks the reply's shape: a 200 is {"seq","duplicate"}, anything else
// that the handler wrote is {"error":{"code","message"}}.
func decodeAnswer(tb testing.TB, status int, header http.Header, raw []byte) answer {
	tb.Helper()
	a := answer{status: status, header: header, raw: raw}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("status %d: Content-Type %q, body %q", status, ct, raw)
	}
	if status == http.StatusOK {
		var ok struct {
			Seq       *uint64 `json:"seq"`
			Duplicate *bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(raw, &ok); err != nil || ok.Seq == nil || ok.Duplicate == nil {
			tb.Fatalf("200 body %q is not {seq,duplicate}: %v", raw, err)
		}
		a.seq, a.duplicate = *ok.Seq, *ok.Duplicate
		return a
	}
	var e httperr.Body
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		tb.Fatalf("status %d: body %q is not a JSON error: %v", status, raw, err)
	}
	a.errCode, a.errMessage = e.Error.Code, e.Error.Message
	return a
}

func (e *env) lastSeq(tb testing.TB) uint64 {
	tb.Helper()
	seq, err := e.events.LastSeq(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

// logged reads the whole event stream back, each event decoded whole (Read leaves out
// the raw body, which these tests check).
func (e *env) logged(tb testing.TB) []domain.Event {
	tb.Helper()
	var all []domain.Event
	err := e.events.Read(context.Background(), 1, 256, func(evs []domain.Event) error {
		for _, ev := range evs {
			all = append(all, decodeWhole(tb, ev))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return all
}

// eventAt reads the event stored at seq.
func (e *env) eventAt(tb testing.TB, seq uint64) domain.Event {
	tb.Helper()
	return readOne(tb, e.events, seq)
}

func (e *env) rejects(tb testing.TB) []domain.Reject {
	tb.Helper()
	var all []domain.Reject
	if err := e.events.Rejects(context.Background(), 1, func(r domain.Reject) error {
		all = append(all, r)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return all
}

// metric returns the value of the counter or gauge name with the given labels (0 when
// the series does not exist).
func (e *env) metric(tb testing.TB, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, l := range m.GetLabel() {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

// seal makes a webhook for app with the given payload fields.
func seal(tb testing.TB, app *allpass.App, fields map[string]any, envTime string) (body []byte, sig string) {
	tb.Helper()
	plaintext, err := json.Marshal(fields)
	if err != nil {
		tb.Fatal(err)
	}
	body, sig, err = allpass.Seal(app.Method, app.Keys[0], plaintext, envTime, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return body, sig
}

// applicant is the n-th test applicant id, a valid UUID.
func applicant(n int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n) }

func payload(app *allpass.App, n int, typ string) map[string]any {
	return map[string]any{"type": typ, "id": applicant(n), "appKey": string(app.AppKey),
		"externalUserId": fmt.Sprintf("user-%d", n)}
}

// vectorStatus is the status DESIGN.md section 3 gives each kind of bad vector.
func vectorStatus(reason, name string) int {
	switch reason {
	case "signature", "decrypt":
		return http.StatusUnauthorized
	case "envelope":
		return http.StatusBadRequest
	case "payload":
		if strings.Contains(name, "not_json") { // plaintext that is not JSON: malformed
			return http.StatusBadRequest
		}
		return http.StatusUnprocessableEntity
	}
	return 0
}

// TestVectorsOverHTTP posts every shared vector, to its app's path and to the generic
// path, and checks the status, what the log holds, and what rejects keeps.
func TestVectorsOverHTTP(t *testing.T) {
	v := mustVectors(t)
	e := newEnv(t)
	var authRefused, unauthRefused int
	start := time.Now()
	for _, c := range v.Cases {
		name := map[allpass.Method]string{allpass.MethodCBC: "cbc", allpass.MethodGCM: "gcm"}[c.Method]
		for _, path := range []string{"/webhooks/allpass/" + name, "/webhooks/allpass",
			"/webhooks/allpass/" + strings.ToUpper(v.App.AppKey)} {
			t.Run(c.Name+path, func(t *testing.T) {
				before := e.lastSeq(t)
				sig := c.Headers["x-allpass-signature"]
				a := e.post(t, path, []byte(c.Body), sig)
				if !c.Expect.OK {
					if c.Expect.Reason == "payload" {
						authRefused++ // the MAC verified: kept whole
					} else {
						unauthRefused++ // kept as a sample, within the budget
					}
					if want := vectorStatus(c.Expect.Reason, c.Name); a.status != want {
						t.Fatalf("status %d (%s), want %d", a.status, a.raw, want)
					}
					if after := e.lastSeq(t); after != before {
						t.Fatalf("refused vector moved the stream from %d to %d", before, after)
					}
					if sig != "" && strings.Contains(string(a.raw), sig) {
						t.Fatal("error answer echoes the signature")
					}
					return
				}
				if a.status != http.StatusOK {
					t.Fatalf("status %d (%s), want 200", a.status, a.raw)
				}
				ev := e.eventAt(t, a.seq)
				if string(ev.Payload) != c.Expect.Plaintext {
					t.Fatalf("stored payload %s, want %s", ev.Payload, c.Expect.Plaintext)
				}
				if ev.Raw == nil || ev.Raw.Body != c.Body || ev.Raw.Signature != sig {
					t.Fatal("raw body and signature not kept")
				}
				// The same delivery again (Allpass retrying) is the same event.
				again := e.post(t, path, []byte(c.Body), sig)
				if again.status != http.StatusOK || !again.duplicate || again.seq != a.seq {
					t.Fatalf("resend: %d %s, want 200 duplicate seq %d", again.status, again.raw, a.seq)
				}
				if after := e.lastSeq(t); after != a.seq && path == "/webhooks/allpass/"+name {
					t.Fatalf("last seq %d after the first post at %d", after, a.seq)
				}
			})
		}
	}
	var valid int
	for _, c := range v.Cases {
		if c.Expect.OK {
			valid++
		}
	}
	if got := len(e.logged(t)); got != valid {
		t.Fatalf("stream holds %d events, want one per valid vector (%d)", got, valid)
	}
	// Every refusal of an authenticated webhook is kept; the others are sampled, one
	// source's budget being sampleBurst at once and one a second after.
	var auth, samples int
	for _, r := range e.rejects(t) {
		switch r.Kept {
		case domain.KeptAuthenticated:
			auth++
		case domain.KeptSample:
			samples++
		}
	}
	if auth != authRefused {
		t.Fatalf("%d authenticated rejects kept, want one per refused authenticated post (%d)", auth, authRefused)
	}
	lo := min(unauthRefused, sampleBurst)
	hi := min(unauthRefused, sampleBurst+int(time.Since(start)/sampleEvery)+1)
	if samples < lo || samples > hi {
		t.Fatalf("%d samples of %d unauthenticated refusals, want %d to %d", samples, unauthRefused, lo, hi)
	}
}

// TestHostileInput sends what a scanner or a broken sender might: each gets its status and
// a JSON error, and none reaches the event stream.
func TestHostileInput(t *testing.T) {
	e := newEnv(t, func(c *HandlerConfig) { c.MaxBody = 1 << 20 })
	good, goodSig := seal(t, e.cbc, payload(e.cbc, 1, "applicantCreated"), "2026-03-01T10:00:00Z")

	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	badID := func(id string) func() ([]byte, string) {
		return func() ([]byte, string) {
			p := payload(e.cbc, 2, "applicantCreated")
			p["id"] = id
			return seal(t, e.cbc, p, "2026-03-01T10:00:00Z")
		}
	}
	fixed := func(body, sig string) func() ([]byte, string) {
		return func() ([]byte, string) { return []byte(body), sig }
	}
	cases := []struct {
		name   string
		method string
		path   string
		make   func() ([]byte, string)
		header map[string]string
		status int
		code   string
		kept   bool // in rejects
	}{
		{"empty body", "POST", "/webhooks/allpass/cbc", fixed("", goodSig), nil, 400, allpass.CodeMalformedEnvelope, true},
		{"not JSON", "POST", "/webhooks/allpass/cbc", fixed("hello=world", goodSig), nil, 400, allpass.CodeMalformedEnvelope, true},
		{"JSON array", "POST", "/webhooks/allpass", fixed("[1,2,3]", goodSig), nil, 400, allpass.CodeMalformedEnvelope, true},
		{"2 MiB body", "POST", "/webhooks/allpass/cbc", fixed(`{"data":"`+strings.Repeat("a", 2<<20)+`"}`, goodSig), nil, 413, CodeBodyTooLarge, false},
		{"wrong method", "GET", "/webhooks/allpass/cbc", fixed("", ""), nil, 405, CodeMethodNotAllowed, false},
		{"wrong method generic", "PUT", "/webhooks/allpass", fixed(string(good), goodSig), nil, 405, CodeMethodNotAllowed, false},
		{"unknown app", "POST", "/webhooks/allpass/nosuchapp", fixed(string(good), goodSig), nil, 404, CodeUnknownApp, false},
		{"unknown app with dots", "POST", "/webhooks/allpass/a.b.%3E", fixed(string(good), goodSig), nil, 404, CodeUnknownApp, false},
		{"unknown path", "POST", "/webhooks/allpass/cbc/extra", fixed(string(good), goodSig), nil, 404, CodeNoRoute, false},
		{"bad signature", "POST", "/webhooks/allpass/cbc", fixed(string(good), strings.Repeat("0", 64)), nil, 401, allpass.CodeBadSignature, true},
		{"missing signature", "POST", "/webhooks/allpass/cbc", fixed(string(good), ""), nil, 401, allpass.CodeBadSignature, true},
		{"8 KiB signature", "POST", "/webhooks/allpass", fixed(string(good), strings.Repeat("ab", 4<<10)), nil, 401, allpass.CodeBadSignature, true},
		{"right signature, other app's method", "POST", "/webhooks/allpass/gcm", fixed(string(good), goodSig), nil, 401, allpass.CodeBadSignature, true},
		{"invalid UTF-8", "POST", "/webhooks/allpass/cbc", fixed("{\"status\":true,\"data\":\"\xff\xfe\",\"time\":\"x\"}", goodSig), nil, 400, allpass.CodeMalformedEnvelope, true},
		{"nesting bomb", "POST", "/webhooks/allpass/cbc", fixed(`{"status":true,"data":"00","x":`+deep+`}`, goodSig), nil, 400, allpass.CodeMalformedEnvelope, true},
		{"id with dot", "POST", "/webhooks/allpass/cbc", badID("a.b"), nil, 422, allpass.CodeInvalidPayload, true},
		{"id star", "POST", "/webhooks/allpass/cbc", badID("*"), nil, 422, allpass.CodeInvalidPayload, true},
		{"id gt", "POST", "/webhooks/allpass/cbc", badID(">"), nil, 422, allpass.CodeInvalidPayload, true},
		{"id with space", "POST", "/webhooks/allpass/cbc", badID("ea0562d3 00f9-4fce-88c3-6bbae056eed6"), nil, 422, allpass.CodeInvalidPayload, true},
		{"id with NUL", "POST", "/webhooks/allpass/cbc", badID("ea0562d3\x0000f9-4fce-88c3-6bbae056eed6"), nil, 422, allpass.CodeInvalidPayload, true},
		{"uuid-shaped id with dots", "POST", "/webhooks/allpass/cbc", badID("ea0562d3.00f9.4fce.88c3.6bbae056eed6"), nil, 422, allpass.CodeInvalidPayload, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.lastSeq(t)
			rejBefore := len(e.rejects(t))
			body, sig := c.make()
			req, err := http.NewRequest(c.method, e.srv.URL+c.path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if sig != "" {
				req.Header.Set("x-allpass-signature", sig)
			}
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			a := e.do(t, req)
			if a.status != c.status || a.errCode != c.code {
				t.Fatalf("got %d %q (%s), want %d %q", a.status, a.errCode, a.raw, c.status, c.code)
			}
			if c.status == 405 && a.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
			if after := e.lastSeq(t); after != before {
				t.Fatalf("stream moved from %d to %d", before, after)
			}
			if len(sig) > 8 && strings.Contains(string(a.raw), sig) {
				t.Fatal("answer echoes the signature")
			}
			kept := len(e.rejects(t)) - rejBefore
			if want := map[bool]int{true: 1, false: 0}[c.kept]; kept != want {
				t.Fatalf("%d rejects kept, want %d", kept, want)
			}
		})
	}

	// Headers past MaxHeaderBytes never reach the handler: net/http answers 431 itself
	// (plain text; no handler runs, so nothing can be appended).
	t.Run("oversize headers", func(t *testing.T) {
		before := e.lastSeq(t)
		req, _ := http.NewRequest("POST", e.srv.URL+"/webhooks/allpass/cbc", bytes.NewReader(good))
		req.Header.Set("x-allpass-signature", goodSig)
		req.Header.Set("X-Padding", strings.Repeat("p", 2*serverMaxHeaderBytes))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
		if after := e.lastSeq(t); after != before {
			t.Fatalf("stream moved from %d to %d", before, after)
		}
	})

	// After all that, the good webhook still goes through: nothing above broke the handler.
	if a := e.post(t, "/webhooks/allpass/cbc", good, goodSig); a.status != 200 || a.seq != 1 {
		t.Fatalf("good webhook after hostile input: %d %s", a.status, a.raw)
	}
}

// TestRejectContents checks what a kept reject holds: enough to reprocess it and to tell
// an operator who sent it.
func TestRejectContents(t *testing.T) {
	received := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	e := newEnv(t, func(c *HandlerConfig) { c.Now = func() time.Time { return received } })
	body, sig := seal(t, e.cbc, payload(e.cbc, 1, "applicantCreated"), "2026-03-01T10:00:00Z")
	req, _ := http.NewRequest("POST", e.srv.URL+"/webhooks/allpass/gcm", bytes.NewReader(body))
	req.Header.Set("x-allpass-signature", sig)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "allpass-test")
	req.Header.Set("Authorization", "Bearer not-kept")
	a := e.do(t, req)
	if a.status != 401 {
		t.Fatalf("status %d", a.status)
	}
	rs := e.rejects(t)
	if len(rs) != 1 {
		t.Fatalf("%d rejects", len(rs))
	}
	r := rs[0]
	if r.App != "gcm" || r.Reason != allpass.CodeBadSignature || r.Status != 401 || r.Body != string(body) ||
		r.Message != a.errMessage || !r.ReceivedAt.Equal(received) || r.RemoteAddr == "" {
		t.Fatalf("reject %+v", r)
	}
	want := map[string]string{"x-allpass-signature": sig, "content-type": "application/json", "user-agent": "allpass-test"}
	if fmt.Sprint(r.Headers) != fmt.Sprint(want) {
		t.Fatalf("headers %v, want %v", r.Headers, want)
	}
}

// TestParallelSenders: 200 senders at once, each with its own webhook, a quarter of them
// sending it three times: every webhook is in the stream exactly once, and every answer
// names it.
func TestParallelSenders(t *testing.T) {
	e := newEnv(t)
	const senders = 200
	type result struct {
		seqs    []uint64
		dups    int
		retried bool // some attempt was answered 503
	}
	results := make([]result, senders)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range senders {
		app := e.cbc
		if i%2 == 1 {
			app = e.gcm
		}
		body, sig := seal(t, app, payload(app, i, "applicantCreated"), "2026-03-01T10:00:00Z")
		path := "/webhooks/allpass/" + app.Name
		if i%3 == 0 {
			path = "/webhooks/allpass"
		}
		sends := 1
		if i%4 == 0 {
			sends = 3
		}
		for range sends {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// 300 requests against the default limit of 256 in flight: a sender told
				// 503 retries, as Allpass does.
				var resp *http.Response
				var raw []byte
				for attempt := 0; ; attempt++ {
					req, _ := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
					req.Header.Set("x-allpass-signature", sig)
					var err error
					if resp, err = e.client.Do(req); err != nil {
						t.Error(err)
						return
					}
					raw, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusServiceUnavailable || attempt == 100 {
						break
					}
					mu.Lock()
					results[i].retried = true
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
				var ok appendResult
				if resp.StatusCode != 200 || json.Unmarshal(raw, &ok) != nil {
					t.Errorf("sender %d: %d %s", i, resp.StatusCode, raw)
					return
				}
				mu.Lock()
				results[i].seqs = append(results[i].seqs, ok.Seq)
				if ok.Duplicate {
					results[i].dups++
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	bySeq := map[uint64]int{}
	for i, r := range results {
		for _, s := range r.seqs[1:] {
			if s != r.seqs[0] {
				t.Fatalf("sender %d: answers name seqs %v", i, r.seqs)
			}
		}
		// One answer is the first; the others are duplicates. A 503 whose append timed
		// out may still have stored the event (nothing was claimed, and the retry finds
		// it): then every 200 can be a duplicate.
		if r.dups != len(r.seqs)-1 && !(r.retried && r.dups == len(r.seqs)) {
			t.Fatalf("sender %d: %d of %d answers duplicate, want all but one", i, r.dups, len(r.seqs))
		}
		if prev, taken := bySeq[r.seqs[0]]; taken {
			t.Fatalf("senders %d and %d both got seq %d", prev, i, r.seqs[0])
		}
		bySeq[r.seqs[0]] = i
	}
	events := e.logged(t)
	if len(events) != senders {
		t.Fatalf("stream holds %d events, want %d", len(events), senders)
	}
	perApplicant := map[domain.ApplicantID]int{}
	for _, ev := range events {
		perApplicant[ev.ApplicantID]++
		i, ok := bySeq[ev.Seq]
		if !ok || ev.ApplicantID != domain.ApplicantID(applicant(i)) {
			t.Fatalf("event at %d is %s, answered to sender %d", ev.Seq, ev.ApplicantID, i)
		}
	}
	for i := range senders {
		if n := perApplicant[domain.ApplicantID(applicant(i))]; n != 1 {
			t.Fatalf("applicant %d has %d events", i, n)
		}
	}
	if got := e.metric(t, "kycstate_ingest_appends_total", nil); got != senders {
		t.Fatalf("appends_total %v, want %d", got, senders)
	}
}

// TestRestartKeepsStreamAndDedup: after the embedded server restarts on the same
// directory, a resend is still recognised.
func TestRestartKeepsStreamAndDedup(t *testing.T) {
	dir := t.TempDir()
	e := newEnvAt(t, dir)
	body, sig := seal(t, e.cbc, payload(e.cbc, 7, "applicantCreated"), "2026-03-01T10:00:00Z")
	first := e.post(t, "/webhooks/allpass/cbc", body, sig)
	if first.status != 200 || first.duplicate {
		t.Fatalf("first: %d %s", first.status, first.raw)
	}
	e.srv.Close()
	e.conn.Close()

	e2 := newEnvAt(t, dir)
	again := e2.post(t, "/webhooks/allpass/cbc", body, sig)
	if again.status != 200 || !again.duplicate || again.seq != first.seq {
		t.Fatalf("after restart: %d %s, want duplicate of seq %d", again.status, again.raw, first.seq)
	}
	if n := len(e2.logged(t)); n != 1 {
		t.Fatalf("%d events after restart", n)
	}
}

// TestServerDownIsNot200: with the JetStream server gone, before a request or while
// requests wait to append, the answer is 503 with Retry-After, never 200.
func TestServerDownIsNot200(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		e := newEnv(t, func(c *HandlerConfig) { c.AppendTimeout = 300 * time.Millisecond })
		body, sig := seal(t, e.cbc, payload(e.cbc, 1, "applicantCreated"), "2026-03-01T10:00:00Z")
		e.conn.NS.Shutdown()
		a := e.post(t, "/webhooks/allpass/cbc", body, sig)
		if a.status != 503 || a.errCode != httperr.CodeUnavailable || a.header.Get("Retry-After") == "" {
			t.Fatalf("got %d %s, Retry-After %q", a.status, a.raw, a.header.Get("Retry-After"))
		}
		if got := e.metric(t, "kycstate_ingest_requests_total", map[string]string{"app": "cbc", "outcome": outcomeUnavailable}); got != 1 {
			t.Fatalf("requests_total{cbc,unavailable} = %v", got)
		}
		if e.logs.FilterMessage("reject not kept").Len() != 1 {
			t.Fatal("a reject that could not be kept was not logged")
		}
	})
	t.Run("in flight", func(t *testing.T) {
		const n = 4
		arrived, release := make(chan struct{}, n), make(chan struct{})
		e := newEnv(t, func(c *HandlerConfig) {
			c.AppendTimeout = 300 * time.Millisecond
			c.beforeAppend = func() { arrived <- struct{}{}; <-release }
		})
		answers := make(chan answer, n)
		for i := range n {
			body, sig := seal(t, e.gcm, payload(e.gcm, i, "applicantCreated"), "2026-03-01T10:00:00Z")
			go func() {
				req, _ := http.NewRequest("POST", e.srv.URL+"/webhooks/allpass/gcm", bytes.NewReader(body))
				req.Header.Set("x-allpass-signature", sig)
				resp, err := e.client.Do(req)
				if err != nil {
					answers <- answer{status: -1, raw: []byte(err.Error())}
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answers <- answer{status: resp.StatusCode, header: resp.Header, raw: raw}
			}()
		}
		for range n {
			<-arrived
		}
		e.conn.NS.Shutdown()
		close(release)
		for range n {
			a := <-answers
			if a.status != 503 || a.header.Get("Retry-After") == "" {
				t.Fatalf("got %d %s with the server shut down, want 503 with Retry-After", a.status, a.raw)
			}
		}
	})
}

// TestKilledBetweenAppendAndAnswer: the event reached the log but the answer never left
// (the process died). Allpass resends; the answer is 200 duplicate with the same seq.
func TestKilledBetweenAppendAndAnswer(t *testing.T) {
	e := newEnv(t)
	body, sig := seal(t, e.gcm, payload(e.gcm, 3, "applicantApproved"), "2026-03-01T10:00:00Z")
	ev, msgID, err := e.gcm.Open(body, sig, time.Now(), allpass.Options{KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	seq, dup, err := e.events.Append(context.Background(), &ev, msgID)
	if err != nil || dup {
		t.Fatalf("direct append: %d %v %v", seq, dup, err)
	}
	a := e.post(t, "/webhooks/allpass/gcm", body, sig)
	if a.status != 200 || !a.duplicate || a.seq != seq {
		t.Fatalf("resend: %d %s, want duplicate of %d", a.status, a.raw, seq)
	}
	if n := len(e.logged(t)); n != 1 {
		t.Fatalf("%d events", n)
	}
	if got := e.metric(t, "kycstate_ingest_duplicates_total", nil); got != 1 {
		t.Fatalf("duplicates_total %v", got)
	}
}

// TestWrongKeyRecoveredByReprocess: webhooks refused under a misconfigured key are kept
// and, once the key is fixed, Reprocess appends each exactly once.
func TestWrongKeyRecoveredByReprocess(t *testing.T) {
	v := mustVectors(t)
	good, _ := mustApps(t, v)
	wrong := *good
	wrong.Keys = []allpass.Keys{{Secret: good.Keys[0].Secret, HMAC: bytes.Repeat([]byte{7}, 32)}}
	e := newEnv(t, func(c *HandlerConfig) { c.Apps = []*allpass.App{&wrong} })

	var bodies [][]byte
	var sigs []string
	for i := range 3 {
		body, sig := seal(t, good, payload(good, 100+i, "applicantCreated"), "2026-03-01T10:00:00Z")
		bodies, sigs = append(bodies, body), append(sigs, sig)
		path := "/webhooks/allpass/cbc"
		if i == 2 {
			path = "/webhooks/allpass"
		}
		if a := e.post(t, path, body, sig); a.status != 401 {
			t.Fatalf("under the wrong key: %d %s", a.status, a.raw)
		}
	}
	// Allpass retries the first one: a second reject of the same delivery.
	if a := e.post(t, "/webhooks/allpass/cbc", bodies[0], sigs[0]); a.status != 401 {
		t.Fatalf("retry under the wrong key: %d", a.status)
	}
	// And one that will never open: garbage stays failing.
	if a := e.post(t, "/webhooks/allpass/cbc", []byte(`{"status":true,"data":"00"}`), "x"); a.status != 401 {
		t.Fatalf("garbage: %d", a.status)
	}
	if e.lastSeq(t) != 0 {
		t.Fatal("a refused webhook reached the stream")
	}

	// Still the wrong key: nothing recovers.
	ctx := context.Background()
	res, err := Reprocess(ctx, e.events, ReprocessConfig{Apps: []*allpass.App{&wrong}, Options: allpass.Options{KeepRaw: true}, Logger: zap.NewNop()}, 1)
	if err != nil || res.Recovered != 0 || res.Failing != 5 || res.FailingByReason[allpass.CodeBadSignature] != 5 {
		t.Fatalf("with the wrong key: %+v %v", res, err)
	}

	// Fixed.
	res, err = Reprocess(ctx, e.events, ReprocessConfig{Apps: []*allpass.App{good}, Options: allpass.Options{KeepRaw: true}, Logger: zap.NewNop()}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Seen != 5 || res.Recovered != 3 || res.Duplicates != 1 || res.Failing != 1 || res.Next != 6 {
		t.Fatalf("after the fix: %+v", res)
	}
	events := e.logged(t)
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	for i, ev := range events {
		if ev.ApplicantID != domain.ApplicantID(applicant(100+i)) || ev.Raw == nil || ev.Raw.Body != string(bodies[i]) {
			t.Fatalf("event %d: %s", i, ev.ApplicantID)
		}
	}

	// Twice: nothing doubles. Each append waits as long as ingest.append_timeout says.
	const appendTimeout = 1500 * time.Millisecond
	timed := &deadlineLog{EventLog: e.events}
	res, err = Reprocess(ctx, timed, ReprocessConfig{Apps: []*allpass.App{good}, AppendTimeout: appendTimeout}, 1)
	if err != nil || res.Recovered != 0 || res.Duplicates != 4 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if len(timed.left) != 4 {
		t.Fatalf("%d appends seen, want 4", len(timed.left))
	}
	for _, left := range timed.left {
		if left <= 0 || left > appendTimeout || left < appendTimeout-time.Second {
			t.Fatalf("an append had %s left of its bound, want just under %s", left, appendTimeout)
		}
	}
	// From where the last run stopped: nothing new to see.
	res, err = Reprocess(ctx, e.events, ReprocessConfig{Apps: []*allpass.App{good}}, res.Next)
	if err != nil || res.Seen != 0 {
		t.Fatalf("resumed run: %+v %v", res, err)
	}
	if n := len(e.logged(t)); n != 3 {
		t.Fatalf("%d events after reprocessing twice", n)
	}
}

// TestMetrics: the counters move with the answers, and the app label never takes raw
// path input.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	body, sig := seal(t, e.cbc, payload(e.cbc, 1, "applicantCreated"), "2026-03-01T10:00:00Z")
	e.post(t, "/webhooks/allpass/cbc", body, sig)
	e.post(t, "/webhooks/allpass", body, sig)
	e.post(t, "/webhooks/allpass/cbc", body, "bad")
	e.post(t, "/webhooks/allpass", body, "bad")
	for i := range 20 {
		e.post(t, fmt.Sprintf("/webhooks/allpass/random-%d", i), body, sig)
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kycstate_ingest_requests_total", map[string]string{"app": "cbc", "outcome": outcomeAppended}, 1},
		{"kycstate_ingest_requests_total", map[string]string{"app": "cbc", "outcome": outcomeDuplicate}, 1},
		{"kycstate_ingest_requests_total", map[string]string{"app": "cbc", "outcome": outcomeRefused}, 1},
		{"kycstate_ingest_requests_total", map[string]string{"app": appAny, "outcome": outcomeRefused}, 1},
		{"kycstate_ingest_requests_total", map[string]string{"app": appUnknown, "outcome": outcomeRefused}, 20},
		{"kycstate_ingest_appends_total", nil, 1},
		{"kycstate_ingest_duplicates_total", nil, 1},
		{"kycstate_ingest_rejects_total", map[string]string{"reason": allpass.CodeBadSignature}, 2},
		{"kycstate_ingest_rejects_total", map[string]string{"reason": CodeUnknownApp}, 20},
		{"kycstate_ingest_request_duration_seconds", nil, 24},
		{"kycstate_ingest_inflight", nil, 0},
	}
	for _, c := range checks {
		if got := e.metric(t, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "app" && strings.HasPrefix(l.GetValue(), "random") {
					t.Fatalf("%s carries raw path input %q", mf.GetName(), l.GetValue())
				}
			}
		}
	}
	// A second handler on the same registry is refused, not silently uncounted.
	if _, err := NewHandler(HandlerConfig{Apps: []*allpass.App{e.cbc}, Events: e.events, Metrics: e.reg}); err == nil {
		t.Fatal("two handlers registered the same metrics")
	}
}

// TestRefusalLogs: one line per refused request, with app, reason and remote address,
// and nothing of the signature, the body or the plaintext.
func TestRefusalLogs(t *testing.T) {
	e := newEnv(t)
	p := payload(e.cbc, 5, "applicantCreated")
	p["externalUserId"] = "secret-user-marker"
	body, sig := seal(t, e.cbc, p, "2026-03-01T10:00:00Z")
	badPayload := payload(e.cbc, 6, "applicantCreated")
	badPayload["id"] = "not-a-uuid-secret-marker"
	body422, sig422 := seal(t, e.cbc, badPayload, "2026-03-01T10:00:00Z")

	e.post(t, "/webhooks/allpass/gcm", body, sig) // 401
	if a := e.post(t, "/webhooks/allpass/cbc", body422, sig422); a.status != 422 || strings.Contains(string(a.raw), "secret-marker") {
		t.Fatalf("422 answer %d %s echoes the payload", a.status, a.raw)
	}
	e.post(t, "/webhooks/allpass/cbc", []byte("{"), sig) // 400
	e.post(t, "/webhooks/allpass/nope", body, sig)       // 404
	if a := e.post(t, "/webhooks/allpass/cbc", body, sig); a.status != 200 {
		t.Fatalf("good webhook: %d", a.status)
	}

	refused := e.logs.FilterMessage("webhook refused").All()
	if len(refused) != 4 {
		t.Fatalf("%d refusal lines, want 4", len(refused))
	}
	for _, l := range refused {
		f := l.ContextMap()
		if f["app"] == nil || f["reason"] == nil || f["remote"] == nil {
			t.Fatalf("refusal line lacks app, reason or remote: %v", f)
		}
	}
	if e.logs.FilterMessage("webhook appended").Len() != 1 {
		t.Fatal("no debug line for the appended webhook")
	}
	forbidden := []string{sig, sig422, string(body), string(body422), "secret-user-marker", "secret-marker"}
	for _, l := range e.logs.All() {
		line := l.Message + fmt.Sprint(l.ContextMap())
		for _, s := range forbidden {
			if strings.Contains(line, s) {
				t.Fatalf("log line %q holds %q", line, s)
			}
		}
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	resp, err := e.client.Get(e.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}

func TestNewHandlerConfig(t *testing.T) {
	v := mustVectors(t)
	cbc, gcm := mustApps(t, v)
	_, events := mustLog(t, t.TempDir())
	renamed := func(a *allpass.App, name string) *allpass.App { c := *a; c.Name = name; return &c }
	nokeys := *cbc
	nokeys.Keys = nil
	cases := map[string]HandlerConfig{
		"no apps":           {Events: events},
		"no log":            {Apps: []*allpass.App{cbc}},
		"nil app":           {Apps: []*allpass.App{nil}, Events: events},
		"no name":           {Apps: []*allpass.App{renamed(cbc, "")}, Events: events},
		"duplicate name":    {Apps: []*allpass.App{cbc, renamed(gcm, "cbc")}, Events: events},
		"name is an appKey": {Apps: []*allpass.App{cbc, renamed(gcm, v.App.AppKey)}, Events: events},
		"no keys":           {Apps: []*allpass.App{&nokeys}, Events: events},
	}
	for name, cfg := range cases {
		if _, err := NewHandler(cfg); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("%s: error %v, want KindInvalid", name, err)
		}
	}
	if _, err := NewHandler(HandlerConfig{Apps: []*allpass.App{cbc, gcm}, Events: events}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestStatusOf pins how ingest answers its errors: each kind through the one table of
// kinds to statuses and codes (internal/httperr, tested there; a conflict is 409
// "conflict" as on the read API), an error's own code over its kind's, the method refusal
// 405, and the append path's classification: what the log cannot classify is 503, a kind
// the append should never meet (a conflict, ids the log refuses) is a broken invariant,
// 500, and an event over the log's limit is the request's 413.
func TestStatusOf(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &handler{log: zap.NewNop(), m: m}
	answer := func(err error) (int, string) {
		rec := httptest.NewRecorder()
		h.refuse(rec, httptest.NewRequest(http.MethodPost, "/webhooks/allpass", nil), &exchange{label: appAny}, err)
		var b httperr.Body
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("%d %q: %v", rec.Code, rec.Body, err)
		}
		return rec.Code, b.Error.Code
	}
	type want struct {
		status int
		code   string
	}
	cases := map[domain.ErrorKind]want{
		domain.KindInvalid: {400, "invalid"}, domain.KindUnauthorized: {401, "unauthorized"},
		domain.KindNotFound: {404, "not_found"}, domain.KindTooLarge: {413, "too_large"},
		domain.KindUnprocessable: {422, "unprocessable"}, domain.KindUnavailable: {503, "unavailable"},
		domain.KindInternal: {500, "internal"}, domain.KindOther: {500, "internal"},
		domain.KindConflict: {409, "conflict"},
	}
	for k, w := range cases {
		if status, code := answer(domain.E("op", k, "x")); status != w.status || code != w.code {
			t.Errorf("%v: %d %q, want %d %q", k, status, code, w.status, w.code)
		}
	}
	for name, c := range map[string]struct {
		err error
		want
	}{
		"wire format's code":         {domain.E("ingest.webhook", domain.KindOther, domain.Public("allpass.Open", domain.KindUnauthorized, allpass.CodeBadSignature, "x")), want{401, allpass.CodeBadSignature}},
		"errMethod":                  {errMethod, want{405, CodeMethodNotAllowed}},
		"errNoApp":                   {errNoApp, want{404, CodeUnknownApp}},
		"errBusy":                    {errBusy, want{503, CodeBusy}},
		"unclassified append error":  {errAppend(errors.New("nats: timeout")), want{503, httperr.CodeUnavailable}},
		"append refusing valid ids":  {errAppend(domain.E("op", domain.KindInvalid, "x")), want{500, httperr.CodeInternal}},
		"append meeting a conflict":  {errAppend(domain.E("op", domain.KindConflict, "x")), want{500, httperr.CodeInternal}},
		"event over the log's limit": {errAppend(domain.E("op", domain.KindTooLarge, "x")), want{413, CodeBodyTooLarge}},
	} {
		if status, code := answer(c.err); status != c.status || code != c.code {
			t.Errorf("%s: %d %q, want %d %q", name, status, code, c.status, c.code)
		}
	}
}

// FuzzHandler posts arbitrary bodies and headers to every route. The handler never
// panics, answers only the statuses of the contract, in JSON, and answers 200 only for an
// event that is in the stream, which grows by exactly the events answered as new.
func FuzzHandler(f *testing.F) {
	v := mustVectors(f)
	cbc, gcm := mustApps(f, v)
	_, events := mustLog(f, f.TempDir())
	h, err := NewHandler(HandlerConfig{Apps: []*allpass.App{cbc, gcm}, Events: events, KeepRaw: true, MaxBody: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	routes := []struct{ method, path string }{
		{"POST", "/webhooks/allpass"},
		{"POST", "/webhooks/allpass/cbc"},
		{"POST", "/webhooks/allpass/gcm"},
		{"POST", "/webhooks/allpass/" + v.App.AppKey},
		{"POST", "/webhooks/allpass/nope"},
		{"GET", "/webhooks/allpass/cbc"},
		{"POST", "/elsewhere"},
	}
	for _, c := range v.Cases {
		route := uint8(1)
		if c.Method == allpass.MethodGCM {
			route = 2
		}
		f.Add(route, []byte(c.Body), c.Headers["x-allpass-signature"], "application/json")
		f.Add(uint8(0), []byte(c.Body), c.Headers["x-allpass-signature"], "")
	}
	f.Add(uint8(1), []byte(""), "", "")
	f.Add(uint8(3), []byte(`{"status":true,"data":"`+strings.Repeat("[", 5000)+`"}`), "00", "text/plain")
	f.Add(uint8(0), []byte("{\"data\":\"\xff\"}"), "\x00", "application/json")
	f.Add(uint8(1), []byte(`{"status":true,"data":`+strings.Repeat(`{"a":`, 1000)+`1`+strings.Repeat("}", 1000)+`}`), "zz", "")
	f.Add(uint8(1), bytes.Repeat([]byte("a"), 65<<10), "", "")

	allowed := map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 413: true, 422: true, 503: true}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, route uint8, body []byte, sig, ctype string) {
		r := routes[int(route)%len(routes)]
		before, err := events.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		req.Header.Set("x-allpass-signature", sig)
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d (%s)", rec.Code, rec.Body.Bytes())
		}
		a := decodeAnswer(t, rec.Code, rec.Header(), rec.Body.Bytes())
		after, err := events.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case a.status != 200 && after != before:
			t.Fatalf("answered %d but the stream moved from %d to %d", a.status, before, after)
		case a.status == 200 && !a.duplicate && (a.seq != before+1 || after != a.seq):
			t.Fatalf("new event answered at %d; stream went from %d to %d", a.seq, before, after)
		case a.status == 200 && a.duplicate && (a.seq == 0 || a.seq > before || after != before):
			t.Fatalf("duplicate answered at %d; stream went from %d to %d", a.seq, before, after)
		}
		if a.status == 200 {
			got := readOne(t, events, a.seq)
			if got.Raw == nil || got.Raw.Body == "" {
				t.Fatalf("event at %d has no raw body", a.seq)
			}
		}
	})
}

// readOne reads the event stored at seq.
func readOne(tb testing.TB, events *eventlog.EventLog, seq uint64) domain.Event {
	tb.Helper()
	var got []domain.Event
	stop := errors.New("stop")
	err := events.Read(context.Background(), seq, 1, func(evs []domain.Event) error {
		got = evs
		return stop
	})
	if err != nil && !errors.Is(err, stop) {
		tb.Fatal(err)
	}
	if len(got) == 0 || got[0].Seq != seq {
		tb.Fatalf("no event at seq %d", seq)
	}
	return decodeWhole(tb, got[0])
}

// decodeWhole decodes ev's stored bytes with everything, the raw body included.
func decodeWhole(tb testing.TB, ev domain.Event) domain.Event {
	tb.Helper()
	whole, err := eventlog.DecodeEvent(ev.Seq, ev.Stored)
	if err != nil {
		tb.Fatal(err)
	}
	return whole
}

// TestStoredEventOverLogLimit: a body under the handler's limit whose stored event (raw
// body, plaintext and metadata) is over the log's message limit is answered 413 and not
// appended; the answer is a refusal, never a 200 without a PubAck.
func TestStoredEventOverLogLimit(t *testing.T) {
	e := newEnv(t, func(c *HandlerConfig) { c.MaxBody = 4 * eventlog.EmbeddedMaxPayload })
	p := payload(e.cbc, 1, "applicantCreated")
	p["padding"] = strings.Repeat("x", eventlog.EmbeddedMaxPayload/2)
	body, sig := seal(t, e.cbc, p, "2026-03-01T10:00:00Z")
	a := e.post(t, "/webhooks/allpass/cbc", body, sig)
	if a.status != http.StatusRequestEntityTooLarge || a.errCode != CodeBodyTooLarge {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if n := e.lastSeq(t); n != 0 {
		t.Fatalf("stream at %d", n)
	}
	// Authentic, so the handler tried to keep it; the reject is as large and is refused
	// by the log in turn, which is logged.
	if len(e.rejects(t)) == 0 && e.logs.FilterMessage("reject not kept").Len() != 1 {
		t.Fatal("neither kept nor logged as not kept")
	}
}

// deadlineLog records how long each Append's context had left of its deadline (zero:
// none), then appends.
type deadlineLog struct {
	EventLog
	left []time.Duration
}

func (l *deadlineLog) Append(ctx context.Context, ev *domain.Event, msgID string) (uint64, bool, error) {
	var left time.Duration
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	l.left = append(l.left, left)
	return l.EventLog.Append(ctx, ev, msgID)
}
