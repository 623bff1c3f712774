package domain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// step is one event of a scenario and what the fold must decide about it.
type step struct {
	e       domain.Event
	outcome domain.Outcome
	status  domain.Status
}

// runSteps folds the scenario's events in order, checking each outcome and status, and
// returns the final state.
func runSteps(t *testing.T, steps []step) domain.State {
	t.Helper()
	f := domain.NewFolder()
	var s domain.State
	for i, st := range steps {
		var rec domain.Record
		s, rec = f.Apply(s, st.e)
		if rec.Outcome != st.outcome || s.Status != st.status {
			t.Fatalf("step %d (%s at %s): outcome %q, status %q; want %q, %q",
				i, st.e.Type, st.e.EventAt.Format(time.TimeOnly), rec.Outcome, s.Status, st.outcome, st.status)
		}
	}
	return s
}

// TestStaleAndDuplicate covers eventAt equal to, earlier than and later than the event
// already applied, for status and annotation events, and the order of the checks.
func TestStaleAndDuplicate(t *testing.T) {
	created := func(t *testing.T) domain.Event { return ev(t, 1, "applicantCreated", at(0)) }
	inProgress := func(t *testing.T) domain.Event { return ev(t, 2, "applicantInProgress", at(100)) }

	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		// wantStatusAt is the StatusAt after the scenario, in seconds after t0 (unused
		// while there is no status).
		wantStatusAt int
	}{
		{"status event earlier is stale", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantApproved", at(99)), "stale", "IN_PROGRESS"},
			}
		}, 100},
		{"status event at the same instant is applied", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantApproved", at(100)), "applied", "APPROVED"},
			}
		}, 100},
		{"status event later is applied", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantApproved", at(101)), "applied", "APPROVED"},
			}
		}, 101},
		{"stale is measured against the latest applied status event, not the latest event", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantStepPassed", at(500), withStep("selfie")), "annotated", "IN_PROGRESS"},
				{ev(t, 4, "applicantCompleted", at(200)), "applied", "COMPLETED"},
			}
		}, 200},
		{"stale irregular event changes nothing and counts no anomaly", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantCreated", at(50)), "stale", "IN_PROGRESS"},
			}
		}, 100},
		{"first status event is never stale", func(t *testing.T) []step {
			return []step{
				{ev(t, 1, "applicantStepPassed", at(1000), withStep("document")), "annotated", ""},
				{ev(t, 2, "applicantCreated", at(0)), "applied", "INIT"},
			}
		}, 0},
		{"re-delivery at the same instant is a duplicate", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantInProgress", at(100)), "duplicate", "IN_PROGRESS"},
			}
		}, 100},
		{"same type later is applied to the status it has", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantInProgress", at(160)), "applied", "IN_PROGRESS"},
			}
		}, 160},
		{"same type earlier is stale, not duplicate", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantInProgress", at(40)), "stale", "IN_PROGRESS"},
			}
		}, 100},
		{"duplicate is checked before stale", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantApproved", at(200)), "applied", "APPROVED"},
				{ev(t, 4, "applicantInProgress", at(100)), "duplicate", "APPROVED"},
			}
		}, 200},
		{"duplicate ignores warnings and externalUserId of the re-delivery", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{ev(t, 2, "applicantCreated", at(0), withWarnings("new"), withExt("other")), "duplicate", "INIT"},
			}
		}, 0},
		{"the same instant in another zone is the same eventAt", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{ev(t, 2, "applicantCreated", at(0).In(time.FixedZone("CET", 3600))), "duplicate", "INIT"},
			}
		}, 0},
		{"a stale event does not become a duplicate target", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "applicantOnHold", at(50)), "stale", "IN_PROGRESS"},
				{ev(t, 4, "applicantOnHold", at(50)), "stale", "IN_PROGRESS"},
			}
		}, 100},
		{"an irregular event is applied and its re-delivery is a duplicate", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{ev(t, 2, "applicantApproved", at(10)), "irregular", "APPROVED"},
				{ev(t, 3, "applicantApproved", at(10)), "duplicate", "APPROVED"},
			}
		}, 10},
		{"annotation at the same instant is a duplicate", func(t *testing.T) []step {
			return []step{
				{ev(t, 1, "applicantStepPassed", at(10), withStep("selfie")), "annotated", ""},
				{ev(t, 2, "applicantStepPassed", at(10), withStep("selfie")), "duplicate", ""},
			}
		}, 0},
		{"annotation with another step at the same instant is not a duplicate", func(t *testing.T) []step {
			return []step{
				{ev(t, 1, "applicantStepPassed", at(10), withStep("selfie")), "annotated", ""},
				{ev(t, 2, "applicantStepPassed", at(10), withStep("document")), "annotated", ""},
			}
		}, 0},
		{"annotations are never stale", func(t *testing.T) []step {
			return []step{
				{created(t), "applied", "INIT"},
				{inProgress(t), "applied", "IN_PROGRESS"},
				{ev(t, 3, "expiredDocument", at(1)), "annotated", "IN_PROGRESS"},
				{ev(t, 4, "applicantStepPassed", at(200), withStep("poa")), "annotated", "IN_PROGRESS"},
			}
		}, 100},
		{"a re-delivered unknown event is a duplicate", func(t *testing.T) []step {
			return []step{
				{ev(t, 1, "applicantLevelChanged", at(10)), "unknown", ""},
				{ev(t, 2, "applicantLevelChanged", at(10)), "duplicate", ""},
				{ev(t, 3, "applicantLevelChanged", at(11)), "unknown", ""},
			}
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := tt.steps(t)
			s := runSteps(t, steps)
			switch {
			case s.Status == "" && !s.StatusAt.IsZero():
				t.Errorf("no status yet, but StatusAt %s", s.StatusAt)
			case s.Status != "" && !s.StatusAt.Equal(at(tt.wantStatusAt)):
				t.Errorf("StatusAt %s, want %s", s.StatusAt, at(tt.wantStatusAt))
			}
			irregular := 0
			for _, st := range steps {
				if st.outcome == "irregular" {
					irregular++
				}
			}
			if s.Anomalies != irregular {
				t.Errorf("anomalies %d, want %d", s.Anomalies, irregular)
			}
			if s.Events != len(steps) || s.LastSeq != steps[len(steps)-1].e.Seq {
				t.Errorf("Events %d, LastSeq %d; want %d, %d", s.Events, s.LastSeq, len(steps), steps[len(steps)-1].e.Seq)
			}
		})
	}
}

