package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

// Tokens of the test server.
const (
	readerToken  = "reader-token-5f1e0c2d"
	auditorToken = "auditor-token-9a7b3c4e"
	wrongToken   = "not-a-configured-token"
)

// Ids of the fixture.
const (
	app1 = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	app2 = domain.AppKey("0b6c7b43-7d38-4d7e-9c2e-3f5b1d2a9e10")

	idA = domain.ApplicantID("0a3c5e1f-6b2d-4c8e-9f10-aaaaaaaaaaa1") // regular path to APPROVED, steps
	idB = domain.ApplicantID("1b4d6f20-7c3e-4d9f-8021-bbbbbbbbbbb2") // duplicate, stale, warnings, REJECTED
	idC = domain.ApplicantID("2c5e7031-8d4f-4ea0-9132-ccccccccccc3") // irregular start, irregular hop; same user as A in app2
	idD = domain.ApplicantID("3d6f8142-9e50-4fb1-a243-ddddddddddd4") // annotations and an unknown event, no status
	idE = domain.ApplicantID("4e709253-af61-40c2-b354-eeeeeeeeeee5") // created, in progress, APPROVED
	// idNone never appears in the log.
	idNone = domain.ApplicantID("5f81a364-b072-41d3-8465-fffffffffff6")
)

// base is the fixture's first moment; everything else is an offset from it, so the
// golden files never depend on the clock.
var base = time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)

// spec describes one synthetic webhook.
type spec struct {
	id       domain.ApplicantID
	app      domain.AppKey
	ext      domain.ExternalUserID
	typ      domain.EventType
	at       time.Duration // eventAt - base
	recv     time.Duration // receivedAt - base
	step     string
	warnings []string
	source   string
	flag     domain.TimeFlag // the time was outside the trusted window: at = recv, source received
}

// fixtureSpecs is the log, in stream order (seq = index + 1). Applicants interleave, as
// webhooks of concurrent users do.
func fixtureSpecs() []spec {
	m := time.Minute
	return []spec{
		{id: idA, app: app1, ext: "user-1", typ: domain.EventCreated, at: 0, recv: 1 * m},                                                  // 1
		{id: idB, app: app1, ext: "user-2", typ: domain.EventCreated, at: 1 * m, recv: 2 * m},                                              // 2
		{id: idA, app: app1, ext: "user-1", typ: domain.EventInProgress, at: 2 * m, recv: 3 * m},                                           // 3
		{id: idC, app: app2, ext: "user-1", typ: domain.EventApproved, at: 3 * m, recv: 4 * m},                                             // 4 irregular: first event not created
		{id: idB, app: app1, ext: "user-2", typ: domain.EventInProgress, at: 5 * m, recv: 5 * m},                                           // 5
		{id: idB, app: app1, ext: "user-2", typ: domain.EventInProgress, at: 5 * m, recv: 6 * m},                                           // 6 duplicate (a retry)
		{id: idA, app: app1, ext: "user-1", typ: domain.EventStepPassed, at: 6 * m, recv: 7 * m, step: "document"},                         // 7
		{id: idD, app: app1, typ: domain.EventDuplicateEmail, at: 7 * m, recv: 8 * m, warnings: []string{"email reused"}},                  // 8
		{id: idB, app: app1, ext: "user-2", typ: domain.EventInReview, at: 4 * m, recv: 9 * m},                                             // 9 stale: older than IN_PROGRESS at 5m
		{id: idA, app: app1, ext: "user-1", typ: domain.EventStepPassed, at: 9 * m, recv: 10 * m, step: "selfie"},                          // 10
		{id: idE, app: app1, ext: "user-5", typ: domain.EventCreated, at: 10 * m, recv: 11 * m, source: "envelope.time"},                   // 11
		{id: idC, app: app2, ext: "user-1", typ: domain.EventOnHold, at: 11 * m, recv: 12 * m},                                             // 12 irregular: APPROVED -> ON_HOLD
		{id: idA, app: app1, ext: "user-1", typ: domain.EventCompleted, at: 12 * m, recv: 13 * m},                                          // 13
		{id: idD, app: app1, typ: domain.EventExpiredDocument, at: 13 * m, recv: 14 * m},                                                   // 14
		{id: idB, app: app1, ext: "user-2", typ: domain.EventRejected, at: 14 * m, recv: 15 * m, warnings: []string{"face mismatch"}},      // 15
		{id: idE, app: app1, ext: "user-5", typ: domain.EventInProgress, at: 16 * m, recv: 16 * m, source: "received", flag: "clock_skew"}, // 16 its own time a year ahead
		{id: idD, app: app1, typ: "applicantLevelChanged", at: 16 * m, recv: 17 * m},                                                       // 17 unknown
		{id: idC, app: app2, ext: "user-1", typ: domain.EventCompleted, at: 17 * m, recv: 18 * m},                                          // 18
		{id: idA, app: app1, ext: "user-1", typ: domain.EventApproved, at: 18 * m, recv: 19 * m},                                           // 19
		{id: idE, app: app1, ext: "user-5", typ: domain.EventApproved, at: 19 * m, recv: 20 * m},                                           // 20
		// 21: through an ingest node whose clock is behind: "received" before seq 19.
		{id: idA, app: app1, ext: "user-1", typ: domain.EventStepPassed, at: 20 * m, recv: 19*m - 15*time.Second, step: "address"},
	}
}

