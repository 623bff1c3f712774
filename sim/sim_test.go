package sim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/sim"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
)

const readerToken = "sim-test-reader-token-0123456789"

// service is a whole kycstate in the test process: an embedded nats-server and a bbolt
// file in a temporary directory, the projector, and the ingest and read API handlers
// under httptest servers.
type service struct {
	app    allpass.App
	events *eventlog.EventLog
	ingest *httptest.Server
	api    *httptest.Server
}

type middleware func(http.Handler) http.Handler

// newService starts a service with one app of the given method. wrapIngest and wrapAPI,
// if not nil, sit in front of the handlers (to make the service misbehave).
func newService(t *testing.T, method allpass.Method, wrapIngest, wrapAPI middleware) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	log := zap.NewNop()

	events := jstest.Start(t).EventLog(t, eventlog.Config{Replicas: 1, DuplicateWindow: time.Hour}, log)
	proj, err := projection.Open(filepath.Join(dir, "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		projector.New(events, proj, projector.Config{}, log, nil).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	app := allpass.App{Name: "main", AppKey: domain.AppKey(uuid()), Method: method}
	var k allpass.Keys
	rand.Read(k.Secret[:])
	if method == allpass.MethodCBC {
		k.HMAC = make([]byte, 32)
		rand.Read(k.HMAC)
	}
	app.Keys = []allpass.Keys{k}

	ih, err := ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{&app}, Events: events, KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	ah, err := api.NewServer(api.Config{Projection: proj, Tokens: []api.Token{{Name: "r", Role: domain.RoleReader, Secret: readerToken}}})
	if err != nil {
		t.Fatal(err)
	}
	if wrapIngest != nil {
		ih = wrapIngest(ih)
	}
	if wrapAPI != nil {
		ah = wrapAPI(ah)
	}
	s := &service{app: app, events: events, ingest: httptest.NewServer(ih), api: httptest.NewServer(ah)}
	t.Cleanup(s.ingest.Close)
	t.Cleanup(s.api.Close)
	return s
}

func (s *service) config(applicants int, share float64) sim.Config {
	return sim.Config{
		IngestURL: s.ingest.URL, APIURL: s.api.URL, App: s.app, Token: readerToken,
		Applicants: applicants, Concurrency: 6,
		ResendShare: share, LateShare: share, BadSigShare: share,
		Seed: 42, Check: true, CatchUpTimeout: 20 * time.Second,
	}
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexd = "0123456789abcdef"
	var out []byte
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexd[c>>4], hexd[c&15])
	}
	return string(out)
}