// TestStaleAndDuplicateChangeNothing checks that a stale or duplicate event leaves every
// decided field alone while still being counted, chained and sequenced.
func TestStaleAndDuplicateChangeNothing(t *testing.T) {
	f := domain.NewFolder()
	var s domain.State
	for _, e := range []domain.Event{
		ev(t, 1, "applicantCreated", at(0), withExt("user-1")),
		ev(t, 2, "applicantInProgress", at(100), withWarnings("glare")),
		ev(t, 3, "applicantStepPassed", at(110), withStep("selfie")),
	} {
		s, _ = f.Apply(s, e)
	}
	for _, e := range []domain.Event{
		ev(t, 4, "applicantApproved", at(50), withExt("user-2"), withWarnings("late")),
		ev(t, 5, "applicantStepPassed", at(110), withStep("selfie"), withExt("user-3"), withWarnings("again")),
	} {
		before := decisionOf(s)
		next, rec := f.Apply(s, e)
		if got := decisionOf(next); !bytes.Equal(mustJSON(t, got), mustJSON(t, before)) {
			t.Errorf("%s (%s) changed the decision state:\n got %+v\nwant %+v", e.Type, rec.Outcome, got, before)
		}
		if next.Events != s.Events+1 || next.LastSeq != e.Seq || next.Digest == s.Digest {
			t.Errorf("%s (%s): Events %d, LastSeq %d, digest changed %v", e.Type, rec.Outcome,
				next.Events, next.LastSeq, next.Digest != s.Digest)
		}
		if !slices.Equal(rec.Warnings, e.Warnings) {
			t.Errorf("%s: the record must keep what arrived: warnings %q, want %q", e.Type, rec.Warnings, e.Warnings)
		}
		s = next
	}
	if !s.LastEventAt.Equal(at(110)) {
		t.Errorf("LastEventAt %s, want %s", s.LastEventAt, at(110))
	}
}

