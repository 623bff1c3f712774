package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Every test ends with no goroutine left: clients, sweeps, renewers and fake servers.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testAppKey     = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	testPrivateKey = "private-key-never-logged-0123456789"
)

// fixture is a real event log (embedded nats-server), a bbolt projection in a temp
// dir, a fake Allpass Open API that seals its answers like Allpass, and a Reconciler.
type fixture struct {
	t      *testing.T
	js     *jstest.Server
	events *eventlog.EventLog
	proj   *projection.Projection
	folder *domain.Folder
	app    *allpass.App
	api    *fakeAPI
	reg    *prometheus.Registry
	rec    *Reconciler
	log    *zap.Logger
}

func newFixture(t *testing.T, method allpass.Method, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, js: jstest.Start(t), folder: domain.NewFolder(), reg: prometheus.NewRegistry(),
		log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	f.events = f.js.EventLog(t, eventlog.Config{}, f.log)
	p, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f.proj = p
	var k allpass.Keys
	rand.Read(k.Secret[:])
	k.HMAC = make([]byte, 32)
	rand.Read(k.HMAC)
	f.app = &allpass.App{Name: "main", AppKey: testAppKey, Method: method, Keys: []allpass.Keys{k}}
	f.api = newFakeAPI(t, f.app)
	f.rec = f.newReconciler(cfg, f.reg)
	return f
}

func (f *fixture) newReconciler(cfg Config, reg prometheus.Registerer) *Reconciler {
	f.t.Helper()
	if cfg.Rate == 0 {
		cfg.Rate = 1000
	}
	cfg.KeepRaw = true
	r, err := New(cfg, f.proj, f.events, []App{{App: f.app, OpenAPI: OpenAPI{
		BaseURL: f.api.srv.URL, PrivateKey: testPrivateKey, Timeout: 300 * time.Millisecond,
	}}}, f.log, reg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(r.Close)
	return r
}

// webhook appends a webhook event of id as ingest would and folds it.
func (f *fixture) webhook(id domain.ApplicantID, typ domain.EventType, at time.Time) uint64 {
	f.t.Helper()
	ev := domain.Event{Provider: allpass.Provider, Origin: domain.OriginWebhook, AppKey: testAppKey, ApplicantID: id,
		Type: typ, EventAt: at.UTC(), EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: at.UTC(),
		Payload: json.RawMessage(`{}`)}
	seq, _, err := f.events.Append(context.Background(), &ev, domain.NewUUID())
	if err != nil {
		f.t.Fatal(err)
	}
	f.catchUp()
	return seq
}

// catchUp folds everything the log holds past the projection's checkpoint.
func (f *fixture) catchUp() {
	f.t.Helper()
	ctx := context.Background()
	err := f.events.Read(ctx, f.proj.Checkpoint()+1, 256, func(evs []domain.Event) error {
		_, err := f.proj.Apply(evs, f.folder)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) lastSeq() uint64 {
	f.t.Helper()
	n, err := f.events.LastSeq(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) state(id domain.ApplicantID) domain.State {
	f.t.Helper()
	st, found, err := f.proj.State(id)
	if err != nil || !found {
		f.t.Fatalf("state of %s: %v, %v", id, found, err)
	}
	return st
}

func (f *fixture) counter(name string, labels ...string) float64 {
	f.t.Helper()
	var c prometheus.Metric
	switch name {
	case "checks":
		c = f.rec.m.checks.WithLabelValues(labels...)
	case "errors":
		c = f.rec.m.errors.WithLabelValues(labels...)
	case "divergences":
		c = f.rec.m.divergences.WithLabelValues(labels...)
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		f.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// fakeAPI is Allpass's Open API for tests: each applicant's truth, sealed like Allpass;
// a per-applicant override answers anything else.
type fakeAPI struct {
	t   *testing.T
	app *allpass.App
	srv *httptest.Server

	mu       sync.Mutex
	truth    map[domain.ApplicantID]domain.Status
	override map[domain.ApplicantID]http.HandlerFunc
	calls    atomic.Int64
	keys     []string // x-private-app-key values received
	onCall   func(n int64)
}

func newFakeAPI(t *testing.T, app *allpass.App) *fakeAPI {
	a := &fakeAPI{t: t, app: app, truth: map[domain.ApplicantID]domain.Status{}, override: map[domain.ApplicantID]http.HandlerFunc{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAPI) set(id domain.ApplicantID, s domain.Status) {
	a.mu.Lock()
	a.truth[id] = s
	a.mu.Unlock()
}

func (a *fakeAPI) on(id domain.ApplicantID, h http.HandlerFunc) {
	a.mu.Lock()
	a.override[id] = h
	a.mu.Unlock()
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	n := a.calls.Add(1)
	id := domain.ApplicantID(strings.TrimPrefix(r.URL.Path, "/api/public/applicant/"))
	a.mu.Lock()
	a.keys = append(a.keys, r.Header.Get(allpass.PrivateKeyHeader))
	h, st, known, onCall := a.override[id], a.truth[id], false, a.onCall
	_, known = a.truth[id]
	a.mu.Unlock()
	if onCall != nil {
		onCall(n)
	}
	if h != nil {
		h(w, r)
		return
	}
	if !known {
		http.Error(w, `{"status":false,"statusCode":404}`, http.StatusNotFound)
		return
	}
	body, sig := a.sealed(id, string(st), "2026-02-01T10:00:00.000Z", time.Now())
	w.Header().Set(allpass.SignatureHeader, sig)
	w.Write(body)
}

// sealed is an Open API answer for id with status and updatedAt, sealed with the app's
// keys, its envelope time at.
func (a *fakeAPI) sealed(id domain.ApplicantID, status, updatedAt string, at time.Time) ([]byte, string) {
	data, _ := json.Marshal(map[string]any{"id": id, "status": status, "updatedAt": updatedAt, "externalUserId": "user-" + string(id[:4])})
	body, sig, err := allpass.Seal(a.app.Method, a.app.Keys[0], data, at.UTC().Format("2006-01-02T15:04:05.000Z"), nil)
	if err != nil {
		a.t.Error(err)
	}
	return body, sig
}

func newID() domain.ApplicantID { return domain.ApplicantID(domain.NewUUID()) }

// past is a time well before now, so webhooks in tests are stale and reconciled events,
// timed by the answer's envelope, are newer.
var past = time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Millisecond)
