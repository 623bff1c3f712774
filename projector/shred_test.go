package projector

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/prometheus/client_golang/prometheus"
)

// shredRecorder is a Shredder that records each call with the projection's checkpoint at
// that moment, and fails its first call.
type shredRecorder struct {
	f     *fixture
	mu    sync.Mutex
	calls []shredCall
}

type shredCall struct {
	id         domain.ApplicantID
	checkpoint uint64
}

func (s *shredRecorder) ShredApplicant(_ context.Context, _ domain.AppKey, id domain.ApplicantID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, shredCall{id, s.f.proj.Checkpoint()})
	if len(s.calls) == 1 {
		return domain.E("test", domain.KindUnavailable, "key ring not answering")
	}
	return nil
}

// An applicantErased is folded only after its key is shredded: a failed shred stops the
// batch (the checkpoint stays before the erasure) and the retry shreds, then folds. An
// erasure the projection already holds is not shredded again on restart.
func TestProjectorShredsBeforeFoldingAnErasure(t *testing.T) {
	f := newFixture(t)
	appendLog(t, f.events, 0, 20, 4)
	erased := domain.ApplicantID(uuid(0xbb, 2))
	ev := &domain.Event{Provider: "allpass", Origin: domain.OriginOperator, AppKey: domain.AppKey(uuid(0xaa, 1)),
		ApplicantID: erased, Type: domain.EventErased, EventAt: time.Now().UTC(), EventAtSource: domain.SourceReceived,
		ReceivedAt: time.Now().UTC(), Payload: []byte(`{"by":"admin","reason":"test"}`)}
	seq, _, err := f.events.Append(context.Background(), ev, "erase-2")
	if err != nil {
		t.Fatal(err)
	}
	rec := &shredRecorder{f: f}
	p := New(f.events, f.proj, Config{MaxBatch: 50, RetryMin: time.Millisecond, Shredder: rec}, f.log, prometheus.NewRegistry())
	stop := run(t, p)
	waitCheckpoint(t, f.proj, seq)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	rec.mu.Lock()
	calls := append([]shredCall(nil), rec.calls...)
	rec.mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("shred calls = %+v, want a failed one and its retry", calls)
	}
	for _, c := range calls {
		if c.id != erased || c.checkpoint >= seq {
			t.Fatalf("shred call %+v: want applicant %s before the checkpoint reached %d", c, erased, seq)
		}
	}
	st, found, err := f.proj.State(erased)
	if err != nil || !found || !st.Erased {
		t.Fatalf("state after the fold = %+v, %v; want erased", st, err)
	}

	p = New(f.events, f.proj, Config{MaxBatch: 50, Shredder: rec}, f.log, prometheus.NewRegistry())
	stop = run(t, p)
	appendLog(t, f.events, 20, 24, 4)
	waitCheckpoint(t, f.proj, seq+4)
	stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) != 2 {
		t.Fatalf("an erasure already folded was shredded again: %+v", rec.calls)
	}
}

// After a batch that folds an erasure, the projector scrubs the projection's free pages
// (Config.Scrub); a failed scrub is tried again after the next batch, and none is made
// for batches without an erasure once one succeeded.
func TestProjectorScrubsAfterAnErasure(t *testing.T) {
	f := newFixture(t)
	appendLog(t, f.events, 0, 20, 4)
	var mu sync.Mutex
	var scrubs []uint64 // the checkpoint at each call
	scrub := func() error {
		mu.Lock()
		defer mu.Unlock()
		scrubs = append(scrubs, f.proj.Checkpoint())
		if len(scrubs) == 1 {
			return domain.E("test", domain.KindUnavailable, "a read holds the freed pages")
		}
		// What Config.Scrub is for: the real one runs on the real file.
		_, err := f.proj.Scrub(time.Second)
		return err
	}
	p := New(f.events, f.proj, Config{MaxBatch: 50, Scrub: scrub}, f.log, prometheus.NewRegistry())
	stop := run(t, p)
	waitCheckpoint(t, f.proj, 20)
	mu.Lock()
	if len(scrubs) != 0 {
		t.Fatalf("scrubbed without an erasure: %v", scrubs)
	}
	mu.Unlock()
	ev := &domain.Event{Provider: "allpass", Origin: domain.OriginOperator, AppKey: domain.AppKey(uuid(0xaa, 1)),
		ApplicantID: domain.ApplicantID(uuid(0xbb, 2)), Type: domain.EventErased, EventAt: time.Now().UTC(),
		EventAtSource: domain.SourceReceived, ReceivedAt: time.Now().UTC(), Payload: []byte(`{"by":"admin","reason":"test"}`)}
	seq, _, err := f.events.Append(context.Background(), ev, "erase-2")
	if err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, f.proj, seq)
	appendLog(t, f.events, 20, 21, 4)
	waitCheckpoint(t, f.proj, seq+1)
	appendLog(t, f.events, 21, 22, 4)
	waitCheckpoint(t, f.proj, seq+2)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(scrubs) != 2 || scrubs[0] != seq || scrubs[1] != seq+1 {
		t.Fatalf("scrubs at checkpoints %v; want %d (failed) and %d (its retry), then none", scrubs, seq, seq+1)
	}
}
