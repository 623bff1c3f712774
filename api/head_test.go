package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// headFixture is the whole write path of one node, in process: the ingest handler over a
// real embedded JetStream with a key ring, a bbolt projection, the real projector (started
// when the test says), and the API with the real eraser and reconciler (against an Open
// API that is down, so every check is a 200 whose report says it failed).
type headFixture struct {
	t      *testing.T
	ingest http.Handler
	srv    *jstest.Server
	events *eventlog.EventLog
	proj   *projection.Projection
	app    *allpass.App
	keys   allpass.Keys
	cfg    Config
	waits  <-chan uint64
	h      http.Handler
	stop   func() // stops the projector if it was started
}

func newHeadFixture(t *testing.T) *headFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	f := &headFixture{t: t, stop: func() {}}
	var raw [32]byte
	rand.Read(raw[:])
	master, err := eventlog.ParseMasterKey(hex.EncodeToString(raw[:]))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = jstest.Start(t)
	f.events = f.srv.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: master}}, log)
	p, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f.proj = p
	rand.Read(f.keys.Secret[:])
	f.keys.HMAC = make([]byte, 32)
	rand.Read(f.keys.HMAC)
	f.app = &allpass.App{Name: "main", AppKey: app1, Method: allpass.MethodCBC, Keys: []allpass.Keys{f.keys}}
	if f.ingest, err = ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{f.app}, Events: f.events,
		Logger: log, Metrics: prometheus.NewRegistry(), KeepRaw: true}); err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	rec, err := reconcile.New(reconcile.Config{Rate: 1000}, p, f.events, []reconcile.App{{App: f.app,
		OpenAPI: reconcile.OpenAPI{BaseURL: down.URL, PrivateKey: "private-key-never-logged-0123456789", Timeout: time.Second}}},
		log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Close)
	eraser, err := erase.New(erase.Config{Events: f.events, Keys: f.events.Keys(), Rejects: f.events, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = Config{Projection: p, Logger: log, LastSeq: f.events.LastSeq, Keys: f.events.Keys(), Erase: eraser.EraseProvider,
		Tokens: []Token{{Name: "dpo", Role: domain.RoleAdmin, Secret: adminToken}},
		Reconcile: func(ctx context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error) {
			return rec.Check(ctx, id, reconcile.CheckOptions{DryRun: dryRun})
		},
		ReconcileKey: func(ctx context.Context, k domain.ApplicantKey, dryRun bool) (reconcile.Report, error) {
			return rec.CheckKey(ctx, k, reconcile.CheckOptions{DryRun: dryRun})
		}}
	f.waits = watchWaits(&f.cfg)
	f.h = f.server(f.cfg)
	t.Cleanup(func() { f.stop() })
	return f
}

func (f *headFixture) server(cfg Config) http.Handler {
	f.t.Helper()
	h, err := NewServer(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// webhook sends one applicantCreated of a new applicant through the ingest handler and
// returns the applicant and the seq of its 200.
func (f *headFixture) webhook(ext string) (domain.ApplicantID, uint64) {
	f.t.Helper()
	id := domain.ApplicantID(newUUID(f.t))
	plain, _ := json.Marshal(map[string]any{"type": "applicantCreated", "id": id, "appKey": app1, "externalUserId": ext})
	body, sig, err := allpass.Seal(allpass.MethodCBC, f.keys, plain, time.Now().UTC().Format(time.RFC3339), nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/allpass/main", bytes.NewReader(body))
	req.Header.Set("x-allpass-signature", sig)
	rec := httptest.NewRecorder()
	f.ingest.ServeHTTP(rec, req)
	var ack struct{ Seq uint64 }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ack) != nil || ack.Seq == 0 {
		f.t.Fatalf("webhook: %d %s", rec.Code, rec.Body)
	}
	return id, ack.Seq
}

// startProjector runs the real projector until the test ends.
func (f *headFixture) startProjector() {
	ctx, cancel := context.WithCancel(context.Background())
	pj := projector.New(f.events, f.proj, projector.Config{}, zap.NewNop(), prometheus.NewRegistry())
	done := make(chan error, 1)
	go func() { done <- pj.Run(ctx) }()
	f.stop = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			f.t.Errorf("projector: %v", err)
		}
	}
}

func (f *headFixture) postAsync(h http.Handler, target, body string) *served {
	s := &served{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		s.rec = httptest.NewRecorder()
		h.ServeHTTP(s.rec, req)
	}()
	return s
}

func newUUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// TestActionsAtHead: reconcile and erase act on the projection as of the log's last
// sequence when they arrive (DESIGN.md section 7). Both are asked while the projector has
// not applied the webhooks just answered 200; each holds for the log's head, and answers
// about the applicant once the projector catches up, never 404.
func TestActionsAtHead(t *testing.T) {
	f := newHeadFixture(t)
	a, _ := f.webhook("user-a")
	b, seqB := f.webhook("user-b")

	// Bounded: with nothing applying the log, an applicant not found is "not yet", 503.
	quick := f.cfg
	quick.MaxWait = 20 * time.Millisecond
	quick.waiting = nil
	got := f.postAsync(f.server(quick), "/v1/applicants/"+string(a)+"/reconcile", "").wait()
	if got.Code != http.StatusServiceUnavailable || !strings.Contains(got.Body.String(), "not applied the log up to seq") {
		t.Fatalf("reconcile with the projection behind past the bound: %d %s, want 503", got.Code, got.Body)
	}

	rec := f.postAsync(f.h, "/v1/applicants/"+string(a)+"/reconcile", "")
	er := f.postAsync(f.h, "/v1/applicants/"+string(b)+"/erase", `{"reason":"retention period over"}`)
	held(t, f.waits, seqB)
	held(t, f.waits, seqB)
	f.startProjector()

	if got := rec.wait(); got.Code != http.StatusOK {
		t.Errorf("reconcile right after the webhook: %d %s", got.Code, got.Body)
	} else {
		var r client.Reconcile
		if err := json.Unmarshal(got.Body.Bytes(), &r); err != nil || r.ApplicantID != a || r.Projection.Status == nil || *r.Projection.Status != string(domain.StatusInit) {
			t.Errorf("reconcile report %s (%v): want applicant %s in status init", got.Body, err, a)
		}
	}
	if got := er.wait(); got.Code != http.StatusOK {
		t.Errorf("erase right after the webhook: %d %s", got.Code, got.Body)
	} else {
		var e client.Erasure
		if err := json.Unmarshal(got.Body.Bytes(), &e); err != nil || e.ApplicantID != b || !e.Erased || e.Seq <= seqB {
			t.Errorf("erasure %s (%v): want applicant %s erased after seq %d", got.Body, err, b, seqB)
		}
	}

	// With the projector running, as on a node: one webhook, then the action at once.
	for range 5 {
		c, _ := f.webhook("user-c")
		if got := f.postAsync(f.h, "/v1/applicants/"+string(c)+"/erase", `{"reason":"test"}`).wait(); got.Code != http.StatusOK {
			t.Fatalf("erase at once after the webhook, projector running: %d %s", got.Code, got.Body)
		}
		d, _ := f.webhook("user-d")
		if got := f.postAsync(f.h, "/v1/applicants/"+string(d)+"/reconcile", "").wait(); got.Code != http.StatusOK {
			t.Fatalf("reconcile at once after the webhook, projector running: %d %s", got.Code, got.Body)
		}
	}
	// Unknown stays 404 once the projection is at the head.
	if got := f.postAsync(f.h, "/v1/applicants/"+newUUID(t)+"/reconcile", "").wait(); got.Code != http.StatusNotFound {
		t.Errorf("reconcile of an unknown applicant: %d %s, want 404", got.Code, got.Body)
	}
	for len(f.waits) > 0 {
		<-f.waits
	}
}
