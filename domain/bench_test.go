package domain_test

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// foldRealistic folds n events of log (cycling, starting afresh at each pass) with apply,
// keeping states per applicant as the projector does.
func foldRealistic(log []domain.Event, n int, apply func(domain.State, domain.Event) domain.State) {
	states := make(map[domain.ApplicantID]domain.State, 512)
	for i := range n {
		k := i % len(log)
		if k == 0 {
			clear(states)
		}
		e := log[k]
		states[e.ApplicantID] = apply(states[e.ApplicantID], e)
	}
}

func timeIt(n int, fn func(n int)) time.Duration {
	start := time.Now()
	fn(n)
	return time.Since(start)
}

// baselineEvents is how many events the in-run baselines time: enough to be stable,
// independent of b.N so a short -benchtime does not make them noisy.
const baselineEvents = 20000

// BenchmarkApply measures the fold with one reused Folder over a realistic log of 500
// interleaved applicants, in events/s. Beside it, measured in the same run: a bare
// SHA-256 over each event's stored bytes (the floor: the digest chain alone) and the
// package-level Apply, which builds a new FSM per event.
func BenchmarkApply(b *testing.B) {
	log := realisticLog(b, rand.New(rand.NewPCG(42, 42)), 500)
	f := domain.NewFolder()
	apply := func(s domain.State, e domain.Event) domain.State { s, _ = f.Apply(s, e); return s }
	foldRealistic(log, len(log), apply) // warm up

	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	states := make(map[domain.ApplicantID]domain.State, 512)
	for b.Loop() {
		k := n % len(log)
		if k == 0 {
			clear(states)
		}
		e := log[k]
		states[e.ApplicantID], _ = f.Apply(states[e.ApplicantID], e)
		n++
	}
	perEvent := float64(b.Elapsed()) / float64(n)
	b.StopTimer()

	var sink [32]byte
	sha := timeIt(baselineEvents, func(n int) {
		for i := range n {
			sink = sha256.Sum256(log[i%len(log)].Stored)
		}
	})
	_ = sink
	fresh := timeIt(baselineEvents, func(n int) {
		foldRealistic(log, n, func(s domain.State, e domain.Event) domain.State { s, _ = domain.Apply(s, e); return s })
	})
	shaPerEvent := float64(sha) / baselineEvents
	freshPerEvent := float64(fresh) / baselineEvents

	b.ReportMetric(1e9/perEvent, "events/s")
	b.ReportMetric(1e9/shaPerEvent, "sha256-events/s")
	b.ReportMetric(perEvent/shaPerEvent, "x-sha256-cost")
	b.ReportMetric(freshPerEvent/perEvent, "x-speedup-vs-new-fsm")
}

// BenchmarkFold is BenchmarkApply with Fold, in place, as the projection's writer folds:
// beside it, Apply over the same events in the same run, as a ratio.
func BenchmarkFold(b *testing.B) {
	log := realisticLog(b, rand.New(rand.NewPCG(42, 42)), 500)
	f := domain.NewFolder()
	b.ReportAllocs()
	n := 0
	states := make(map[domain.ApplicantID]*domain.State, 512)
	for b.Loop() {
		k := n % len(log)
		if k == 0 {
			clear(states)
		}
		e := &log[k]
		s := states[e.ApplicantID]
		if s == nil {
			s = new(domain.State)
			states[e.ApplicantID] = s
		}
		f.Fold(s, e)
		n++
	}
	perEvent := float64(b.Elapsed()) / float64(n)
	b.StopTimer()
	applied := timeIt(baselineEvents, func(n int) {
		foldRealistic(log, n, func(s domain.State, e domain.Event) domain.State { s, _ = f.Apply(s, e); return s })
	})
	b.ReportMetric(1e9/perEvent, "events/s")
	b.ReportMetric(float64(applied)/baselineEvents/perEvent, "x-speedup-vs-apply")
}

// BenchmarkApplyNewFSMPerEvent is the package-level Apply on the same log, for the
// ns/op and allocation figures of building a machine per event.
func BenchmarkApplyNewFSMPerEvent(b *testing.B) {
	log := realisticLog(b, rand.New(rand.NewPCG(42, 42)), 500)
	b.ReportAllocs()
	n := 0
	states := make(map[domain.ApplicantID]domain.State, 512)
	for b.Loop() {
		k := n % len(log)
		if k == 0 {
			clear(states)
		}
		e := log[k]
		states[e.ApplicantID], _ = domain.Apply(states[e.ApplicantID], e)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