// TestRunAgainstService runs journeys with every irregularity mixed in against a real
// service, for both methods, and requires that the service kept exactly what it
// acknowledged and that the read API serves what the fold of it gives.
func TestRunAgainstService(t *testing.T) {
	for _, method := range []allpass.Method{allpass.MethodCBC, allpass.MethodGCM} {
		t.Run(string(method), func(t *testing.T) {
			s := newService(t, method, nil, nil)
			var progress bytes.Buffer
			rep, err := sim.Run(context.Background(), s.config(30, 0.1), &progress)
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, printed(rep))
			}
			t.Logf("\n%s", printed(rep))
			if !rep.OK() {
				t.Fatalf("report not OK:\n%s", printed(rep))
			}
			if rep.Checked != 30 || rep.Lost != 0 {
				t.Errorf("checked %d applicants with %d lost, want 30 and 0", rep.Checked, rep.Lost)
			}
			// Every genuine delivery stored once, every resend recognised, every forgery
			// refused; nothing else was answered (no 5xx at this load).
			if rep.Answers.OK != rep.Deliveries {
				t.Errorf("200 new answers %d, deliveries %d", rep.Answers.OK, rep.Deliveries)
			}
			if rep.Resends == 0 || rep.Answers.Duplicate != rep.Resends {
				t.Errorf("resends %d, duplicate answers %d: want equal and not 0", rep.Resends, rep.Answers.Duplicate)
			}
			if rep.BadSignatures == 0 || rep.Answers.Unauthorized != rep.BadSignatures {
				t.Errorf("forgeries %d, 401 answers %d: want equal and not 0", rep.BadSignatures, rep.Answers.Unauthorized)
			}
			if rep.Answers.Other != 0 {
				t.Errorf("%d other answers", rep.Answers.Other)
			}
			if rep.Late == 0 || rep.Outcomes[domain.OutcomeStale] < 1 {
				t.Errorf("late %d, stale outcomes %d: want both above 0", rep.Late, rep.Outcomes[domain.OutcomeStale])
			}
			if rep.Webhooks != rep.Deliveries+rep.Resends+rep.BadSignatures+rep.Retries {
				t.Errorf("webhooks %d != deliveries %d + resends %d + forgeries %d + retries %d",
					rep.Webhooks, rep.Deliveries, rep.Resends, rep.BadSignatures, rep.Retries)
			}
			// The log itself, read without the sim's bookkeeping, holds one event per
			// delivery: no forgery and no resend reached it.
			last, err := s.events.LastSeq(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if last != uint64(rep.Deliveries) || rep.MaxSeq != last {
				t.Errorf("log's last seq %d, sim's highest %d, deliveries %d: want all equal", last, rep.MaxSeq, rep.Deliveries)
			}
			total := 0
			for _, n := range rep.Outcomes {
				total += n
			}
			if total != rep.Deliveries {
				t.Errorf("expected outcomes sum to %d, want one per delivery (%d)", total, rep.Deliveries)
			}
			if rep.Latency.Max <= 0 || rep.Latency.P50 > rep.Latency.P99 || rep.Latency.P99 > rep.Latency.Max {
				t.Errorf("latency %+v not ordered", rep.Latency)
			}
			out := printed(rep)
			for _, want := range []string{"webhooks sent", "p50", "401 ", "mismatches         0", "result             OK"} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestCheckDetects runs against services that misbehave in ways only the check (or the
// answers' bookkeeping) can see, and requires each to be reported.
func TestCheckDetects(t *testing.T) {
	// corruptOne rewrites one applicant's state as the API serves it.
	corruptOne := func(edit func(map[string]any)) middleware {
		return func(h http.Handler) http.Handler {
			var done atomic.Bool
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Has("minSeq") || done.Load() {
					h.ServeHTTP(w, r)
					return
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				var m map[string]any
				if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &m) != nil || !done.CompareAndSwap(false, true) {
					copyResponse(w, rec)
					return
				}
				edit(m)
				b, _ := json.Marshal(m)
				rec.Body = bytes.NewBuffer(b)
				copyResponse(w, rec)
			})
		}
	}
	for _, tc := range []struct {
		name             string
		wrapIngest       middleware
		wrapAPI          middleware
		want             string // in a mismatch or problem line
		mismatch, problm bool
	}{
		{
			name: "status differs",
			wrapAPI: corruptOne(func(m map[string]any) {
				if m["status"] == "APPROVED" {
					m["status"] = "REJECTED"
				} else {
					m["status"] = "APPROVED"
				}
			}),
			want: "status: want", mismatch: true,
		},
		{
			name:    "an event missing",
			wrapAPI: corruptOne(func(m map[string]any) { m["events"] = m["events"].(float64) - 1 }),
			want:    "events: want", mismatch: true,
		},
		{
			name:    "a step missing",
			wrapAPI: corruptOne(func(m map[string]any) { m["stepsPassed"] = []string{} }),
			want:    "stepsPassed: want", mismatch: true,
		},
		{
			name: "applicant unknown to the API",
			wrapAPI: func(h http.Handler) http.Handler {
				var done atomic.Bool
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !r.URL.Query().Has("minSeq") && done.CompareAndSwap(false, true) {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(http.StatusNotFound)
						io.WriteString(w, `{"error":{"code":"not_found","message":"no applicant"}}`)
						return
					}
					h.ServeHTTP(w, r)
				})
			},
			want: "not found (404)", mismatch: true,
		},
		{
			// The ingest claims a webhook without storing it, reusing the seq it gave the
			// previous one: the contract's worst failure, 200 without a PubAck.
			name: "ingest answers 200 without storing",
			wrapIngest: func(h http.Handler) http.Handler {
				var n atomic.Int64
				var last atomic.Value
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if n.Add(1) == 4 {
						io.Copy(io.Discard, r.Body)
						w.Header().Set("Content-Type", "application/json")
						io.WriteString(w, `{"seq":`+last.Load().(string)+`,"duplicate":false}`)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					var a struct{ Seq json.Number }
					if json.Unmarshal(rec.Body.Bytes(), &a) == nil && a.Seq != "" {
						last.Store(a.Seq.String())
					}
					copyResponse(w, rec)
				})
			},
			want: "earlier event of this applicant", problm: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, allpass.MethodCBC, tc.wrapIngest, tc.wrapAPI)
			cfg := s.config(6, 0)
			cfg.Concurrency = 1
			rep, err := sim.Run(context.Background(), cfg, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if rep.OK() {
				t.Fatalf("report OK, want the fault found:\n%s", printed(rep))
			}
			lines := rep.Problems
			if tc.mismatch {
				lines = rep.Mismatches
				if len(rep.Mismatches) != 1 || len(rep.Problems) != 0 {
					t.Errorf("%d mismatches and %d problems, want 1 and 0:\n%s", len(rep.Mismatches), len(rep.Problems), printed(rep))
				}
			}
			if !strings.Contains(strings.Join(lines, "\n"), tc.want) {
				t.Errorf("no line with %q:\n%s", tc.want, printed(rep))
			}
			if !strings.Contains(printed(rep), "result             FAILED") {
				t.Errorf("printed report does not say FAILED")
			}
		})
	}
}

