// Apply and wait: one bbolt transaction per batch with the checkpoint inside it, and the
// checkpoint published to waiters only after that transaction commits.

package projection

import (
	"context"
	"errors"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// Apply folds events (in stream order) with f and commits states, history, indexes,
// anomalies, changes and the new checkpoint in one bbolt transaction. Events at or below
// the checkpoint are skipped, so replaying a batch after a crash applies nothing twice.
// Only after the commit does Checkpoint advance and waiters wake. It returns the records
// written, in order.
//
// Errors: KindConflict on a read-only projection, KindInternal when the file is damaged,
// KindUnavailable when it is closed or the commit fails; nothing is applied then.
func (p *Projection) Apply(events []domain.Event, f *domain.Folder) ([]domain.Record, error) {
	const op = "projection.Projection.Apply"
	if p.readOnly {
		return nil, domain.E(op, domain.KindConflict, "projection opened read-only")
	}
	if len(events) == 0 || events[len(events)-1].Seq <= p.Checkpoint() {
		return nil, nil
	}
	var (
		recs []domain.Record
		cp   uint64
	)
	var touched []domain.ApplicantKey
	err := p.update(op, func(tx *bolt.Tx) error {
		w, err := newWriter(tx, f, p.ix, nil, nil)
		if err != nil {
			return err
		}
		defer func() {
			for id := range w.touched {
				touched = append(touched, id)
			}
		}()
		recs = make([]domain.Record, 0, len(events))
		for i := range events {
			rec, ok, err := w.event(&events[i])
			if err != nil {
				return err
			}
			if ok {
				recs = append(recs, rec)
			}
		}
		if len(recs) == 0 {
			return errNothingToApply
		}
		if err := w.flush(); err != nil {
			return err
		}
		cp = w.checkpoint
		if p.beforeCommit != nil {
			return p.beforeCommit()
		}
		return nil
	})
	// Whatever came of the batch (a commit that failed may still have reached the file),
	// its applicants' cached states go before the checkpoint advances: a reader that
	// waited for cp never gets a state from before it.
	p.states.drop(touched)
	if errors.Is(err, errNothingToApply) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.advance(cp)
	return recs, nil
}

// errNothingToApply rolls back a transaction whose events were all applied before.
var errNothingToApply = errors.New("nothing to apply")

// advance publishes a committed checkpoint and wakes every waiter.
func (p *Projection) advance(cp uint64) {
	for {
		old := p.checkpoint.Load()
		if cp <= old || p.checkpoint.CompareAndSwap(old, cp) {
			break
		}
	}
	p.mu.Lock()
	close(p.advanced)
	p.advanced = make(chan struct{})
	p.mu.Unlock()
}

// WaitFor blocks until the checkpoint reaches seq or ctx ends; it returns the checkpoint.
// It also returns when the projection is closed.
func (p *Projection) WaitFor(ctx context.Context, seq uint64) uint64 {
	for {
		p.mu.Lock()
		ch := p.advanced
		p.mu.Unlock()
		// Read after taking the channel: an advance after this load closes ch.
		cp := p.Checkpoint()
		if cp >= seq {
			return cp
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return p.Checkpoint()
		case <-p.closed:
			return p.Checkpoint()
		}
	}
}
