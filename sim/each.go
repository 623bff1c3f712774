package sim

import (
	"context"
	"sync"
	"sync/atomic"
)

// eachOf runs do for every i in [0, n), on min(workers, n) goroutines that take the next
// i as they finish one: a slow applicant holds up one worker, not a batch. w is the
// worker's number (0 based), for state a worker keeps between items. The first error
// cancels the ctx the others are given, so they stop after their current item, and is
// returned once all have stopped; a cancelled ctx stops them the same way, and eachOf
// then returns nil: the caller reads its own ctx.
func eachOf(ctx context.Context, workers, n int, do func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		once  sync.Once
		first error
	)
	for w := range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := do(ctx, w, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