// TestAnnotations checks steps passed, flags and warnings: recorded once each, in the
// order first seen, from annotation and status events alike.
func TestAnnotations(t *testing.T) {
	events := []domain.Event{
		ev(t, 1, "applicantCreated", at(0), withWarnings("w-created")),
		ev(t, 2, "applicantStepPassed", at(10), withStep("document"), withWarnings("glare", "lowQuality")),
		ev(t, 3, "applicantStepPassed", at(20), withStep("selfie")),
		ev(t, 4, "applicantStepPassed", at(30), withStep("document"), withWarnings("lowQuality")),
		ev(t, 5, "applicantStepPassed", at(40)), // no stepName: annotated, no step recorded
		ev(t, 6, "expiredDocument", at(50), withWarnings("documentExpired", "glare")),
		ev(t, 7, "applicantDuplicateEmail", at(60)),
		ev(t, 8, "expiredDocument", at(70)),
		ev(t, 9, "applicantDuplicatePhone", at(80)),
		ev(t, 10, "additionalDocumentStepError", at(90), withStep("poa")),
		ev(t, 11, "applicantDuplicateDocument", at(95)),
		ev(t, 12, "applicantInProgress", at(100), withWarnings("w-status")),
		ev(t, 13, "applicantStepPassed", at(5), withStep("liveness")), // earlier, still annotated
	}
	s, recs := fold(events)
	for i, r := range recs {
		want := domain.OutcomeAnnotated
		if i == 0 || i == 11 {
			want = domain.OutcomeApplied
		}
		if r.Outcome != want {
			t.Errorf("event %d (%s): outcome %q, want %q", i, events[i].Type, r.Outcome, want)
		}
	}
	check := func(name string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("StepsPassed", s.StepsPassed, []string{"document", "selfie", "liveness"})
	check("Flags", s.Flags, []string{"expiredDocument", "applicantDuplicateEmail", "applicantDuplicatePhone",
		"additionalDocumentStepError", "applicantDuplicateDocument"})
	check("Warnings", s.Warnings, []string{"w-created", "glare", "lowQuality", "documentExpired", "w-status"})
	if s.Status != "IN_PROGRESS" || s.Anomalies != 0 {
		t.Errorf("status %q, anomalies %d; want IN_PROGRESS, 0", s.Status, s.Anomalies)
	}
	if !s.StatusAt.Equal(at(100)) || !s.LastEventAt.Equal(at(100)) {
		t.Errorf("StatusAt %s, LastEventAt %s; want both %s", s.StatusAt, s.LastEventAt, at(100))
	}

	// Empty lists are [] in JSON, never null: API clients iterate them.
	empty, _ := fold([]domain.Event{ev(t, 1, "applicantCreated", at(0))})
	b := mustJSON(t, empty)
	for _, field := range []string{`"stepsPassed":[]`, `"flags":[]`, `"warnings":[]`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("state JSON %s lacks %s", b, field)
		}
	}
}

