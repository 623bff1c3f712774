package erase

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap/zaptest"
)

// Retention erases an old applicant of another provider (DESIGN.md section 13) as it
// does an Allpass one: applicantErased names its provider and app, its key is
// destroyed (its events no longer open), its rejects are deleted; a recent applicant of
// the same provider and app keeps everything.
func TestRetentionSweepOtherProvider(t *testing.T) {
	events := keyedLog(t)
	ctx := context.Background()
	now := base.Add(10 * 365 * 24 * time.Hour)
	add := func(id domain.ApplicantID, at time.Time) domain.Event {
		ev := &domain.Event{Provider: string(domain.ProviderSumsub), Origin: domain.OriginWebhook, AppKey: "ss", ApplicantID: id,
			ExternalUserID: "person-" + domain.ExternalUserID(id), Type: "applicantCreated", ProviderStatus: "applicantCreated",
			EventAt: at, EventAtSource: domain.SourceReceived, ReceivedAt: at,
			Payload: json.RawMessage(`{"type":"applicantCreated","name":"Jane Secret"}`)}
		if _, _, err := events.Append(ctx, ev, "ss-"+string(id)); err != nil {
			t.Fatal(err)
		}
		var stored domain.Event
		if err := json.Unmarshal(ev.Stored, &stored); err != nil {
			t.Fatal(err)
		}
		return stored
	}
	oldEv := add("ssOld", base)
	newEv := add("ssNew", now.Add(-time.Hour))
	for _, id := range []domain.ApplicantID{"ssOld", "ssNew"} {
		if err := events.Reject(ctx, domain.Reject{Reason: "invalid_payload", Status: 422, Body: "refused",
			Kept: domain.KeptAuthenticated, Provider: "sumsub", AppKey: "ss", ApplicantID: id}); err != nil {
			t.Fatal(err)
		}
	}
	p := project(t, events)
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: events, Projection: p, EraseAfter: 5 * 365 * 24 * time.Hour,
		Now: func() time.Time { return now }, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 erased", n, err)
	}
	all := logged(t, events)
	last := all[len(all)-1]
	if last.Type != domain.EventErased || last.Provider != "sumsub" || last.AppKey != "ss" || last.ApplicantID != "ssOld" {
		t.Fatalf("last event: %s %s %s %s, want applicantErased of sumsub ss ssOld", last.Type, last.Provider, last.AppKey, last.ApplicantID)
	}
	if err := events.Keys().Open(ctx, &oldEv); domain.KindOf(err) != domain.KindNotFound {
		t.Errorf("the erased applicant's event opens: %v", err)
	}
	if err := events.Keys().Open(ctx, &newEv); err != nil || newEv.ExternalUserID != "person-ssNew" {
		t.Errorf("the kept applicant's event: %v, %q", err, newEv.ExternalUserID)
	}
	if rs := listRejects(t, events); len(rs) != 1 || rs[0].ApplicantID != "ssNew" {
		t.Fatalf("rejects after the sweep: %+v", rs)
	}
	// Folded, the erasure marks the applicant erased, and a second sweep finds nothing.
	if _, err := p.Apply(all[p.Checkpoint():], domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	st, found, err := p.StateOf(domain.KeyOf(domain.ProviderSumsub, "ss", "ssOld"))
	if err != nil || !found || !st.Erased {
		t.Fatalf("state of the erased applicant: %+v %v %v", st, found, err)
	}
	if n, err := e.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v; want 0", n, err)
	}
}
