// Package clock waits on the wall clock for as long as a context allows. Every loop that
// paces itself (a backoff after a failed read, a sweep's period, a simulator's send
// rate) waits through Sleep, so each stops the moment its owner cancels it rather than
// at the end of its wait.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, whichever comes first. It returns nil when d has
// passed and ctx's error when ctx ended the wait. A d of zero or less does not wait: it
// returns ctx's error at once, nil while ctx is live. The timer is stopped on return, so
// a cancelled wait leaves nothing behind.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
