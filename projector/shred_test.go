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
