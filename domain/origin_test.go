package domain_test

import (
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func withOrigin(o domain.Origin) func(*domain.Event) { return func(e *domain.Event) { e.Origin = o } }

// Rule 7: a status read from the Open API that changes the status is applied whatever the
// table says and is no anomaly; duplicate and stale still come first; an Open API status
// equal to the current one is a plain applied event.
func TestReconciled(t *testing.T) {
	openapi := withOrigin(domain.OriginOpenAPI)
	s := runSteps(t, []step{
		{ev(t, 1, "applicantCreated", at(0)), "applied", "INIT"},
		{ev(t, 2, "applicantApproved", at(50), openapi), "reconciled", "APPROVED"}, // INIT -> APPROVED is not in the table
		{ev(t, 3, "applicantApproved", at(50), openapi), "duplicate", "APPROVED"},
		{ev(t, 4, "applicantRejected", at(40), openapi), "stale", "APPROVED"},
		{ev(t, 5, "applicantApproved", at(60), openapi), "applied", "APPROVED"},
		{ev(t, 6, "applicantInReview", at(70)), "irregular", "IN_REVIEW"}, // a webhook still is checked against the table
	})
	if s.Anomalies != 1 {
		t.Errorf("anomalies = %d, want 1 (the webhook only)", s.Anomalies)
	}
	if !s.ReconciledAt.Equal(at(50)) {
		t.Errorf("reconciledAt = %v, want %v", s.ReconciledAt, at(50))
	}
	var rec domain.Record
	_, rec = domain.Apply(domain.State{}, ev(t, 1, "applicantCreated", at(0)))
	if rec.Origin != domain.OriginWebhook {
		t.Errorf("an event stored without an origin is recorded as %q, want webhook", rec.Origin)
	}
}

// Rule 8: an operator's erasure keeps the status and the trail and drops the
// externalUserId for good; a webhook calling itself applicantErased erases nothing.
func TestErased(t *testing.T) {
	ext := withExt("user-7")
	s := runSteps(t, []step{
		{ev(t, 1, "applicantCreated", at(0), ext), "applied", "INIT"},
		{ev(t, 2, "applicantErased", at(10), ext), "unknown", "INIT"},
	})
	if s.Erased || s.ExternalUserID != "user-7" {
		t.Fatalf("a webhook named applicantErased erased: %+v", s)
	}
	s = runSteps(t, []step{
		{ev(t, 1, "applicantCreated", at(0), ext), "applied", "INIT"},
		{ev(t, 2, "applicantInProgress", at(5), ext), "applied", "IN_PROGRESS"},
		{ev(t, 3, "applicantErased", at(10), withOrigin(domain.OriginOperator)), "erased", "IN_PROGRESS"},
		{ev(t, 4, "applicantApproved", at(20), ext), "applied", "APPROVED"},
		{ev(t, 5, "applicantErased", at(30), withOrigin(domain.OriginOperator)), "erased", "APPROVED"},
	})
	if !s.Erased || s.ExternalUserID != "" || s.Events != 5 || s.StatusAt != at(20) {
		t.Fatalf("after erasure: erased %v, externalUserId %q, events %d, statusAt %v", s.Erased, s.ExternalUserID, s.Events, s.StatusAt.Format(time.TimeOnly))
	}
	for _, o := range domain.Outcomes() {
		if !o.Valid() {
			t.Errorf("%q not valid", o)
		}
	}
	if domain.Outcome("nope").Valid() {
		t.Error(`"nope" is valid`)
	}
}

// A version 2 event carries the externalUserId sealed with its blind index: the state
// keeps whichever form came last, never both, and an erasure drops both for good.
func TestSealedExternalUserID(t *testing.T) {
	sealed := func(s domain.SealedExternalUserID, idx domain.ExternalUserIndex) func(*domain.Event) {
		return func(e *domain.Event) { e.SealedExternalUserID, e.ExternalUserIndex = s, idx }
	}
	f := domain.NewFolder()
	var s domain.State
	s, rec := f.Apply(s, ev(t, 1, "applicantCreated", at(0), withExt("user-1")))
	if s.ExternalUserID != "user-1" || s.SealedExternalUserID != "" {
		t.Fatalf("clear event: %+v", s)
	}
	s, rec = f.Apply(s, ev(t, 2, "applicantInProgress", at(1), sealed("ct-1", "ix-1")))
	if s.ExternalUserID != "" || s.SealedExternalUserID != "ct-1" || s.ExternalUserIndex != "ix-1" {
		t.Fatalf("sealed event after a clear one: %+v", s)
	}
	if rec.SealedExternalUserID != "ct-1" || rec.ExternalUserIndex != "ix-1" {
		t.Fatalf("record does not carry the sealed id: %+v", rec)
	}
	s, _ = f.Apply(s, ev(t, 3, "applicantStepPassed", at(2), withStep("selfie")))
	if s.SealedExternalUserID != "ct-1" {
		t.Fatalf("an event without an id dropped it: %+v", s)
	}
	s, _ = f.Apply(s, ev(t, 4, "somethingNew", at(3), sealed("ct-2", "ix-2")))
	if s.SealedExternalUserID != "ct-1" {
		t.Fatalf("an unknown event changed the id: %+v", s)
	}
	s, _ = f.Apply(s, ev(t, 5, "applicantErased", at(4), withOrigin(domain.OriginOperator)))
	s, _ = f.Apply(s, ev(t, 6, "applicantApproved", at(5), sealed("ct-3", "ix-3")))
	if s.SealedExternalUserID != "" || s.ExternalUserIndex != "" || s.ExternalUserID != "" || !s.Erased {
		t.Fatalf("after erasure: %+v", s)
	}
	// Refold from the records gives the same state: the records carry the sealed form.
	var evs []domain.Event
	for i, o := range []func(*domain.Event){withExt("user-1"), sealed("ct-1", "ix-1")} {
		evs = append(evs, ev(t, uint64(i+1), "applicantCreated", at(i), o))
	}
	want, recs := fold(evs)
	got := f.Refold(recs)
	if got.SealedExternalUserID != want.SealedExternalUserID || got.ExternalUserIndex != want.ExternalUserIndex {
		t.Fatalf("refold: %+v, want %+v", got, want)
	}
}

// Every status has exactly the event that leads to it, and that event's target is it.
func TestStatusEvent(t *testing.T) {
	for _, s := range domain.Statuses() {
		e, ok := s.Event()
		if !ok {
			t.Fatalf("%s has no event", s)
		}
		if to, _ := e.Target(); to != s {
			t.Errorf("%s -> %s -> %s", s, e, to)
		}
	}
	if _, ok := domain.StatusNone.Event(); ok {
		t.Error("no status has an event")
	}
	if _, ok := domain.Status("approved").Event(); ok {
		t.Error("a lower-case status is not a status")
	}
}
