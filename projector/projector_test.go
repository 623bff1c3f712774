package projector

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

type fixture struct {
	events *eventlog.EventLog
	proj   *projection.Projection
	path   string
	log    *zap.Logger
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	// The fixture's default fsync is enough: these tests are about order and
	// exactly-once, not power loss.
	events := jstest.Start(t).EventLog(t, eventlog.Config{}, log)
	f := &fixture{events: events, path: filepath.Join(dir, "projection.db"), log: log}
	f.reopen(t)
	return f
}

func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	if f.proj != nil {
		f.proj.Close()
	}
	p, err := projection.Open(f.path, projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.proj = p
	t.Cleanup(func() { p.Close() })
}

func uuid(kind byte, n int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%02x%010x", n, kind, n)
}

var journey = []domain.EventType{
	domain.EventCreated, domain.EventInProgress, domain.EventStepPassed, domain.EventCompleted,
	domain.EventInReview, domain.EventApproved, "applicantSomethingNew", domain.EventRejected,
}

// appendLog appends events [from, to) of one deterministic log over applicants: journeys
// in order, with every seventh event a re-delivery of the previous one (same content, new
// Nats-Msg-Id: the fold must call it a duplicate) and every eleventh a late one (older
// eventAt: stale).
func appendLog(t *testing.T, events *eventlog.EventLog, from, to, applicants int) {
	t.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := make([]int, applicants)
	for i := range to {
		a := i % applicants
		k := step[a] % len(journey)
		at := base.Add(time.Duration(step[a]) * time.Minute)
		switch {
		case i%7 == 6 && step[a] > 0:
			k, at = (step[a]-1)%len(journey), base.Add(time.Duration(step[a]-1)*time.Minute)
		case i%11 == 10 && step[a] > 1:
			at = base.Add(-time.Hour)
			step[a]++
		default:
			step[a]++
		}
		if i < from {
			continue
		}
		ev := &domain.Event{
			Provider: "allpass", AppKey: domain.AppKey(uuid(0xaa, 1)),
			ApplicantID: domain.ApplicantID(uuid(0xbb, a)), ExternalUserID: domain.ExternalUserID(fmt.Sprintf("user-%d", a)),
			Type: journey[k], StepName: "document", EventAt: at, EventAtSource: domain.SourcePayloadUpdatedAt,
			ReceivedAt: time.Now().UTC(), Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
		if _, dup, err := events.Append(context.Background(), ev, fmt.Sprintf("msg-%d", i)); err != nil || dup {
			t.Fatalf("append %d: dup %v err %v", i, dup, err)
		}
	}
}

// run starts the projector and returns a stop function that waits for Run to return.
func run(t *testing.T, p *Projector) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("projector did not stop within 10 s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitCheckpoint(t *testing.T, proj *projection.Projection, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got := proj.WaitFor(ctx, seq); got < seq {
		t.Fatalf("checkpoint %d, want %d", got, seq)
	}
}

// verifyExact checks the projection against a fresh fold of the log: same digests for
// every applicant (projection.Verify), and every event in exactly one history record.
func verifyExact(t *testing.T, f *fixture, n, applicants int) {
	t.Helper()
	res, err := projection.Verify(context.Background(), f.events, f.proj)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differences) > 0 || res.Applicants != applicants || res.Events != uint64(n) {
		t.Fatalf("verify: %d applicants, %d events, differences %v", res.Applicants, res.Events, res.Differences)
	}
	total := 0
	seen := map[uint64]bool{}
	outcomes := map[domain.Outcome]int{}
	for a := range applicants {
		recs, _, err := f.proj.History(domain.ApplicantID(uuid(0xbb, a)), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if seen[r.Seq] {
				t.Fatalf("seq %d applied twice", r.Seq)
			}
			seen[r.Seq] = true
			outcomes[r.Outcome]++
		}
		total += len(recs)
	}
	if total != n {
		t.Fatalf("history holds %d records, log has %d events", total, n)
	}
	for _, o := range []domain.Outcome{domain.OutcomeApplied, domain.OutcomeDuplicate, domain.OutcomeStale, domain.OutcomeUnknown, domain.OutcomeAnnotated} {
		if outcomes[o] == 0 {
			t.Errorf("log produced no %s outcome: %v (test log too tame)", o, outcomes)
		}
	}
}

func TestProjectorFoldsTheLog(t *testing.T) {
	f := newFixture(t)
	const n, applicants = 600, 40
	appendLog(t, f.events, 0, n/2, applicants)
	reg := prometheus.NewRegistry()
	p := New(f.events, f.proj, Config{MaxBatch: 50, LagEvery: 10 * time.Millisecond}, f.log, reg)
	stop := run(t, p)
	waitCheckpoint(t, f.proj, n/2)
	// Events appended while it follows arrive too.
	appendLog(t, f.events, n/2, n, applicants)
	waitCheckpoint(t, f.proj, n)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	verifyExact(t, f, n, applicants)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			got[mf.GetName()] = m.Counter.GetValue()
		case m.Histogram != nil:
			got[mf.GetName()] = float64(m.Histogram.GetSampleCount())
		case m.Gauge != nil:
			got[mf.GetName()] = m.Gauge.GetValue()
		}
	}
	if got["kycstate_projector_events_applied_total"] != n || got["kycstate_projector_receipt_to_queryable_seconds"] != n ||
		got["kycstate_projector_lag_sequences"] != 0 {
		t.Fatalf("metrics %v", got)
	}
}

