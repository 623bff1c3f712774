package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// applicants makes n applicants stuck in IN_REVIEW since past whose truth is status.
func (f *fixture) applicants(n int, truth domain.Status) []domain.ApplicantID {
	ids := make([]domain.ApplicantID, n)
	for i := range ids {
		ids[i] = newID()
		f.webhook(ids[i], domain.EventInReview, past)
		f.api.set(ids[i], truth)
	}
	return ids
}

// reconciledEvents counts the events of origin openapi in the log, per applicant.
func (f *fixture) reconciledEvents(ids []domain.ApplicantID) map[domain.ApplicantID]int {
	f.t.Helper()
	out := map[domain.ApplicantID]int{}
	for _, id := range ids {
		evs, err := f.events.Applicant(context.Background(), testAppKey, id)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, e := range evs {
			if e.Origin == domain.OriginOpenAPI {
				out[id]++
			}
		}
	}
	return out
}

func TestSweepSelection(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	stale := f.applicants(3, domain.StatusApproved)
	approved := newID()
	f.webhook(approved, domain.EventApproved, past)
	f.api.set(approved, domain.StatusRejected) // a re-review only the full sweep sees
	recent := newID()
	f.webhook(recent, domain.EventInReview, time.Now())
	f.api.set(recent, domain.StatusApproved)

	res, err := f.rec.Sweep(context.Background(), SweepOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Candidates != 3 || res.Checked != 3 || res.Results[ActionAppended] != 3 || !res.Complete {
		t.Fatalf("stale sweep: %+v", res)
	}
	f.catchUp()
	for _, id := range stale {
		if f.state(id).Status != domain.StatusApproved {
			t.Fatalf("%s not fixed", id)
		}
	}
	prog := &Progress{}
	res, err = f.rec.Sweep(context.Background(), SweepOptions{Full: true}, prog)
	if err != nil {
		t.Fatal(err)
	}
	// Full: all five; the three fixed are in sync, the two others diverge.
	if res.Candidates != 5 || res.Results[ActionInSync] != 3 || res.Results[ActionAppended] != 2 || prog.LastFull.IsZero() || prog.LastEnd.IsZero() {
		t.Fatalf("full sweep: %+v, progress %+v", res, prog)
	}
	if g := gauge(t, f.rec.m.lastSweep); g < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last sweep gauge %v", g)
	}
	if g := gauge(t, f.rec.m.progress); g != 1 {
		t.Fatalf("progress gauge %v after the sweep", g)
	}
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// Two nodes sweeping the same log at once append each divergence once: the message id
// is the same for the same answer.
func TestTwoNodesSweepingAtOnceAppendOnce(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	ids := f.applicants(20, domain.StatusApproved)
	other := f.newReconciler(Config{}, prometheus.NewRegistry())
	var wg sync.WaitGroup
	for _, r := range []*Reconciler{f.rec, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Sweep(context.Background(), SweepOptions{}, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for id, n := range f.reconciledEvents(ids) {
		if n != 1 {
			t.Errorf("applicant %s: %d reconciled events", id, n)
		}
	}
	if got := f.lastSeq(); got != 40 {
		t.Fatalf("log holds %d events, want 20 webhooks and 20 reconciled", got)
	}
}

// A sweep killed half-way resumes where it stopped: the applicants checked before are
// not asked about again.
func TestSweepKilledHalfWayResumes(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{Rate: 200})
	ids := f.applicants(20, domain.StatusApproved)
	ctx, kill := context.WithCancel(context.Background())
	f.api.onCall = func(n int64) {
		if n == 8 {
			kill()
		}
	}
	var saved []byte
	save := func(p Progress) { saved, _ = json.Marshal(p) }
	_, err := f.rec.Sweep(ctx, SweepOptions{Save: save}, nil)
	if err == nil {
		t.Fatal("the killed sweep did not say so")
	}
	f.api.onCall = nil
	callsBefore := f.api.calls.Load()

	// A fresh node (another Reconciler) reads what the lease saved.
	var prog Progress
	if err := json.Unmarshal(saved, &prog); err != nil || prog.Started.IsZero() {
		t.Fatalf("saved progress %s: %v", saved, err)
	}
	f.catchUp()
	res, err := f.newReconciler(Config{}, prometheus.NewRegistry()).Sweep(context.Background(), SweepOptions{}, &prog)
	if err != nil || !res.Complete {
		t.Fatalf("resumed: %+v, %v", res, err)
	}
	if total := f.api.calls.Load(); total > 21 || callsBefore+int64(res.Checked) != total {
		t.Fatalf("%d calls for 20 applicants (%d before the kill, %d after)", total, callsBefore, res.Checked)
	}
	if res.Checked >= 20 || res.Checked < 11 {
		t.Fatalf("the resumed sweep checked %d, want the rest", res.Checked)
	}
	f.catchUp()
	for id, n := range f.reconciledEvents(ids) {
		if n != 1 || f.state(id).Status != domain.StatusApproved {
			t.Errorf("applicant %s: %d reconciled events, status %s", id, n, f.state(id).Status)
		}
	}
}

func TestSweepStopsOnUnauthorized(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	ids := f.applicants(5, domain.StatusApproved)
	for _, id := range ids {
		f.api.on(id, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	}
	res, err := f.rec.Sweep(context.Background(), SweepOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.api.calls.Load() != 1 || len(res.Stopped) != 1 || res.Stopped[0] != "main" || f.lastSeq() != 5 {
		t.Fatalf("%d calls, %+v", f.api.calls.Load(), res)
	}
	if g := gauge(t, f.rec.m.stopped.WithLabelValues("main")); g != 1 {
		t.Fatalf("stopped gauge %v", g)
	}
	if _, err := f.rec.Sweep(context.Background(), SweepOptions{}, nil); err != nil || f.api.calls.Load() != 1 {
		t.Fatalf("a stopped app was called again: %d calls", f.api.calls.Load())
	}
}

func TestSweepBacksOffOn429(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	ids := f.applicants(5, domain.StatusApproved)
	slices.Sort(ids) // swept in id order: the first one is refused
	f.api.on(ids[0], func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	var prog Progress
	res, err := f.rec.Sweep(context.Background(), SweepOptions{}, &prog)
	if err != nil {
		t.Fatal(err)
	}
	// The 429 pauses the app for two minutes, longer than a sweep waits, so the rest
	// waits for the next sweep.
	if res.Complete || f.api.calls.Load() != 1 || f.lastSeq() != 5 {
		t.Fatalf("%d calls, %+v", f.api.calls.Load(), res)
	}
	if len(prog.Retry[testAppKey]) != 1 || prog.Retry[testAppKey][0] != ids[0] {
		t.Fatalf("progress %+v: the refused applicant is not kept for the next sweep", prog)
	}
}

// Run on two nodes: one holds the lease and sweeps; when it stops, the other takes the
// lease over and sweeps at once, resuming nothing twice.
func TestRunOneSweeperAndTakeover(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{Every: time.Hour})
	diverged := f.applicants(6, domain.StatusApproved)
	inSync := f.applicants(4, domain.StatusInReview) // stale and in sync: every stale sweep asks
	ctx := context.Background()
	leases, err := eventlog.OpenLeases(ctx, f.js.Conn(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	nodeA := f.newReconciler(Config{Every: time.Hour}, prometheus.NewRegistry())
	nodeB := f.newReconciler(Config{Every: time.Hour}, prometheus.NewRegistry())
	const ttl = 300 * time.Millisecond
	// signal sends on ch without blocking Run: the test reads what it waits for, and a
	// report it does not wait for is dropped.
	signal := func(ch chan struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	sweptA, sweptB, refusedB := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 1)
	optA := RunOptions{Holder: "node-a", LeaseTTL: ttl, swept: func() { signal(sweptA) }}
	optB := RunOptions{Holder: "node-b", LeaseTTL: ttl, swept: func() { signal(sweptB) },
		leaseTried: func(err error) {
			if errors.Is(err, eventlog.ErrLeaseHeld) {
				signal(refusedB)
			}
		}}
	run := func(r *Reconciler, opt RunOptions) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Run(rctx, leases, opt)
		}()
		return func() { cancel(); <-done }
	}
	await := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not within 10 s (%d Open API calls)", what, f.api.calls.Load())
		}
	}
	stopA := run(nodeA, optA)
	await(sweptA, "node A's first sweep")
	if n := f.api.calls.Load(); n != 10 { // full: no full sweep on record
		t.Fatalf("%d calls in the first sweep, want 10", n)
	}
	stopB := run(nodeB, optB)
	// B is refused on five attempts a third of the ttl apart: more than a ttl in which
	// A, renewing, keeps the lease, and B must not sweep.
	for i := range 5 {
		await(refusedB, fmt.Sprintf("node B's refusal %d", i+1))
	}
	if n := f.api.calls.Load(); n != 10 {
		t.Fatalf("%d calls with two nodes running: both swept", n)
	}
	f.catchUp()
	stopA()
	// B takes over and sweeps at once: stale only now, and the diverged are fixed.
	await(sweptB, "node B's sweep after the takeover")
	stopB()
	if n := f.api.calls.Load(); n != 14 {
		t.Fatalf("%d calls, want 10 + 4", n)
	}
	for id, n := range f.reconciledEvents(append(diverged, inSync...)) {
		if n != 1 {
			t.Errorf("applicant %s: %d reconciled events", id, n)
		}
	}
	if len(f.reconciledEvents(inSync)) != 0 {
		t.Error("an applicant in sync got an event")
	}
}
