package eventlog

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// An erasure leaves the ring remembering it: the key is gone, the events no longer
// open, a later event is stored without personal fields and no key is made again. No
// file of the store holds the reason (sealed while the erasure is under way), nor, once
// it is done, the wrapped key (both records are overwritten, not only marked deleted).
func TestErasureDestroysKeyAndIsRemembered(t *testing.T) {
	store := t.TempDir()
	c := natsStart(t, NATSConfig{StoreDir: store, SyncInterval: time.Minute})
	l := keyedLog(t, c, testMasterA)
	other := keyedLog(t, c, testMasterA) // another process, its cache warm
	ctx := context.Background()
	app, id := logApp(0), logApplicant(0)
	logAppend(t, l, logEvent(app, id, domain.EventCreated, 0))
	ev0, _ := DecodeEvent(1, readAll(t, other)[0].Stored)
	if err := other.Keys().Open(ctx, &ev0); err != nil {
		t.Fatal(err)
	}
	keyMsgBefore, err := l.Keys().stream.GetLastMsgForSubject(ctx, "kyc.keys.app."+string(app)+"."+string(id))
	if err != nil {
		t.Fatal(err)
	}

	e, err := l.Keys().BeginErasure(ctx, app, id, "admin", "GDPR request 42")
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Keys().BeginErasure(ctx, app, id, "admin", "twice")
	if err != nil || again.Seq != e.Seq {
		t.Fatalf("second BeginErasure = %+v, %v; want the first", again, err)
	}
	pend, err := l.Keys().PendingErasures(ctx)
	if err != nil || len(pend) != 1 || pend[0].ApplicantID != id || pend[0].Reason != "GDPR request 42" || pend[0].By != "admin" {
		t.Fatalf("pending = %+v, %v", pend, err)
	}
	if pend, err := other.Keys().PendingErasures(ctx); err != nil || len(pend) != 1 || pend[0].Reason != "GDPR request 42" {
		t.Fatalf("pending, read by another process = %+v, %v", pend, err)
	}
	if dirHolds(t, store, []byte("GDPR request 42")) {
		t.Fatal("the reason of an erasure under way is in clear in the store")
	}
	if !dirHolds(t, store, keyMsgBefore.Data) {
		t.Fatal("the wrapped key is not found in the store before its destruction: the test shows nothing")
	}
	if err := l.Keys().DestroyKey(ctx, app, id); err != nil {
		t.Fatal(err)
	}
	if err := l.Keys().DestroyKey(ctx, app, id); err != nil {
		t.Fatalf("DestroyKey twice: %v", err)
	}
	if err := l.Keys().EndErasure(ctx, e); err != nil {
		t.Fatal(err)
	}
	if pend, _ := l.Keys().PendingErasures(ctx); len(pend) != 0 {
		t.Fatalf("still pending: %+v", pend)
	}
	if _, err := l.Keys().stream.GetMsg(ctx, keyMsgBefore.Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("key message still readable: %v", err)
	}
	if _, err := l.Keys().stream.GetMsg(ctx, e.Seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("pending record still readable: %v", err)
	}
	for what, b := range map[string][]byte{"wrapped key": keyMsgBefore.Data, "reason": []byte("GDPR request 42"),
		"pending record": []byte(`"kind":"pending"`)} {
		if dirHolds(t, store, b) {
			t.Errorf("after the erasure the store still holds the %s", what)
		}
	}

	ev, _ := DecodeEvent(1, readAll(t, l)[0].Stored)
	if err := l.Keys().Open(ctx, &ev); !errors.Is(err, ErrErased) || domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("Open after erasure = %v", err)
	}
	if erased, err := l.Keys().Erased(ctx, app, id); err != nil || !erased {
		t.Fatalf("Erased = %v, %v", erased, err)
	}
	later := logEvent(app, id, domain.EventApproved, 5)
	logAppend(t, l, later)
	if bytes.Contains(later.Stored, []byte(`"sealed`)) || bytes.Contains(later.Stored, []byte(`"extIndex"`)) ||
		bytes.Contains(later.Stored, []byte("user-")) || bytes.Contains(later.Stored, []byte(`"payload"`)) {
		t.Fatalf("event after erasure stored with personal fields: %s", later.Stored)
	}
	info, err := l.Keys().stream.Info(ctx, jetstream.WithSubjectFilter("kyc.keys.app.>"))
	if err != nil {
		t.Fatal(err)
	}
	for subj, n := range info.State.Subjects {
		if n != 1 {
			t.Errorf("%s holds %d messages, want the tombstone alone", subj, n)
		}
	}
	// The other process's cached key expires; it then reads the tombstone.
	other.Keys().cache.ttl = 0
	if err := other.Keys().Open(ctx, &ev); !errors.Is(err, ErrErased) {
		t.Fatalf("other process after its cache: %v", err)
	}
}
