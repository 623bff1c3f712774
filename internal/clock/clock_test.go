package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleepWaits(t *testing.T) {
	const d = 20 * time.Millisecond
	start := time.Now()
	if err := Sleep(context.Background(), d); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	if took := time.Since(start); took < d {
		t.Fatalf("Sleep(%s) returned after %s", d, took)
	}
}

// TestSleepCancelled: a wait of an hour ends with its context, with the context's error.
// Were ctx not honoured the test would hang until the test binary's own timeout.
func TestSleepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, time.Hour) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Sleep: %v, want context.Canceled", err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer dcancel()
	if err := Sleep(dctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep past the deadline: %v, want context.DeadlineExceeded", err)
	}
}

func TestSleepNothing(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if err := Sleep(context.Background(), d); err != nil {
			t.Errorf("Sleep(%s) on a live context: %v", d, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Sleep(ctx, d); !errors.Is(err, context.Canceled) {
			t.Errorf("Sleep(%s) on a cancelled context: %v, want context.Canceled", d, err)
		}
	}
}
