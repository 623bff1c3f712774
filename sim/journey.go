package sim

import (
	"math/rand/v2"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// event is one webhook Allpass would send about an applicant, before it is encrypted.
type event struct {
	Type     domain.EventType
	StepName string
	Warnings []string
	At       time.Time // the payload's updatedAt: strictly increasing within a journey
}

// stepKind says what one send of a journey does.
type stepKind int

const (
	// stepDeliver sends an event for the first time (a genuine delivery).
	stepDeliver stepKind = iota
	// stepResend sends a delivery's exact body and signature again, as Allpass does when
	// it did not see the first answer; the stream's duplicate window must recognise it.
	stepResend
	// stepForge sends a copy of an event with a wrong signature: the service must refuse
	// it with 401 and store nothing.
	stepForge
)

// step is one send in a journey's plan.
type step struct {
	kind stepKind
	ev   int  // the event delivered or forged
	of   int  // stepResend: the index of the stepDeliver whose body is sent again
	late bool // stepDeliver: the event is delivered after a newer status event
	// giveUp (stepDeliver): never sent, as if Allpass's ten attempts had all failed.
	giveUp bool
	// wrongKey (stepForge): sealed with a key the service does not have, rather than
	// carrying a damaged signature.
	wrongKey bool
}

// journey is one applicant's life and the order its webhooks are sent in. Plans are made
// before anything is sent, from the seed alone, so a seed reproduces the same shapes.
type journey struct {
	id        domain.ApplicantID
	ext       domain.ExternalUserID
	createdAt time.Time
	events    []event
	steps     []step
}

// steps an applicant may pass; a journey passes a few of them in order.
var stepNames = [...]string{"document", "selfie", "liveness", "proofOfAddress", "questionnaire"}

// unknownTypes are event names outside the catalogue: the service must store them and
// change nothing.
var unknownTypes = [...]domain.EventType{"applicantLevelChanged", "applicantPersonalInfoChanged", "applicantReset"}

// shares are the chances of the irregularities a plan mixes in.
type shares struct{ resend, late, badSig float64 }

// newEvents draws an applicant's events: created, in progress, some steps passed,
// completed, in review, a decision; some go through on hold, some restart after the
// decision, a few carry annotations or event names Allpass may add later. Times start
// at start and move forward by seconds to minutes.
func newEvents(rng *rand.Rand, start time.Time) []event {
	t := start
	var evs []event
	add := func(typ domain.EventType, stepName string, warnings ...string) {
		if len(evs) > 0 {
			// Whole milliseconds, as Allpass writes them, so the time survives the trip.
			t = t.Add(time.Duration(1+rng.IntN(600_000)) * time.Millisecond)
		}
		if warnings == nil {
			warnings = []string{}
		}
		evs = append(evs, event{Type: typ, StepName: stepName, Warnings: warnings, At: t})
	}
	maybe := func(p float64) bool { return rng.Float64() < p }
	passSteps := func(n int) {
		first := rng.IntN(len(stepNames))
		for i := range n {
			add(domain.EventStepPassed, stepNames[(first+i)%len(stepNames)])
		}
	}
	annotate := func() {
		switch {
		case maybe(0.06):
			add(domain.EventDuplicateEmail, "")
		case maybe(0.05):
			add(domain.EventExpiredDocument, "", "documentExpired")
		case maybe(0.03):
			add(unknownTypes[rng.IntN(len(unknownTypes))], "")
		}
	}
	decide := func() {
		add(domain.EventCompleted, "")
		if maybe(0.15) {
			add(domain.EventOnHold, "")
		}
		add(domain.EventInReview, "")
		if maybe(0.1) {
			add(domain.EventOnHold, "")
		}
		if maybe(0.7) {
			add(domain.EventApproved, "")
		} else {
			add(domain.EventRejected, "")
		}
	}

	add(domain.EventCreated, "")
	add(domain.EventInProgress, "")
	passSteps(2 + rng.IntN(3))
	annotate()
	decide()
	for maybe(0.12) && len(evs) < 40 {
		// A restart: the applicant is sent back (new document, re-review).
		add(domain.EventInProgress, "")
		passSteps(1 + rng.IntN(2))
		annotate()
		decide()
	}
	return evs
}

// newSteps orders the sends of evs: each event once, in time order except for late ones,
// which wait until the next status event has been delivered; some deliveries are sent
// again (right away or after the next one) and some are preceded by a forged copy.
func newSteps(rng *rand.Rand, evs []event, sh shares) []step {
	isStatus := func(i int) bool { return evs[i].Type.Class() == domain.ClassStatus }
	nextStatus := func(i int) int {
		for j := i + 1; j < len(evs); j++ {
			if isStatus(j) {
				return j
			}
		}
		return -1
	}
	// Only a status event followed by another one can arrive late (and be stale); scale
	// the chance so that about sh.late of all deliveries are late.
	eligible := 0
	for i := 1; i < len(evs); i++ {
		if isStatus(i) && nextStatus(i) >= 0 {
			eligible++
		}
	}
	pLate := 0.0
	if eligible > 0 {
		pLate = min(1, sh.late*float64(len(evs))/float64(eligible))
	}

	held := map[int][]int{} // event index -> events to deliver right after it
	var order []int
	var lateSet = map[int]bool{}
	var emit func(i int)
	emit = func(i int) {
		order = append(order, i)
		for _, h := range held[i] {
			emit(h)
		}
	}
	for i := range evs {
		if i > 0 && isStatus(i) && rng.Float64() < pLate {
			if j := nextStatus(i); j >= 0 {
				held[j] = append(held[j], i)
				lateSet[i] = true
				continue
			}
		}
		emit(i)
	}

	var steps []step
	pendingResend := -1 // a delivery to send again after the next delivery
	for _, i := range order {
		if rng.Float64() < sh.badSig {
			steps = append(steps, step{kind: stepForge, ev: i, wrongKey: rng.IntN(2) == 0})
		}
		steps = append(steps, step{kind: stepDeliver, ev: i, late: lateSet[i]})
		d := len(steps) - 1
		if pendingResend >= 0 {
			steps = append(steps, step{kind: stepResend, ev: steps[pendingResend].ev, of: pendingResend})
			pendingResend = -1
		}
		if rng.Float64() < sh.resend {
			if rng.IntN(2) == 0 {
				steps = append(steps, step{kind: stepResend, ev: i, of: d})
			} else {
				pendingResend = d
			}
		}
	}
	if pendingResend >= 0 {
		steps = append(steps, step{kind: stepResend, ev: steps[pendingResend].ev, of: pendingResend})
	}
	return steps
}