// TestUnknownEvent: an event name outside the catalogue is recorded and counted, and has
// no effect on any decision.
func TestUnknownEvent(t *testing.T) {
	for _, typ := range unknownTypes {
		t.Run(string(typ), func(t *testing.T) {
			f := domain.NewFolder()
			first, rec := f.Apply(domain.State{}, ev(t, 1, typ, at(0), withExt("user-1"), withWarnings("w"), withStep("s")))
			if rec.Outcome != domain.OutcomeUnknown || rec.From != "" || rec.To != "" {
				t.Fatalf("first event: outcome %q, %q -> %q; want unknown with no status", rec.Outcome, rec.From, rec.To)
			}
			if first.ApplicantID != testApplicant || first.AppKey != testApp || first.Events != 1 || first.LastSeq != 1 {
				t.Errorf("an unknown first event must still identify and count: %+v", first)
			}
			if !bytes.Equal(mustJSON(t, decisionOf(first)), mustJSON(t, newModel(t).d)) {
				t.Errorf("unknown first event changed the decision state: %+v", decisionOf(first))
			}
			if !slices.Equal(rec.Warnings, []string{"w"}) || rec.StepName != "s" {
				t.Errorf("the record must keep what arrived: %+v", rec)
			}

			s, _ := f.Apply(first, ev(t, 2, "applicantCreated", at(10), withExt("user-1")))
			s, _ = f.Apply(s, ev(t, 3, "applicantInProgress", at(20)))
			next, rec := f.Apply(s, ev(t, 4, typ, at(30), withExt("user-2"), withWarnings("w2"), withStep("selfie")))
			if rec.Outcome != domain.OutcomeUnknown || rec.From != "IN_PROGRESS" || rec.To != "IN_PROGRESS" {
				t.Errorf("outcome %q, %q -> %q; want unknown, IN_PROGRESS -> IN_PROGRESS", rec.Outcome, rec.From, rec.To)
			}
			if got, want := mustJSON(t, decisionOf(next)), mustJSON(t, decisionOf(s)); !bytes.Equal(got, want) {
				t.Errorf("unknown event changed the decision state:\n got %s\nwant %s", got, want)
			}
			if next.Events != 4 || next.LastSeq != 4 || next.Digest == s.Digest || !next.LastEventAt.Equal(at(30)) {
				t.Errorf("unknown event must be counted and chained: %+v", next)
			}
		})
	}
}

// TestExternalUserID: taken from the first event that carries one, replaced by a later
// applied or annotated event that carries another, never cleared by an event without one,
// and left alone by duplicate, stale and unknown events.
func TestExternalUserID(t *testing.T) {
	steps := []struct {
		e    domain.Event
		want domain.ExternalUserID
	}{
		{ev(t, 1, "applicantCreated", at(0)), ""},
		{ev(t, 2, "applicantStepPassed", at(10), withStep("document"), withExt("user-1")), "user-1"},
		{ev(t, 3, "applicantInProgress", at(20)), "user-1"},
		{ev(t, 4, "applicantInProgress", at(20), withExt("dup")), "user-1"},
		{ev(t, 5, "applicantOnHold", at(5), withExt("stale")), "user-1"},
		{ev(t, 6, "applicantLevelChanged", at(30), withExt("unknown")), "user-1"},
		{ev(t, 7, "applicantApproved", at(40), withExt("user-2")), "user-2"}, // irregular: still applied
		{ev(t, 8, "expiredDocument", at(50)), "user-2"},
	}
	f := domain.NewFolder()
	var s domain.State
	for i, st := range steps {
		var rec domain.Record
		s, rec = f.Apply(s, st.e)
		if s.ExternalUserID != st.want {
			t.Errorf("after event %d (%s, %s): externalUserId %q, want %q", i, st.e.Type, rec.Outcome, s.ExternalUserID, st.want)
		}
		if rec.ExternalUserID != st.e.ExternalUserID {
			t.Errorf("event %d: record externalUserId %q, want what arrived, %q", i, rec.ExternalUserID, st.e.ExternalUserID)
		}
	}
}

