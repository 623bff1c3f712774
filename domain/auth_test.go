package domain_test

import (
	"slices"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

func withAuth(a domain.Auth) func(*domain.Event) { return func(e *domain.Event) { e.Auth = a } }

// An event whose MAC failed (DESIGN.md section 15) is unauthenticated before every
// other rule: recorded with from = to = the current status, counted in Events, LastSeq
// and the digest, and nothing else changes: no status, no externalUserId, no erasure,
// no fingerprint (so the genuine event like it still applies), no anomaly.
func TestUnauthenticated(t *testing.T) {
	failed := withAuth(domain.AuthFailed)
	f := domain.NewFolder()
	var s domain.State
	s, _ = f.Apply(s, ev(t, 1, "applicantCreated", at(0), withExt("user-1"), withAuth(domain.AuthSigned)))
	s, _ = f.Apply(s, ev(t, 2, "applicantInProgress", at(10), withAuth(domain.AuthUnsigned)))
	before := s.Clone()

	forged := []domain.Event{
		ev(t, 3, "applicantApproved", at(20), withExt("user-evil"), failed),                                // a regular transition
		ev(t, 4, "applicantRejected", at(5), failed),                                                       // would be stale
		ev(t, 5, "applicantInProgress", at(10), failed),                                                    // would be a duplicate
		ev(t, 6, "applicantErased", at(30), withOrigin(domain.OriginOperator), failed),                     // would erase
		ev(t, 7, "applicantStepPassed", at(40), withStep("selfie"), withWarnings("w"), failed),             // would annotate
		ev(t, 8, "applicantInReview", at(50), withOrigin(domain.OriginOpenAPI), withExt("user-2"), failed), // would reconcile
	}
	digest := s.Digest
	for i, e := range forged {
		var rec domain.Record
		s, rec = f.Apply(s, e)
		digest = digest.Next(e.Stored)
		if rec.Outcome != domain.OutcomeUnauthenticated || rec.From != before.Status || rec.To != before.Status || rec.ExternalUserID != "" {
			t.Fatalf("forged event %d: outcome %q, %q -> %q", i, rec.Outcome, rec.From, rec.To)
		}
		if s.Events != before.Events+i+1 || s.LastSeq != e.Seq || s.Digest != digest {
			t.Fatalf("forged event %d: events %d, last seq %d, digest %s: the trail must advance", i, s.Events, s.LastSeq, s.Digest)
		}
	}
	after := s.Clone()
	after.Events, after.LastSeq, after.Digest = before.Events, before.LastSeq, before.Digest
	if after.Status != before.Status || after.StatusAt != before.StatusAt || after.ExternalUserID != before.ExternalUserID ||
		after.Erased || after.Anomalies != 0 || !slices.Equal(after.Seen, before.Seen) || len(after.StepsPassed) != 0 ||
		len(after.Warnings) != 0 || len(after.Flags) != 0 || !after.ReconciledAt.IsZero() || !after.LastEventAt.Equal(before.LastEventAt) {
		t.Fatalf("forged events changed the state:\n%+v\nwant\n%+v", after, before)
	}

	// The genuine approval, same type and time as the forged one, still applies.
	s, rec := f.Apply(s, ev(t, 9, "applicantApproved", at(20), withAuth(domain.AuthSigned)))
	if rec.Outcome != domain.OutcomeApplied || s.Status != domain.StatusApproved {
		t.Fatalf("genuine event after a forged twin: %q, %s", rec.Outcome, s.Status)
	}

	// Refolding the history gives the same state: the record says unauthenticated.
	var recs []domain.Record
	var r domain.State
	for _, e := range []domain.Event{ev(t, 1, "applicantCreated", at(0)), forged[0], ev(t, 9, "applicantApproved", at(20))} {
		var rec domain.Record
		r, rec = f.Apply(r, e)
		recs = append(recs, rec)
	}
	if got := f.Refold(recs); got.Status != r.Status || got.Events != r.Events || got.Digest != r.Digest || recs[1].Outcome != domain.OutcomeUnauthenticated {
		t.Fatalf("refold: %+v, want %+v", got, r)
	}
	if !domain.OutcomeUnauthenticated.Valid() || domain.Outcomes()[0] != domain.OutcomeUnauthenticated {
		t.Fatal("unauthenticated is not the first outcome the fold checks")
	}
}
