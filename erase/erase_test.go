package erase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const master = "5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1ed5ea1"

var (
	app  = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	base = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
)

func applicant(n int) domain.ApplicantID {
	return domain.ApplicantID(fmt.Sprintf("0a3c5e1f-6b2d-4c8e-9f10-%012d", n))
}

func keyedLog(t *testing.T) *eventlog.EventLog {
	t.Helper()
	m, err := eventlog.ParseMasterKey(master)
	if err != nil {
		t.Fatal(err)
	}
	return jstest.Start(t).EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: m}}, zaptest.NewLogger(t))
}

func webhook(t *testing.T, events *eventlog.EventLog, id domain.ApplicantID, typ domain.EventType, n int, at time.Time) uint64 {
	t.Helper()
	seq, err := appendWebhook(events, id, typ, n, at)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// appendWebhook is webhook for a goroutine of the test: it returns the error.
func appendWebhook(events *eventlog.EventLog, id domain.ApplicantID, typ domain.EventType, n int, at time.Time) (uint64, error) {
	ev := &domain.Event{Provider: "allpass", AppKey: app, ApplicantID: id, ExternalUserID: domain.ExternalUserID("secret-user-" + string(id[len(id)-4:])),
		Type: typ, EventAt: at, EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: at,
		Payload: json.RawMessage(fmt.Sprintf(`{"type":%q,"id":%q,"n":%d,"name":"Jane Secret"}`, typ, id, n)),
		Raw:     &domain.Raw{Body: "body-secret", Signature: "sig"}}
	seq, _, err := events.Append(context.Background(), ev, fmt.Sprintf("%s-%d", id, n))
	return seq, err
}

func logged(t *testing.T, events *eventlog.EventLog) []domain.Event {
	t.Helper()
	var out []domain.Event
	if err := events.Read(context.Background(), 1, 100, func(b []domain.Event) error { out = append(out, b...); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func project(t *testing.T, events *eventlog.EventLog) *projection.Projection {
	t.Helper()
	p, err := projection.Open(filepath.Join(t.TempDir(), "p.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Apply(logged(t, events), domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	return p
}

// New refuses an eraser without the log, its key ring or its rejects: nothing could be
// erased, and a request would find out only when it tried.
func TestNewNeedsLogAndKeyring(t *testing.T) {
	events := keyedLog(t)
	for name, cfg := range map[string]Config{"no log": {Keys: events.Keys(), Rejects: events}, "no key ring": {Events: events, Rejects: events},
		"no rejects": {Events: events, Keys: events.Keys()}, "nothing": {}} {
		if _, err := New(cfg); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("%s: %v, want KindInvalid", name, err)
		}
	}
}

// Killed between the append of applicantErased and the key's destruction (here: the
// hook stops the erasure there), the erasure is reported pending and finished by
// ResumePending, with one applicantErased in the log and the key gone.
func TestErasureInterruptedAfterAppendIsFinished(t *testing.T) {
	events := keyedLog(t)
	ctx := context.Background()
	id := applicant(1)
	webhook(t, events, id, domain.EventCreated, 1, base)
	reg := prometheus.NewRegistry()
	stop := errors.New("killed")
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Metrics: reg, Logger: zaptest.NewLogger(t), AfterAppend: func(context.Context) error { return stop }})
	if err != nil {
		t.Fatal(err)
	}
	seq, pending, err := e.Erase(ctx, app, id, "dpo", "request 7")
	if err != nil || !pending || seq == 0 {
		t.Fatalf("Erase = %d, %v, %v; want pending", seq, pending, err)
	}
	if got := gauge(e.pending); got != 1 {
		t.Fatalf("pending gauge %v", got)
	}
	if pend, err := events.Keys().PendingErasures(ctx); err != nil || len(pend) != 1 {
		t.Fatalf("pending erasures %v, %v; want the interrupted one", pend, err)
	}

	// "Restart": a new Eraser without the hook finds the erasure under way.
	e2, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e2.ResumePending(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ResumePending = %d, %v", n, err)
	}
	if got := gauge(e2.pending); got != 0 {
		t.Fatalf("pending after resume %v", got)
	}
	ev := logged(t, events)[0]
	if err := events.Keys().Open(ctx, &ev); !errors.Is(err, eventlog.ErrErased) {
		t.Fatalf("after resume: %v", err)
	}
	evs := logged(t, events)
	erasures := 0
	for _, ev := range evs {
		if ev.Type == domain.EventErased {
			erasures++
			// Who erased and why: sealed under the log key, in clear nowhere in the log.
			full, err := eventlog.DecodeEvent(ev.Seq, ev.Stored)
			if err != nil {
				t.Fatal(err)
			}
			if err := events.Keys().Open(ctx, &full); err != nil || ev.Origin != domain.OriginOperator ||
				!strings.Contains(string(full.Payload), `"by":"dpo","reason":"request 7"`) || strings.Contains(string(ev.Stored), "request 7") {
				t.Fatalf("erasure event: %+v %s, %v", ev, full.Payload, err)
			}
		}
	}
	if erasures != 1 {
		t.Fatalf("%d applicantErased events, want 1", erasures)
	}
	st, _, _ := project(t, events).State(id)
	if !st.Erased || st.SealedExternalUserID != "" || st.Status != domain.StatusInit {
		t.Fatalf("state %+v", st)
	}
	// A second erasure is harmless: another event, nothing left to destroy.
	if _, pending, err := e2.Erase(ctx, app, id, "dpo", "again"); err != nil || pending {
		t.Fatalf("repeated erasure: %v %v", pending, err)
	}
}

// Retention erases applicants whose last event is older than erase_after, and only those.
func TestRetentionSweep(t *testing.T) {
	events := keyedLog(t)
	now := base.Add(10 * 365 * 24 * time.Hour)
	webhook(t, events, applicant(1), domain.EventCreated, 1, base)                   // old
	webhook(t, events, applicant(2), domain.EventCreated, 2, base)                   // old, but
	webhook(t, events, applicant(2), domain.EventInProgress, 3, now.Add(-time.Hour)) // recent again
	webhook(t, events, applicant(3), domain.EventCreated, 4, now.Add(-48*time.Hour)) // recent
	for _, id := range []domain.ApplicantID{applicant(1), applicant(3)} {
		if err := events.Reject(context.Background(), domain.Reject{Reason: "invalid_payload", Status: 422, Body: "refused",
			Kept: domain.KeptAuthenticated, Provider: "allpass", AppKey: app, ApplicantID: id}); err != nil {
			t.Fatal(err)
		}
	}
	p := project(t, events)
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Projection: p, EraseAfter: 5 * 365 * 24 * time.Hour, Now: func() time.Time { return now },
		Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.Sweep(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	erasedNow, _ := events.Keys().Erased(context.Background(), app, applicant(1))
	keep2, _ := events.Keys().Erased(context.Background(), app, applicant(2))
	keep3, _ := events.Keys().Erased(context.Background(), app, applicant(3))
	if !erasedNow || keep2 || keep3 {
		t.Fatalf("erased: 1 %v, 2 %v, 3 %v", erasedNow, keep2, keep3)
	}
	// The erased applicant's rejects went with it; the others' stay.
	if rs := listRejects(t, events); len(rs) != 1 || rs[0].ApplicantID != applicant(3) {
		t.Fatalf("rejects after the sweep: %+v", rs)
	}
}

// A sweep that lasts asks MayRun again between pages: while it says yes (the lease is
// renewed) the sweep goes on; once it says no (another node holds the lease) the sweep
// stops there with KindConflict, and what is left is that node's.
func TestLongSweepAsksMayRunAgain(t *testing.T) {
	defer func(page int, d time.Duration) { sweepPage, sweepRecheck = page, d }(sweepPage, sweepRecheck)
	sweepPage, sweepRecheck = 2, 0
	events := keyedLog(t)
	now := base.Add(10 * 365 * 24 * time.Hour)
	for i := 1; i <= 5; i++ {
		webhook(t, events, applicant(i), domain.EventCreated, i, base)
	}
	p := project(t, events)
	ctx := context.Background()
	for _, c := range []struct {
		yes, wantErased, wantCalls int
		wantKind                   domain.ErrorKind
	}{
		{yes: 2, wantErased: 4, wantCalls: 3, wantKind: domain.KindConflict}, // pages of 2, 2, then refused
		{yes: 99, wantErased: 1, wantCalls: 3},                               // the fifth; the erased are paged past
	} {
		calls := 0
		e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Projection: p, EraseAfter: 5 * 365 * 24 * time.Hour, Now: func() time.Time { return now },
			Logger: zaptest.NewLogger(t), MayRun: func(context.Context) (bool, error) { calls++; return calls <= c.yes, nil }})
		if err != nil {
			t.Fatal(err)
		}
		n, err := e.Sweep(ctx)
		if n != c.wantErased || calls != c.wantCalls || domain.KindOf(err) != c.wantKind || (c.wantKind == domain.KindOther) != (err == nil) {
			t.Fatalf("MayRun yes %d times: Sweep = %d, %v after %d calls; want %d erased, %d calls, kind %v",
				c.yes, n, err, calls, c.wantErased, c.wantCalls, c.wantKind)
		}
		// The projection folds the erasures, as the node's projector would.
		folded := p.Checkpoint()
		if _, err := p.Apply(logged(t, events)[folded:], domain.NewFolder()); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		if erased, _ := events.Keys().Erased(ctx, app, applicant(i)); !erased {
			t.Errorf("applicant %d not erased after both sweeps", i)
		}
	}
}

// An erasure racing webhooks of the same applicant: whatever the interleaving, the
// applicant ends erased, its key gone, no event holds its data in clear or under a key
// that still exists, and KYC_KEYS keeps only its tombstone.
func TestErasureRacingWebhooks(t *testing.T) {
	events := keyedLog(t)
	ctx := context.Background()
	id := applicant(9)
	webhook(t, events, id, domain.EventCreated, 0, base)
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Go(func() {
			if _, err := appendWebhook(events, id, domain.EventStepPassed, i, base.Add(time.Duration(i)*time.Second)); err != nil {
				t.Errorf("webhook %d: %v", i, err)
			}
		})
	}
	wg.Go(func() {
		if _, pending, err := e.Erase(ctx, app, id, "dpo", "race"); err != nil || pending {
			t.Errorf("Erase: %v %v", pending, err)
		}
	})
	wg.Wait()
	for _, ev := range logged(t, events) {
		if strings.Contains(string(ev.Stored), "secret") || strings.Contains(string(ev.Stored), "Jane") {
			t.Fatalf("seq %d holds personal data in clear: %s", ev.Seq, ev.Stored)
		}
		full, _ := eventlog.DecodeEvent(ev.Seq, ev.Stored)
		if full.Origin == domain.OriginOperator {
			if strings.Contains(string(ev.Stored), "race") {
				t.Fatalf("the erasure's reason is in clear: %s", ev.Stored)
			}
			continue // sealed under the log key, not the applicant's
		}
		if err := events.Keys().Open(ctx, &full); err == nil && full.Sealed != "" {
			t.Fatalf("seq %d still opens after the erasure", ev.Seq)
		}
	}
	st, _, _ := project(t, events).State(id)
	if !st.Erased || st.Events != 22 {
		t.Fatalf("state %+v", st)
	}
	if pend, err := events.Keys().PendingErasures(ctx); err != nil || len(pend) != 0 {
		t.Fatalf("pending %v %v", pend, err)
	}
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

// An erasure that cannot be recorded (the server is down) appends nothing, is counted
// failed and logged at error level with the applicant's id: what the
// KycstateErasureFailed alert sends an operator to. A refused id is counted, not logged.
func TestErasureFailedIsCountedAndLogged(t *testing.T) {
	m, err := eventlog.ParseMasterKey(master)
	if err != nil {
		t.Fatal(err)
	}
	srv := jstest.Start(t)
	events := srv.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: m}}, zaptest.NewLogger(t))
	core, logs := observer.New(zap.ErrorLevel)
	reg := prometheus.NewRegistry()
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Metrics: reg, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	id := applicant(7)
	webhook(t, events, id, domain.EventCreated, 1, base)
	srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if seq, _, err := e.Erase(ctx, app, id, "officer", "asked"); err == nil || seq != 0 {
		t.Fatalf("Erase with the server down = %d, %v; want an error and no seq", seq, err)
	}
	if _, _, err := e.Erase(ctx, app, "not-a-uuid", "officer", "asked"); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("Erase of a bad id: %v, want KindInvalid", err)
	}
	var failed dto.Metric
	if err := e.total.WithLabelValues(ResultFailed).Write(&failed); err != nil {
		t.Fatal(err)
	}
	if got := failed.GetCounter().GetValue(); got != 2 {
		t.Fatalf("failed erasures counted %v, want 2", got)
	}
	entries := logs.All()
	if len(entries) != 1 || entries[0].ContextMap()["applicantId"] != string(id) || entries[0].ContextMap()["by"] != "officer" {
		t.Fatalf("error log %v; want one line naming %s and who asked", entries, id)
	}
}