// A crash between commit and the next fetch: the projector must start again after the
// checkpoint, re-reading nothing it applied. And a commit that fails (disk full, say)
// before it happens: nothing is applied, the projector reports it is failing, retries, and
// applies the batch exactly once when the fault clears.
func TestProjectorFaults(t *testing.T) {
	cases := []struct {
		name        string
		wantFailing bool // a failed commit shows in Ready until the retry succeeds
		inject      func(p *Projector, fail func() bool)
	}{
		{"after commit", false, func(p *Projector, fail func() bool) {
			p.afterCommit = func(uint64) error {
				if fail() {
					return errors.New("injected: crash after commit")
				}
				return nil
			}
		}},
		{"before commit", true, func(p *Projector, fail func() bool) {
			p.beforeApply = func([]domain.Event) error {
				if fail() {
					return errors.New("injected: no space left on device")
				}
				return nil
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			const n, applicants = 400, 30
			appendLog(t, f.events, 0, n, applicants)
			p := New(f.events, f.proj, Config{MaxBatch: 10, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}, f.log, nil)
			var calls, failures atomic.Int64
			var sawFailing atomic.Bool
			c.inject(p, func() bool {
				// Fail every third batch, ten times in all.
				if calls.Add(1)%3 == 0 && failures.Load() < 10 {
					failures.Add(1)
					return true
				}
				if p.failing.Load() {
					sawFailing.Store(true)
				}
				return false
			})
			run(t, p)
			waitCheckpoint(t, f.proj, n)
			if failures.Load() < 10 {
				t.Fatalf("only %d faults injected", failures.Load())
			}
			if c.wantFailing && !sawFailing.Load() {
				t.Fatal("the projector never reported failing between a fault and its retry")
			}
			verifyExact(t, f, n, applicants)
		})
	}
}

// Restarts at random points (a new Projector on a reopened file each time, as after
// kill -9) lose nothing and apply nothing twice.
func TestProjectorRestarts(t *testing.T) {
	f := newFixture(t)
	const n, applicants = 500, 25
	appendLog(t, f.events, 0, n, applicants)
	for round := 0; f.proj.Checkpoint() < n; round++ {
		if round > 50 {
			t.Fatalf("no progress after %d restarts: checkpoint %d", round, f.proj.Checkpoint())
		}
		p := New(f.events, f.proj, Config{MaxBatch: 7}, f.log, nil)
		target := f.proj.Checkpoint() + 60
		stop := run(t, p)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f.proj.WaitFor(ctx, min(target, n))
		cancel()
		stop()
		f.reopen(t)
	}
	verifyExact(t, f, n, applicants)
}

func TestProjectorReady(t *testing.T) {
	f := newFixture(t)
	appendLog(t, f.events, 0, 50, 5)
	p := New(f.events, f.proj, Config{}, f.log, nil)
	if err := p.Ready(context.Background(), 10); domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("ready with 50 events unapplied: %v", err)
	}
	run(t, p)
	waitCheckpoint(t, f.proj, 50)
	if err := p.Ready(context.Background(), 10); err != nil {
		t.Fatalf("not ready after catching up: %v", err)
	}
	if p.Lag() != 0 {
		// Lag reads the last sequence it saw; after catching up it is 0.
		t.Fatalf("lag %d after catching up", p.Lag())
	}
}

// A node started on an empty (or old) projection is not ready until it has caught up with
// the log as it stood when first asked, however small its lag: it would answer 404 for
// applicants it has not folded yet. Once caught up, the lag bound alone decides.
func TestProjectorNotReadyUntilFirstCaughtUp(t *testing.T) {
	f := newFixture(t)
	appendLog(t, f.events, 0, 20, 5)
	p := New(f.events, f.proj, Config{}, f.log, nil)
	if err := p.Ready(context.Background(), 1000); !errors.Is(err, ErrCatchingUp) {
		t.Fatalf("ready with 20 of 20 events unapplied and a lag bound of 1000: %v", err)
	}
	run(t, p)
	waitCheckpoint(t, f.proj, 20)
	if err := p.Ready(context.Background(), 1000); err != nil {
		t.Fatalf("not ready after catching up: %v", err)
	}
	appendLog(t, f.events, 20, 25, 5) // new events within the bound keep it ready
	if err := p.Ready(context.Background(), 1000); err != nil {
		t.Fatalf("not ready with a lag within the bound after catching up: %v", err)
	}
}