// TestDigestChain recomputes the chain with crypto/sha256: the first digest is
// SHA-256(stored), each next SHA-256(previous || stored), whatever the outcome.
func TestDigestChain(t *testing.T) {
	events := randomLog(t, rand.New(rand.NewPCG(7, 7)), 200)
	f := domain.NewFolder()
	var s domain.State
	var want [32]byte
	outcomes := map[domain.Outcome]int{}
	for i, e := range events {
		if i == 0 {
			want = sha256.Sum256(e.Stored)
		} else {
			want = sha256.Sum256(slices.Concat(want[:], e.Stored))
		}
		var rec domain.Record
		s, rec = f.Apply(s, e)
		outcomes[rec.Outcome]++
		if [32]byte(s.Digest) != want || [32]byte(rec.Digest) != want {
			t.Fatalf("event %d (%s): state digest %s, record digest %s, want %x", i, rec.Outcome, s.Digest, rec.Digest, want)
		}
	}
	if len(outcomes) != len(allOutcomes) {
		t.Errorf("the log exercised only %v", outcomes)
	}

	var st struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(mustJSON(t, s), &st); err != nil || st.Digest != hex.EncodeToString(want[:]) {
		t.Errorf("state JSON digest %q (%v), want %x", st.Digest, err, want)
	}
}

func TestDigestText(t *testing.T) {
	var zero domain.Digest
	if b, err := zero.MarshalText(); err != nil || len(b) != 0 {
		t.Errorf("zero digest marshals to %q, %v; want empty", b, err)
	}
	if s := zero.String(); s != "" {
		t.Errorf("zero digest prints as %q, want empty", s)
	}
	d := zero.Next([]byte("stored"))
	if want := sha256.Sum256([]byte("stored")); [32]byte(d) != want || d.String() != hex.EncodeToString(want[:]) {
		t.Errorf("Next on the zero digest = %s, want %x", d, want)
	}
	var back domain.Digest
	if err := back.UnmarshalText([]byte(d.String())); err != nil || back != d {
		t.Errorf("round trip: %s, %v; want %s", back, err, d)
	}
	if err := back.UnmarshalText(nil); err != nil || back != zero {
		t.Errorf("empty text: %s, %v; want the zero digest", back, err)
	}
	for _, bad := range []string{"abc", d.String()[:62] + "zz", d.String() + "00"} {
		if err := back.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted", bad)
		}
	}
}

// TestRefold: folding the history records again gives the state the incremental fold
// reached, after every prefix (the point-in-time read) and after a JSON round trip of the
// records (as the store keeps them).
func TestRefold(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		events := randomLog(t, rand.New(rand.NewPCG(seed, 11)), 150)
		f := domain.NewFolder()
		var s domain.State
		var recs []domain.Record
		for i, e := range events {
			var r domain.Record
			s, r = f.Apply(s, e)
			recs = append(recs, r)
			if i%10 == 0 || i == len(events)-1 {
				if got, want := mustJSON(t, f.Refold(recs)), mustJSON(t, s); !bytes.Equal(got, want) {
					t.Fatalf("seed %d: Refold of %d records\n got %s\nwant %s", seed, len(recs), got, want)
				}
			}
		}
		var stored []domain.Record
		if err := json.Unmarshal(mustJSON(t, recs), &stored); err != nil {
			t.Fatal(err)
		}
		if got, want := mustJSON(t, f.Refold(stored)), mustJSON(t, s); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: Refold after JSON round trip\n got %s\nwant %s", seed, got, want)
		}
	}
	if s := domain.NewFolder().Refold(nil); s.Events != 0 || s.Status != "" || s.Digest != (domain.Digest{}) {
		t.Errorf("Refold(nil) = %+v, want the empty state", s)
	}
}

// TestApplyFunction checks the package-level Apply agrees with a Folder.
func TestApplyFunction(t *testing.T) {
	events := randomLog(t, rand.New(rand.NewPCG(5, 5)), 60)
	want, _ := fold(events)
	var s domain.State
	for _, e := range events {
		s, _ = domain.Apply(s, e)
	}
	if !bytes.Equal(mustJSON(t, s), mustJSON(t, want)) {
		t.Errorf("domain.Apply and Folder.Apply disagree")
	}
}
