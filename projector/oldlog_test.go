package projector

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// A log written before events were signed (DESIGN.md section 15), and the projection a
// build of that time folded from it, keep serving and verifying once this build takes
// over: version 1 events (clear, from a process without keys) and version 2 events
// (the externalUserId sealed, its blind index in clear, no MAC, as the build before
// version 3 stored them) are read as unsigned, the projection they made is continued
// rather than rebuilt, lookups find a version 1 applicant by its clear externalUserId,
// a version 2 one by the index its events carried, and those with new events by the
// index the projection computes, and verify passes
// with the old events counted unsigned and nothing unauthenticated.
func TestOldLogKeepsServingAndVerifying(t *testing.T) {
	srv := jstest.Start(t)
	lg := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	master, err := eventlog.ParseMasterKey(eventlog.NewMasterKeyHex())
	if err != nil {
		t.Fatal(err)
	}
	keys := &eventlog.MasterKeys{Current: master}
	ctx := context.Background()
	app := domain.AppKey(uuid(0xaa, 7))
	v1, v2, fresh := domain.ApplicantID(uuid(0xcc, 1)), domain.ApplicantID(uuid(0xcc, 2)), domain.ApplicantID(uuid(0xcc, 3))
	v1only := domain.ApplicantID(uuid(0xcc, 4)) // no event since version 1
	ext := func(id domain.ApplicantID) domain.ExternalUserID {
		return domain.ExternalUserID("user-" + string(id[:8]))
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	event := func(id domain.ApplicantID, typ domain.EventType, min int) *domain.Event {
		return &domain.Event{Provider: "allpass", AppKey: app, ApplicantID: id, ExternalUserID: ext(id),
			Type: typ, EventAt: base.Add(time.Duration(min) * time.Minute), EventAtSource: domain.SourcePayloadUpdatedAt,
			ReceivedAt: base, Payload: json.RawMessage(`{"n":1}`)}
	}

	// Version 1: appended by a process without keys.master.
	clearLog := srv.EventLog(t, eventlog.Config{}, lg)
	for i, typ := range []domain.EventType{domain.EventCreated, domain.EventInProgress} {
		for _, id := range []domain.ApplicantID{v1, v1only} {
			if _, _, err := clearLog.Append(ctx, event(id, typ, i), string(id)+string(typ)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Version 2, as the build before this one stored it: the data key made in KYC_KEYS,
	// the externalUserId sealed under it and its blind index beside it. The log key this
	// ring made is then removed, as if it had never existed: the old build made none.
	ring := srv.EventLog(t, eventlog.Config{Keys: keys}, lg).Keys()
	js, err := jetstream.New(srv.Conn(t).NC)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := eventlog.Subject(app, v2)
	for i, typ := range []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventCompleted} {
		sealed := event(v2, typ, i)
		if err := ring.Seal(ctx, sealed); err != nil {
			t.Fatal(err)
		}
		old := &domain.Event{V: domain.StoredVersionSealed, Provider: "allpass", AppKey: app, ApplicantID: v2,
			ExternalUserIndex: ring.Index(app, ext(v2)), SealedExternalUserID: sealed.SealedExternalUserID,
			Type: typ, EventAt: sealed.EventAt, EventAtSource: sealed.EventAtSource, ReceivedAt: base}
		data, err := eventlog.EncodeEvent(old)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, string(v2)+string(typ))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	keyStream, err := js.Stream(ctx, eventlog.KeyStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := keyStream.Purge(ctx, jetstream.WithPurgeSubject("kyc.keys.log")); err != nil {
		t.Fatal(err)
	}

	// The old build's projection: folded from that log as it was then.
	path := filepath.Join(t.TempDir(), "projection.db")
	oldProj, err := projection.Open(path, projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := New(clearLog, oldProj, Config{MaxBatch: 2, LagEvery: 10 * time.Millisecond}, lg, nil)
	stop := run(t, p)
	oldProj.WaitFor(ctx, 7)
	stop()
	if err := oldProj.Close(); err != nil {
		t.Fatal(err)
	}

	// This build takes over: its ring makes the log key (since = 7) and signs what it
	// appends; the projection is opened as it is and continued.
	elog := srv.EventLog(t, eventlog.Config{Keys: keys}, lg)
	proj, err := projection.Open(path, projection.Options{Indexer: elog.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })
	var last uint64
	for _, ev := range []*domain.Event{event(v1, domain.EventCompleted, 5), event(v2, domain.EventApproved, 5),
		event(fresh, domain.EventCreated, 0), event(fresh, domain.EventRejected, 1)} {
		seq, _, err := elog.Append(ctx, ev, string(ev.ApplicantID)+string(ev.Type))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	reg := prometheus.NewRegistry()
	p = New(elog, proj, Config{MaxBatch: 3, LagEvery: 10 * time.Millisecond, Shredder: elog.Keys()}, lg, reg)
	stop = run(t, p)
	proj.WaitFor(ctx, last)
	stop()

	if got := counter(t, reg, "kycstate_events_unauthenticated_total"); got != 0 {
		t.Fatalf("kycstate_events_unauthenticated_total = %v on an old log", got)
	}
	for id, want := range map[domain.ApplicantID]domain.Status{v1: domain.StatusCompleted, v2: domain.StatusApproved,
		fresh: domain.StatusRejected, v1only: domain.StatusInProgress} {
		st, _, err := proj.State(id)
		if err != nil || st.Status != want {
			t.Fatalf("state of %s: %+v, %v; want %s", id, st, err, want)
		}
		if id == v1only {
			continue // found by its clear externalUserId, below
		}
		found, err := proj.ByExternalUserIndex(func(a domain.AppKey) domain.ExternalUserIndex { return elog.Keys().Index(a, ext(id)) }, "", 0)
		if err != nil || len(found) != 1 || found[0].ApplicantID != id {
			t.Fatalf("lookup of %s by its externalUserId's index: %+v, %v", id, found, err)
		}
	}
	found, err := proj.ByExternalUserID(ext(v1only), "", 0)
	if err != nil || len(found) != 1 || found[0].ApplicantID != v1only {
		t.Fatalf("lookup of the version 1 applicant by its externalUserId: %+v, %v", found, err)
	}

	res, err := projection.Verify(ctx, elog, proj)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differences) != 0 || res.Unsigned != 7 || res.Signed != 4 || res.Unauthenticated != 0 || res.Unchecked() != 0 {
		t.Fatalf("verify of an old log continued by this build: %+v", res)
	}
}
