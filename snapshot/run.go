package snapshot

import (
	"context"
	"errors"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap"
)

// Run takes a snapshot whenever one is due, until ctx ends, and returns ctx's error. One
// is due when the newest snapshot any node can read was taken Every ago or more (or there
// is none), and shortly after an erasure made the newest unreadable. Every node runs it;
// the lease lets one take each snapshot, and the others then find it taken. With Every 0
// it only waits for ctx.
func (s *Snapshotter) Run(ctx context.Context) error {
	if s.cfg.Every <= 0 || s.cfg.Projection == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	check := min(max(s.cfg.Every/6, time.Second), 5*time.Minute)
	for {
		wait := check
		if next := s.round(ctx, time.Now()); !next.IsZero() {
			wait = min(wait, max(time.Until(next), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.poke:
		case <-t.C:
		}
		t.Stop()
	}
}

// round takes a snapshot if one is due now; otherwise it returns when the next one
// following an erasure falls due (zero: none pending).
func (s *Snapshotter) round(ctx context.Context, now time.Time) (next time.Time) {
	newest, ok, err := s.Newest(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("snapshots not listed", zap.Error(err))
		}
		return time.Time{}
	}
	due, next := s.due(newest, ok, now)
	if !due {
		return next
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(ctx); err != nil {
			s.log.Debug("snapshot due, held back until the node is ready", zap.Error(err))
			return time.Time{}
		}
	}
	_, err = s.Take(ctx)
	switch {
	case err == nil:
	case errors.Is(err, ErrBusy):
		s.log.Debug("snapshot due; another node holds the lease")
	case ctx.Err() != nil:
	default:
		s.log.Error("snapshot failed; tried again at the next check", zap.Error(err))
	}
	return time.Time{}
}

// due says whether a snapshot is due at now given the newest readable one, and if not,
// when one falls due because of an erasure (zero: none).
func (s *Snapshotter) due(newest eventlog.SnapshotInfo, ok bool, now time.Time) (bool, time.Time) {
	if !ok || !now.Before(newest.Created.Add(s.cfg.Every)) {
		return true, time.Time{}
	}
	e := s.erasedAt.Load()
	if e == 0 || !newest.Created.Before(time.Unix(0, e)) {
		return false, time.Time{}
	}
	at := time.Unix(0, e).Add(min(erasureSettle, s.cfg.Every))
	if !now.Before(at) {
		return true, time.Time{}
	}
	return false, at
}

// Folding is the projection as the projector folds into it (projector.Projection).
type Folding interface {
	Checkpoint() uint64
	Apply(events []domain.Event, f *domain.Folder) ([]domain.Record, error)
	Err() error
}

// Guard returns p as the projector is to fold into it, with the erasure rule: a batch
// that folds an applicantErased at sequence E is committed only once the key of every
// snapshot whose checkpoint is below E is destroyed, of any node's snapshots. A crash
// before the commit folds the batch again and destroys again (idempotent); a failure to
// destroy fails the batch, which the projector retries, so no erasure is committed while
// a snapshot from before it can still be opened. ctx bounds the destructions (the node's
// run).
func (s *Snapshotter) Guard(ctx context.Context, p Folding) Folding {
	return &guarded{Folding: p, s: s, ctx: ctx}
}

type guarded struct {
	Folding
	s   *Snapshotter
	ctx context.Context
}

func (g *guarded) Apply(events []domain.Event, f *domain.Folder) ([]domain.Record, error) {
	e := lastErasure(events, g.Checkpoint())
	if e == 0 {
		return g.Folding.Apply(events, f)
	}
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if err := g.s.destroyBefore(g.ctx, e); err != nil {
		return nil, err
	}
	return g.Folding.Apply(events, f)
}

// lastErasure is the sequence of the last erasure the batch folds (after checkpoint),
// 0 if none: an operator's applicantErased whose MAC did not fail, as domain.Apply
// decides.
func lastErasure(events []domain.Event, checkpoint uint64) uint64 {
	var e uint64
	for i := range events {
		ev := &events[i]
		if ev.Seq > checkpoint && ev.Type.Class() == domain.ClassErasure &&
			ev.Origin.OrDefault() == domain.OriginOperator && ev.Auth != domain.AuthFailed {
			e = max(e, ev.Seq)
		}
	}
	return e
}

// destroyBefore destroys the key of every snapshot whose checkpoint is below seq. The
// name of a snapshot carries its checkpoint, so the keys alone say which.
func (s *Snapshotter) destroyBefore(ctx context.Context, seq uint64) error {
	names, err := s.cfg.Keys.SnapshotKeys(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, name := range names {
		cp, ok := eventlog.SnapshotNameCheckpoint(name)
		if !ok || cp >= seq {
			continue
		}
		if err := s.cfg.Keys.DestroySnapshotKey(ctx, name); err != nil {
			return err
		}
		s.destroyed.Inc()
		n++
	}
	if n > 0 {
		s.log.Info("snapshots older than an erasure made unreadable", zap.Uint64("erasureSeq", seq), zap.Int("snapshots", n))
		s.erasedAt.Store(time.Now().UnixNano())
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
	return nil
}
