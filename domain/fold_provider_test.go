package domain_test

import (
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// as makes an event one of provider p's, of app "app1", with its own status.
func as(p domain.Provider, id, providerStatus string) func(*domain.Event) {
	return func(e *domain.Event) {
		e.Provider, e.AppKey, e.ApplicantID, e.ProviderStatus = string(p), "app1", domain.ApplicantID(id), providerStatus
	}
}

// Other providers' events fold through their own tables (DESIGN.md section 13): the
// common status from the provider's classification, regular transitions from its
// journey, rules 1-8 unchanged, and the provider's own status kept on state and record.
func TestFoldProviders(t *testing.T) {
	t.Run("sumsub journey", func(t *testing.T) {
		ss := func(id string, st string) func(*domain.Event) { return as(domain.ProviderSumsub, id, st) }
		s := runSteps(t, []step{
			{ev(t, 1, "applicantCreated", at(0), ss("abc", "init")), "applied", "INIT"},
			{ev(t, 2, "applicantPending", at(10), ss("abc", "pending")), "applied", "IN_PROGRESS"},
			{ev(t, 3, "applicantReviewed", at(5), ss("abc", "GREEN")), "stale", "IN_PROGRESS"},
			{ev(t, 4, "applicantReviewed", at(20), ss("abc", "RED+RETRY")), "applied", "INCOMPLETE"},
			// Same type and time as the event before, another review answer: not a duplicate.
			{ev(t, 5, "applicantReviewed", at(20), ss("abc", "GREEN")), "irregular", "APPROVED"},
			{ev(t, 6, "applicantReviewed", at(20), ss("abc", "GREEN")), "duplicate", "APPROVED"},
			{ev(t, 7, "applicantPrechecked", at(30), ss("abc", "")), "annotated", "APPROVED"},
			{ev(t, 8, "somethingNew", at(40), ss("abc", "")), "unknown", "APPROVED"},
			{ev(t, 9, "applicantReviewed", at(50), ss("abc", "AMBER")), "unknown", "APPROVED"},
		})
		if s.Provider != domain.ProviderSumsub || s.ProviderStatus != "GREEN" || s.Anomalies != 1 ||
			len(s.Flags) != 1 || s.Flags[0] != "applicantPrechecked" {
			t.Fatalf("state %+v", s)
		}
		if got := s.Key(); got != "sumsub.app1.abc" {
			t.Fatalf("key %q", got)
		}
	})
	t.Run("veriff first event is regular", func(t *testing.T) {
		vf := func(st string) func(*domain.Event) { return as(domain.ProviderVeriff, "9f0c", st) }
		runSteps(t, []step{
			{ev(t, 1, "submitted", at(0), vf("submitted")), "applied", "IN_PROGRESS"},
			{ev(t, 2, "decision", at(10), vf("approved")), "applied", "APPROVED"},
		})
		runSteps(t, []step{{ev(t, 1, "decision", at(0), vf("declined")), "applied", "REJECTED"}})
	})
	t.Run("persona first event not created is irregular", func(t *testing.T) {
		pa := func(st string) func(*domain.Event) { return as(domain.ProviderPersona, "inq_1", st) }
		s := runSteps(t, []step{
			{ev(t, 1, "inquiry.approved", at(0), pa("approved")), "irregular", "APPROVED"},
			{ev(t, 2, "inquiry.created", at(-10), pa("created")), "stale", "APPROVED"},
		})
		if s.Anomalies != 1 {
			t.Fatalf("anomalies %d", s.Anomalies)
		}
	})
	t.Run("onfido", func(t *testing.T) {
		on := func(st string) func(*domain.Event) { return as(domain.ProviderOnfido, "run-1", st) }
		runSteps(t, []step{
			{ev(t, 1, "workflow_run.completed", at(0), on("processing")), "applied", "IN_PROGRESS"},
			{ev(t, 2, "workflow_task.completed", at(5), on("")), "annotated", "IN_PROGRESS"},
			{ev(t, 3, "workflow_run.completed", at(10), on("approved")), "applied", "APPROVED"},
		})
	})
	t.Run("an Allpass type from another provider is that provider's", func(t *testing.T) {
		// applicantApproved is Allpass's status event; Persona has no event of that name.
		runSteps(t, []step{
			{ev(t, 1, "applicantApproved", at(0), as(domain.ProviderPersona, "inq_2", "")), "unknown", ""},
		})
	})
	t.Run("an operator erases any provider's applicant", func(t *testing.T) {
		f := domain.NewFolder()
		var s domain.State
		s, _ = f.Apply(s, ev(t, 1, "applicantCreated", at(0), as(domain.ProviderSumsub, "abc", "init"), withExt("u1")))
		s, rec := f.Apply(s, ev(t, 2, domain.EventErased, at(1), as(domain.ProviderSumsub, "abc", ""), withOrigin(domain.OriginOperator)))
		if rec.Outcome != domain.OutcomeErased || !s.Erased || s.ExternalUserID != "" || s.Status != domain.StatusInit {
			t.Fatalf("erasure: %q %+v", rec.Outcome, s)
		}
		_, rec = f.Apply(s, ev(t, 3, domain.EventErased, at(2), as(domain.ProviderSumsub, "abc", "")))
		if rec.Outcome != domain.OutcomeUnknown {
			t.Fatalf("a webhook named applicantErased: %q", rec.Outcome)
		}
	})
}

// Refold gives back, from a provider's history records alone, the state Apply folded:
// the records keep provider and providerStatus, which the classification needs.
func TestRefoldProviders(t *testing.T) {
	f := domain.NewFolder()
	var s domain.State
	var recs []domain.Record
	for i, e := range []domain.Event{
		ev(t, 1, "applicantCreated", at(0), as(domain.ProviderSumsub, "abc", "init")),
		ev(t, 2, "applicantPending", at(10), as(domain.ProviderSumsub, "abc", "pending")),
		ev(t, 3, "applicantReviewed", at(20), as(domain.ProviderSumsub, "abc", "RED+FINAL")),
	} {
		var rec domain.Record
		s, rec = f.Apply(s, e)
		if rec.Provider != domain.ProviderSumsub || rec.ProviderStatus != e.ProviderStatus {
			t.Fatalf("record %d: provider %q, providerStatus %q", i, rec.Provider, rec.ProviderStatus)
		}
		recs = append(recs, rec)
	}
	got := domain.NewFolder().Refold(recs)
	if got.Status != domain.StatusRejected || got.ProviderStatus != "RED+FINAL" || got.Provider != domain.ProviderSumsub ||
		got.Digest != s.Digest || got.Anomalies != s.Anomalies {
		t.Fatalf("refolded %+v, folded %+v", got, s)
	}
}

// An Allpass event hashes for the duplicate rule and folds as it did before providers:
// its record says allpass, its state has no provider status, and an event stored without
// a provider (never written by kycstate) is Allpass's.
func TestFoldAllpassProvider(t *testing.T) {
	s := runSteps(t, []step{
		{ev(t, 1, "applicantCreated", at(0), func(e *domain.Event) { e.Provider = "" }), "applied", "INIT"},
		{ev(t, 2, "applicantInProgress", at(10)), "applied", "IN_PROGRESS"},
	})
	if s.Provider != domain.ProviderAllpass || s.ProviderStatus != "" || s.Key() != domain.ApplicantKey(testApplicant) {
		t.Fatalf("state %+v", s)
	}
	if domain.KeyOf(domain.ProviderVeriff, "app1", testApplicant) == domain.ApplicantKey(testApplicant) {
		t.Fatal("a Veriff session with an Allpass applicant's UUID shares its key")
	}
}
