package projector

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Events published straight onto KYC_EVENTS by a client with write access to NATS (DESIGN
// section 15): a clear approval without a MAC, a genuine event with its MAC changed, a
// genuine event's bytes on another applicant's subject, an operator's erasure (which a
// node that shreds would act on). The projector folds each as
// unauthenticated, changes nothing else, counts them, and verify lists them and fails.
func TestForgedEventsChangeNothing(t *testing.T) {
	srv := jstest.Start(t)
	lg := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	master, err := eventlog.ParseMasterKey(eventlog.NewMasterKeyHex())
	if err != nil {
		t.Fatal(err)
	}
	elog := srv.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: master}}, lg)
	proj, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{Indexer: elog.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })

	ctx := context.Background()
	app := domain.AppKey(uuid(0xaa, 1))
	victim, other := domain.ApplicantID(uuid(0xbb, 1)), domain.ApplicantID(uuid(0xbb, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	appendEv := func(id domain.ApplicantID, typ domain.EventType, min int) *domain.Event {
		ev := &domain.Event{Provider: "allpass", AppKey: app, ApplicantID: id, ExternalUserID: domain.ExternalUserID("user-" + string(id[:8])),
			Type: typ, EventAt: base.Add(time.Duration(min) * time.Minute), EventAtSource: domain.SourcePayloadUpdatedAt,
			ReceivedAt: base, Payload: json.RawMessage(`{"n":1}`)}
		if _, _, err := elog.Append(ctx, ev, string(id)+string(typ)); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	appendEv(victim, domain.EventCreated, 0)
	inProgress := appendEv(victim, domain.EventInProgress, 1)
	appendEv(other, domain.EventCreated, 0)

	js, err := jetstream.New(srv.Conn(t).NC)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(id domain.ApplicantID, data []byte) {
		subject, _ := eventlog.Subject(app, id)
		if _, err := js.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	clearApproval, err := eventlog.EncodeEvent(&domain.Event{V: domain.StoredVersionClear, Provider: "allpass", AppKey: app,
		ApplicantID: victim, ExternalUserID: "user-evil", Type: domain.EventApproved, EventAt: base.Add(time.Hour),
		EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: base, Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	forge(victim, clearApproval)
	wrongMAC := bytes.Replace(inProgress.Stored, []byte(domain.EventInProgress), []byte(domain.EventApproved), 1)
	forge(victim, wrongMAC)
	forge(other, inProgress.Stored) // the victim's genuine event, on another applicant's subject
	forgedErasure, err := eventlog.EncodeEvent(&domain.Event{V: domain.StoredVersionClear, Provider: "allpass",
		Origin: domain.OriginOperator, AppKey: app, ApplicantID: victim, Type: domain.EventErased, EventAt: base.Add(time.Hour),
		EventAtSource: domain.SourceReceived, ReceivedAt: base, Payload: json.RawMessage(`{"by":"mallory","reason":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	forge(victim, forgedErasure) // would destroy the victim's key on every node that shreds
	genuine := appendEv(victim, domain.EventCompleted, 2)

	reg := prometheus.NewRegistry()
	p := New(elog, proj, Config{MaxBatch: 2, LagEvery: 10 * time.Millisecond, Shredder: elog.Keys()}, lg, reg)
	stop := run(t, p)
	proj.WaitFor(ctx, genuine.Seq)
	stop()

	if got := counter(t, reg, "kycstate_events_unauthenticated_total"); got != 4 {
		t.Fatalf("kycstate_events_unauthenticated_total = %v, want 4", got)
	}
	st, _, err := proj.State(victim)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != domain.StatusCompleted || st.Events != 6 || st.Anomalies != 0 || st.ExternalUserID != "" || st.Erased {
		t.Fatalf("victim after forged events: %+v", st)
	}
	if ext, err := elog.Keys().OpenExternalUserID(ctx, app, victim, st.SealedExternalUserID); err != nil || ext != "user-"+domain.ExternalUserID(victim[:8]) {
		t.Fatalf("the victim's data key after a forged erasure: %q, %v", ext, err)
	}
	// Its externalUserId is its own: found by its index, the forged one finds nothing.
	for ext, want := range map[domain.ExternalUserID]int{"user-" + domain.ExternalUserID(victim[:8]): 1, "user-evil": 0} {
		got, err := proj.ByExternalUserIndex(func(a domain.AppKey) domain.ExternalUserIndex { return elog.Keys().Index(a, ext) }, "", 0)
		if err != nil || len(got) != want {
			t.Fatalf("lookup %s: %d applicants, want %d (%v)", ext, len(got), want, err)
		}
	}
	ost, _, _ := proj.State(other)
	if ost.Status != domain.StatusInit || ost.Events != 2 {
		t.Fatalf("other applicant after a copied event: %+v", ost)
	}
	recs, _, err := proj.History(victim, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []domain.Outcome
	for _, r := range recs {
		outcomes = append(outcomes, r.Outcome)
	}
	want := []domain.Outcome{"applied", "applied", "unauthenticated", "unauthenticated", "unauthenticated", "applied"}
	if len(outcomes) != len(want) {
		t.Fatalf("history outcomes %v, want %v", outcomes, want)
	}
	for i := range want {
		if outcomes[i] != want[i] {
			t.Fatalf("history outcomes %v, want %v", outcomes, want)
		}
	}

	res, err := projection.Verify(ctx, elog, proj)
	if err != nil {
		t.Fatal(err)
	}
	forged := 0
	for _, d := range res.Differences {
		if d.Kind != domain.DiffUnauthenticated {
			t.Fatalf("verify: a difference other than a forgery: %v", d)
		}
		forged++
	}
	if res.Signed != 4 || res.Unsigned != 0 || res.Unauthenticated != 4 || forged != 4 || res.Unchecked() != 0 {
		t.Fatalf("verify: %+v", res)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