// fixtureEvents turns specs into stored events, as the log would hand them to the projector.
func fixtureEvents(tb testing.TB, first uint64, specs []spec) []domain.Event {
	tb.Helper()
	out := make([]domain.Event, len(specs))
	for i, s := range specs {
		src := s.source
		if src == "" {
			src = domain.SourcePayloadUpdatedAt
		}
		payload, err := json.Marshal(map[string]any{"type": s.typ, "id": s.id, "appKey": s.app,
			"externalUserId": s.ext, "stepName": s.step, "warnings": s.warnings,
			"updatedAt": base.Add(s.at).Format(time.RFC3339)})
		if err != nil {
			tb.Fatal(err)
		}
		ev := domain.Event{V: domain.StoredVersionClear, Provider: "allpass", AppKey: s.app, ApplicantID: s.id,
			ExternalUserID: s.ext, Type: s.typ, StepName: s.step, Warnings: s.warnings,
			EventAt: base.Add(s.at), EventAtSource: src, ReceivedAt: base.Add(s.recv), Payload: payload,
			TimeFlag: s.flag, Seq: first + uint64(i)}
		if ev.Stored, err = json.Marshal(ev); err != nil {
			tb.Fatal(err)
		}
		out[i] = ev
	}
	return out
}

// fixture is a real projection folded from the fixture log, and the API over it.
type fixture struct {
	proj   *projection.Projection
	h      http.Handler
	reg    *prometheus.Registry
	stored []domain.Event
	folder *domain.Folder
}

// newFixture opens a projection in t.TempDir(), applies the fixture log in three batches,
// and builds the API over it; mod, if not nil, adjusts the config first.
func newFixture(tb testing.TB, mod func(*Config)) *fixture {
	tb.Helper()
	return buildFixture(tb, fixtureEvents(tb, 1, fixtureSpecs()), mod)
}

// buildFixture folds events into a projection in t.TempDir() (in three batches when
// there are enough) and builds the API over it; mod, if not nil, adjusts the config first.
func buildFixture(tb testing.TB, events []domain.Event, mod func(*Config)) *fixture {
	tb.Helper()
	proj, err := projection.Open(filepath.Join(tb.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { proj.Close() })
	f := &fixture{proj: proj, reg: prometheus.NewRegistry(), folder: domain.NewFolder(), stored: events}
	batches := [][]domain.Event{f.stored}
	if len(f.stored) >= 15 {
		batches = [][]domain.Event{f.stored[:7], f.stored[7:15], f.stored[15:]}
	}
	for _, batch := range batches {
		if _, err := proj.Apply(batch, f.folder); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := Config{
		Projection: proj,
		Tokens: []Token{
			{Name: "product", Role: domain.RoleReader, Secret: readerToken},
			{Name: "audit", Role: domain.RoleAuditor, Secret: auditorToken},
		},
		Logger:  zaptest.NewLogger(tb),
		Metrics: f.reg,
		Ready:   func(ctx context.Context) error { return nil },
	}
	if mod != nil {
		mod(&cfg)
	}
	if f.h, err = NewServer(cfg); err != nil {
		tb.Fatal(err)
	}
	return f
}

// apply appends events to the fixture's log and folds them into the projection.
func (f *fixture) apply(tb testing.TB, specs ...spec) []domain.Event {
	tb.Helper()
	evs := fixtureEvents(tb, uint64(len(f.stored))+1, specs)
	if _, err := f.proj.Apply(evs, f.folder); err != nil {
		tb.Fatal(err)
	}
	f.stored = append(f.stored, evs...)
	return evs
}

// get serves one GET through the handler.
func (f *fixture) get(tb testing.TB, target, token string) *httptest.ResponseRecorder {
	tb.Helper()
	return f.do(context.Background(), http.MethodGet, target, token)
}

func (f *fixture) do(ctx context.Context, method, target, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, method, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// foldUpTo folds the fixture's events of id that keep accepts with a fresh Folder over the
// stored events: an account of point-in-time state independent of the projection's
// history and of Refold.
func foldUpTo(events []domain.Event, id domain.ApplicantID, keep func(domain.Event) bool) (domain.State, bool) {
	f := domain.NewFolder()
	var st domain.State
	n := 0
	for _, e := range events {
		if e.ApplicantID != id {
			continue
		}
		if !keep(e) {
			break
		}
		st, _ = f.Apply(st, e)
		n++
	}
	return st, n > 0
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// decode parses a JSON body into a generic value.
func decode(tb testing.TB, body []byte) any {
	tb.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		tb.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	return v
}