// The sweep erases nothing while the projection is behind the log: the last event time
// it would read could be older than the applicant's real last event. Once the
// projection has folded the log, the recent event keeps the applicant.
func TestRetentionSweepWaitsForTheProjection(t *testing.T) {
	defer func(d time.Duration) { sweepCatchUp = d }(sweepCatchUp)
	sweepCatchUp = 200 * time.Millisecond
	events := keyedLog(t)
	now := base.Add(10 * 365 * 24 * time.Hour)
	webhook(t, events, applicant(1), domain.EventCreated, 1, base)
	p, err := projection.Open(filepath.Join(t.TempDir(), "p.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Apply(logged(t, events), domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	// Active again, but the projection has not folded it yet.
	webhook(t, events, applicant(1), domain.EventInProgress, 2, now.Add(-time.Hour))
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Projection: p, EraseAfter: 5 * 365 * 24 * time.Hour, Now: func() time.Time { return now },
		Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := e.Sweep(ctx); n != 0 || domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("Sweep with the projection behind = %d, %v; want 0 and KindUnavailable", n, err)
	}
	if erased, _ := events.Keys().Erased(ctx, app, applicant(1)); erased {
		t.Fatal("erased from a projection behind the log")
	}
	if _, err := p.Apply(logged(t, events)[1:], domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("Sweep caught up = %d, %v; want nothing erased", n, err)
	}
}

// Run sweeps once at start, not only after a whole SweepEvery.
func TestRunSweepsAtStart(t *testing.T) {
	events := keyedLog(t)
	now := base.Add(10 * 365 * 24 * time.Hour)
	webhook(t, events, applicant(1), domain.EventCreated, 1, base)
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Projection: project(t, events), EraseAfter: 5 * 365 * 24 * time.Hour, SweepEvery: time.Hour,
		Now: func() time.Time { return now }, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if erased, _ := events.Keys().Erased(ctx, app, applicant(1)); erased {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("Run did not sweep at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
