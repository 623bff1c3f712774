package sim

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func planFor(seed uint64, i int, sh shares) ([]event, []step) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	evs := newEvents(rng, t0)
	return evs, newSteps(rng, evs, sh)
}

// TestPlansAreWellFormed checks the invariants every plan must keep, over many seeds:
// times strictly increase, journeys start with applicantCreated and end with a decision,
// each event is delivered exactly once, a late event comes after a newer status event,
// a resend follows the delivery it repeats, a forgery precedes its event's delivery.
func TestPlansAreWellFormed(t *testing.T) {
	sh := shares{resend: 0.2, late: 0.2, badSig: 0.2}
	for i := range 500 {
		evs, steps := planFor(7, i, sh)
		if evs[0].Type != domain.EventCreated {
			t.Fatalf("journey %d starts with %s", i, evs[0].Type)
		}
		if last := evs[len(evs)-1].Type; last != domain.EventApproved && last != domain.EventRejected {
			t.Fatalf("journey %d ends with %s, want a decision", i, last)
		}
		for k := 1; k < len(evs); k++ {
			if !evs[k].At.After(evs[k-1].At) {
				t.Fatalf("journey %d: event %d at %s not after %s", i, k, evs[k].At, evs[k-1].At)
			}
			if evs[k].At.Nanosecond()%int(time.Millisecond) != 0 {
				t.Fatalf("journey %d: time %s is not whole milliseconds", i, evs[k].At)
			}
		}
		delivered := map[int]int{} // event -> step index
		for si, st := range steps {
			switch st.kind {
			case stepDeliver:
				if _, dup := delivered[st.ev]; dup {
					t.Fatalf("journey %d: event %d delivered twice", i, st.ev)
				}
				delivered[st.ev] = si
				if st.late {
					newer := false
					for _, d := range steps[:si] {
						if d.kind == stepDeliver && d.ev > st.ev && evs[d.ev].Type.Class() == domain.ClassStatus {
							newer = true
						}
					}
					if !newer || evs[st.ev].Type.Class() != domain.ClassStatus {
						t.Fatalf("journey %d: late event %d is not a status event after a newer one", i, st.ev)
					}
				}
			case stepResend:
				if st.of >= si || steps[st.of].kind != stepDeliver || steps[st.of].ev != st.ev {
					t.Fatalf("journey %d: resend at %d does not follow its delivery", i, si)
				}
			case stepForge:
				if si+1 >= len(steps) || steps[si+1].kind != stepDeliver || steps[si+1].ev != st.ev {
					t.Fatalf("journey %d: forgery at %d not right before its delivery", i, si)
				}
			}
		}
		if len(delivered) != len(evs) {
			t.Fatalf("journey %d: %d of %d events delivered", i, len(delivered), len(evs))
		}
		if _, first := delivered[0]; !first || steps[delivered[0]].late {
			t.Fatalf("journey %d: applicantCreated missing or late", i)
		}
	}
}

// TestPlansFollowTheSeed: one seed gives the same plans; another gives other plans.
func TestPlansFollowTheSeed(t *testing.T) {
	sh := shares{resend: 0.1, late: 0.1, badSig: 0.1}
	differ := false
	for i := range 50 {
		e1, s1 := planFor(1, i, sh)
		e2, s2 := planFor(1, i, sh)
		if !reflect.DeepEqual(e1, e2) || !reflect.DeepEqual(s1, s2) {
			t.Fatalf("journey %d differs between two plans of seed 1", i)
		}
		e3, s3 := planFor(2, i, sh)
		if !reflect.DeepEqual(e1, e3) || !reflect.DeepEqual(s1, s3) {
			differ = true
		}
	}
	if !differ {
		t.Fatal("seeds 1 and 2 gave the same 50 plans")
	}
}

// TestSharesAndVariety: over many journeys the irregularities come near their shares,
// and every kind of journey the brief describes occurs.
func TestSharesAndVariety(t *testing.T) {
	sh := shares{resend: 0.05, late: 0.05, badSig: 0.02}
	var deliveries, resends, late, forged int
	seen := map[domain.EventType]int{}
	restarts := 0
	for i := range 3000 {
		evs, steps := planFor(99, i, sh)
		inProgress := 0
		for _, e := range evs {
			seen[e.Type]++
			if e.Type == domain.EventInProgress {
				inProgress++
			}
		}
		if inProgress > 1 {
			restarts++
		}
		for _, st := range steps {
			switch st.kind {
			case stepDeliver:
				deliveries++
				if st.late {
					late++
				}
			case stepResend:
				resends++
			case stepForge:
				forged++
			}
		}
	}
	near := func(name string, n int, want float64) {
		got := float64(n) / float64(deliveries)
		if got < want*0.8 || got > want*1.2 {
			t.Errorf("%s share %.4f, want about %.4f", name, got, want)
		}
	}
	near("resend", resends, sh.resend)
	near("late", late, sh.late)
	near("bad signature", forged, sh.badSig)
	for _, typ := range []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventStepPassed,
		domain.EventCompleted, domain.EventInReview, domain.EventOnHold, domain.EventApproved, domain.EventRejected,
		domain.EventDuplicateEmail, domain.EventExpiredDocument} {
		if seen[typ] == 0 {
			t.Errorf("no %s in 3000 journeys", typ)
		}
	}
	unknown := 0
	for typ, n := range seen {
		if typ.Class() == domain.ClassUnknown {
			unknown += n
		}
	}
	if unknown == 0 || restarts == 0 {
		t.Errorf("%d unknown events and %d restarts in 3000 journeys, want some of each", unknown, restarts)
	}
}

func TestLatency(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := newLatency(ds)
	want := Latency{P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("newLatency = %+v, want %+v", got, want)
	}
	if (newLatency(nil) != Latency{}) {
		t.Error("latency of nothing is not zero")
	}
}

func TestDamageKeepsEncoding(t *testing.T) {
	for _, sig := range []string{"00112233445566778899aabbccddeeff", "ABEiM0RVZneImaq7zN3u/w=="} {
		d := damage(sig)
		if d == sig || len(d) != len(sig) {
			t.Errorf("damage(%q) = %q", sig, d)
		}
	}
}

// TestPacerSpacesSends: with a rate, n sends from several goroutines take at least
// (n-1) intervals (a lower bound only: a slow machine can only take longer).
func TestPacerSpacesSends(t *testing.T) {
	p := &pacer{interval: 5 * time.Millisecond}
	start := time.Now()
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 5 {
				p.wait(t.Context())
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if took := time.Since(start); took < 19*p.interval {
		t.Errorf("20 paced sends took %s, want at least %s", took, 19*p.interval)
	}
	var none *pacer
	if err := none.wait(t.Context()); err != nil {
		t.Errorf("no pacer: %v", err)
	}
}
