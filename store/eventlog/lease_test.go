package eventlog

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func openLeases(t *testing.T) *Leases {
	t.Helper()
	c := natsStart(t, NATSConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := OpenLeases(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLeases(ctx, c, 1); err != nil { // a second node opens the same bucket
		t.Fatal(err)
	}
	return ls
}

func TestLeaseOneHolderAtATime(t *testing.T) {
	ls := openLeases(t)
	ctx := context.Background()
	a, err := ls.Acquire(ctx, "reconcile", "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Acquire(ctx, "reconcile", "node-b", time.Minute); !errors.Is(err, ErrLeaseHeld) || domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("second holder: %v", err)
	}
	if _, err := ls.Acquire(ctx, "retention", "node-b", time.Minute); err != nil {
		t.Fatalf("another name is another lease: %v", err)
	}
	if err := a.Renew(ctx, []byte(`{"after":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := ls.Acquire(ctx, "reconcile", "node-b", time.Minute)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if string(b.Data()) != `{"after":"x"}` || b.Prior() != "node-a" {
		t.Fatalf("data %q prior %q: the next holder resumes from what the last saved", b.Data(), b.Prior())
	}
	if err := a.Renew(ctx, nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renew after release: %v", err)
	}
}

func TestLeaseTakenOverWhenExpired(t *testing.T) {
	ls := openLeases(t)
	ctx := context.Background()
	a, err := ls.Acquire(ctx, "reconcile", "node-a", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	b, err := ls.Acquire(ctx, "reconcile", "node-b", time.Minute)
	if err != nil {
		t.Fatalf("expired lease not taken over: %v", err)
	}
	if b.Prior() != "node-a" {
		t.Fatalf("prior %q", b.Prior())
	}
	if err := a.Renew(ctx, nil); !errors.Is(err, ErrLeaseLost) || domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("the old holder renews a lease taken over: %v", err)
	}
}

// Many nodes racing for a free lease: exactly one gets it.
func TestLeaseRace(t *testing.T) {
	ls := openLeases(t)
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ls.Acquire(context.Background(), "reconcile", string(rune('a'+i)), time.Minute); err == nil {
				won.Add(1)
			} else if !errors.Is(err, ErrLeaseHeld) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d holders", won.Load())
	}
}