// TestRefusedKeysStop: a sim with keys the service does not have gets 401 for a genuine
// webhook and stops at once with an error that says what to check.
func TestRefusedKeysStop(t *testing.T) {
	s := newService(t, allpass.MethodGCM, nil, nil)
	cfg := s.config(20, 0)
	var k allpass.Keys
	rand.Read(k.Secret[:])
	cfg.App.Keys = []allpass.Keys{k}
	rep, err := sim.Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "refused a genuine webhook") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Run error = %v, want a refused genuine webhook with 401", err)
	}
	if rep.Webhooks > cfg.Concurrency || rep.Answers.Unauthorized != rep.Webhooks {
		t.Errorf("sent %d webhooks (%d answered 401), want at most one per worker, all 401", rep.Webhooks, rep.Answers.Unauthorized)
	}
}

// TestUnavailableIsRetried: 503 answers (the log could not confirm) are retried like
// Allpass does, and the run still ends with every webhook stored once.
func TestUnavailableIsRetried(t *testing.T) {
	flaky := func(h http.Handler) http.Handler {
		var n atomic.Int64
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1)%3 == 0 {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Retry-After", "5")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"error":{"code":"unavailable","message":"log did not confirm"}}`)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	s := newService(t, allpass.MethodCBC, flaky, nil)
	rep, err := sim.Run(context.Background(), s.config(8, 0.1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("report not OK:\n%s", printed(rep))
	}
	if rep.Retries == 0 || rep.Answers.Other != rep.Retries {
		t.Errorf("retries %d, other answers %d: want equal and above 0", rep.Retries, rep.Answers.Other)
	}
	if rep.Answers.OK != rep.Deliveries {
		t.Errorf("200 answers %d, deliveries %d", rep.Answers.OK, rep.Deliveries)
	}
}

func TestConfigRefused(t *testing.T) {
	good := sim.Config{
		IngestURL: "http://127.0.0.1:1", APIURL: "http://127.0.0.1:2", Token: readerToken,
		App:        allpass.App{Name: "a", AppKey: domain.AppKey(uuid()), Method: allpass.MethodGCM, Keys: []allpass.Keys{{}}},
		Applicants: 1, Concurrency: 1, Check: true,
	}
	for _, tc := range []struct {
		name string
		edit func(*sim.Config)
	}{
		{"no ingest URL", func(c *sim.Config) { c.IngestURL = "" }},
		{"ingest URL without scheme", func(c *sim.Config) { c.IngestURL = "127.0.0.1:8080" }},
		{"check without API URL", func(c *sim.Config) { c.APIURL = "" }},
		{"check without token", func(c *sim.Config) { c.Token = "" }},
		{"no applicants", func(c *sim.Config) { c.Applicants = 0 }},
		{"no concurrency", func(c *sim.Config) { c.Concurrency = 0 }},
		{"negative rate", func(c *sim.Config) { c.Rate = -1 }},
		{"share above 1", func(c *sim.Config) { c.LateShare = 1.5 }},
		{"negative share", func(c *sim.Config) { c.ResendShare = -0.1 }},
		{"bad app key", func(c *sim.Config) { c.App.AppKey = "main" }},
		{"cbc without hmac key", func(c *sim.Config) { c.App.Method = allpass.MethodCBC }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, err := sim.Run(context.Background(), cfg, nil)
			if domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("Run error = %v (kind %v), want KindInvalid", err, domain.KindOf(err))
			}
		})
	}
}

// TestCanceled: ending ctx stops the run promptly and returns ctx's error.
func TestCanceled(t *testing.T) {
	s := newService(t, allpass.MethodCBC, nil, nil)
	cfg := s.config(1000, 0)
	cfg.Rate = 50
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	rep, err := sim.Run(ctx, cfg, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
	if rep.Webhooks == 0 || rep.Webhooks >= 1000 {
		t.Errorf("sent %d webhooks before the cancel, want some and not all", rep.Webhooks)
	}
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func printed(rep sim.Report) string {
	var b strings.Builder
	rep.Print(&b)
	return b.String()
}
