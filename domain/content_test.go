package domain_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func withCID(c domain.ContentID) func(*domain.Event) {
	return func(e *domain.Event) { e.ContentID = c }
}

// cid is a content id as ingest makes them, distinct for each n.
func cid(n int) domain.ContentID {
	return domain.NewContentID("allpass", string(testApp), []byte(fmt.Sprintf("data-%d", n)))
}

// replayed is e as a captured webhook resent with another envelope time: the same
// authenticated bytes (content id), its time taken from the unauthenticated envelope.
func replayed(tb testing.TB, e domain.Event, seq uint64, eventAt time.Time) domain.Event {
	return ev(tb, seq, e.Type, eventAt, withCID(e.ContentID), withStep(e.StepName),
		func(r *domain.Event) { r.EventAtSource = domain.SourceEnvelopeTime })
}

// TestContentIDDuplicate: an event whose content id the applicant has seen is a duplicate
// whatever its time (DESIGN.md section 15), the replay of issue 21 included.
func TestContentIDDuplicate(t *testing.T) {
	approved := ev(t, 4, "applicantApproved", at(30), withCID(cid(4)))
	steps := []step{
		{ev(t, 1, "applicantCreated", at(0), withCID(cid(1))), "applied", "INIT"},
		{ev(t, 2, "applicantInProgress", at(10), withCID(cid(2))), "applied", "IN_PROGRESS"},
		{ev(t, 3, "applicantCompleted", at(20), withCID(cid(3))), "applied", "COMPLETED"},
		{approved, "applied", "APPROVED"},
		{ev(t, 5, "applicantRejected", at(40), withCID(cid(5))), "applied", "REJECTED"},
		// The captured approval, resent seconds later with today's envelope time.
		{replayed(t, approved, 6, at(50)), "duplicate", "REJECTED"},
		// A year later.
		{replayed(t, approved, 7, at(50).AddDate(1, 0, 0)), "duplicate", "REJECTED"},
		// A stale event marks its content id: resent with a newer time, it stays a duplicate.
		{ev(t, 8, "applicantApproved", at(35), withCID(cid(8))), "stale", "REJECTED"},
		{replayed(t, ev(t, 0, "applicantApproved", at(35), withCID(cid(8))), 9, at(60)), "duplicate", "REJECTED"},
		// Events stored before content ids fold as before: a later time is a new event.
		{ev(t, 10, "applicantApproved", at(70)), "applied", "APPROVED"},
		{ev(t, 11, "applicantRejected", at(80)), "applied", "REJECTED"},
		{ev(t, 12, "applicantApproved", at(90)), "applied", "APPROVED"},
		// A fingerprint duplicate marks its content id as well.
		{ev(t, 13, "applicantApproved", at(90), withCID(cid(13))), "duplicate", "APPROVED"},
		{replayed(t, ev(t, 0, "applicantApproved", at(90), withCID(cid(13))), 14, at(95)), "duplicate", "APPROVED"},
	}
	s := runSteps(t, steps)
	if s.Anomalies != 0 {
		t.Errorf("anomalies %d", s.Anomalies)
	}
	if got := len(s.SeenContent); got != 7 {
		t.Errorf("%d content ids kept, want 7: %v", got, s.SeenContent)
	}

	// Another applicant's event with the same content id is not this one's duplicate.
	other := ev(t, 15, "applicantCreated", at(0), withCID(cid(1)), withApplicant("0b6c8f2e-1c1d-4f55-9d0e-3a0c2f2d9f11"))
	if _, rec := domain.Apply(domain.State{}, other); rec.Outcome != domain.OutcomeApplied {
		t.Errorf("first event of another applicant: %q", rec.Outcome)
	}
}

// A replay's time is the resender's: it does not advance LastEventAt, which retention
// counts from, so a captured webhook resent with today's time cannot hold off erasure.
func TestContentIDReplayKeepsLastEventAt(t *testing.T) {
	f := domain.NewFolder()
	var s domain.State
	approved := ev(t, 2, "applicantApproved", at(10), withCID(cid(2)))
	s, _ = f.Apply(s, ev(t, 1, "applicantCreated", at(0), withCID(cid(1))))
	s, _ = f.Apply(s, approved)
	s, rec := f.Apply(s, replayed(t, approved, 3, at(10).AddDate(0, 6, 0)))
	if rec.Outcome != domain.OutcomeDuplicate || !s.LastEventAt.Equal(at(10)) {
		t.Fatalf("replay: %q, lastEventAt %v, want duplicate and %v", rec.Outcome, s.LastEventAt, at(10))
	}
	// A new event does advance it.
	if s, _ = f.Apply(s, ev(t, 4, "applicantStepPassed", at(20), withStep("selfie"), withCID(cid(4)))); !s.LastEventAt.Equal(at(20)) {
		t.Fatalf("new event: lastEventAt %v, want %v", s.LastEventAt, at(20))
	}
}

// An unauthenticated event marks no content id: the genuine event with it still applies.
func TestContentIDUnauthenticatedMarksNothing(t *testing.T) {
	f := domain.NewFolder()
	var s domain.State
	s, _ = f.Apply(s, ev(t, 1, "applicantCreated", at(0), withCID(cid(1))))
	s, _ = f.Apply(s, ev(t, 2, "applicantInProgress", at(10), withCID(cid(2))))
	s, rec := f.Apply(s, ev(t, 3, "applicantApproved", at(20), withCID(cid(3)), withAuth(domain.AuthFailed)))
	if rec.Outcome != domain.OutcomeUnauthenticated || len(s.SeenContent) != 2 {
		t.Fatalf("forged event: %q, %d content ids", rec.Outcome, len(s.SeenContent))
	}
	s, rec = f.Apply(s, ev(t, 4, "applicantApproved", at(25), withCID(cid(3)), withAuth(domain.AuthSigned)))
	if rec.Outcome != domain.OutcomeApplied || s.Status != domain.StatusApproved {
		t.Fatalf("genuine event after a forged one with its content id: %q, %s", rec.Outcome, s.Status)
	}
}

// The record carries the content id and the time flag, and Refold gives the state back,
// content ids included.
func TestContentIDRefold(t *testing.T) {
	events := []domain.Event{
		ev(t, 1, "applicantCreated", at(0), withCID(cid(1))),
		ev(t, 2, "applicantInProgress", at(10), withCID(cid(2)), func(e *domain.Event) {
			e.EventAtSource, e.TimeFlag = domain.SourceReceived, domain.TimeFlagClockSkew
		}),
		ev(t, 3, "applicantInProgress", at(20), withCID(cid(2))),
		ev(t, 4, "applicantCompleted", at(30)),
	}
	s, recs := fold(events)
	if recs[1].ContentID != cid(2) || recs[1].TimeFlag != domain.TimeFlagClockSkew || recs[0].TimeFlag != "" {
		t.Fatalf("records carry cid %q flag %q", recs[1].ContentID, recs[1].TimeFlag)
	}
	if recs[2].Outcome != domain.OutcomeDuplicate {
		t.Fatalf("same content id: %q", recs[2].Outcome)
	}
	if got := domain.NewFolder().Refold(recs); !bytes.Equal(mustJSON(t, got), mustJSON(t, s)) {
		t.Fatalf("Refold\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, s))
	}
}
