package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Restore writes the projection file at path, where there is none, from the newest
// snapshot this build can read, and returns that snapshot; false when none can be read
// (the node then folds the log from sequence 1). Each snapshot passed over is logged with
// the reason: one written by a newer kycstate (its schema version named), one whose key
// an erasure destroyed, one whose bytes or digest are wrong, one the object store cannot
// give. Errors: only ctx's, and KindConflict when path exists.
func (s *Snapshotter) Restore(ctx context.Context, path string) (eventlog.SnapshotInfo, bool, error) {
	const op = "snapshot.Snapshotter.Restore"
	if _, err := os.Stat(path); err == nil {
		return eventlog.SnapshotInfo{}, false, domain.E(op, domain.KindConflict, fmt.Sprintf("projection %s exists", path))
	}
	list, err := s.cfg.Store.List(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return eventlog.SnapshotInfo{}, false, ctx.Err()
		}
		s.log.Warn("snapshots not listed; folding the log from sequence 1", zap.Error(err))
		return eventlog.SnapshotInfo{}, false, nil
	}
	for _, info := range list {
		start := time.Now()
		err := s.restore(ctx, path, info)
		if err == nil {
			s.log.Info("projection restored from a snapshot", zap.String("snapshot", info.Name),
				zap.Uint64("checkpoint", info.Checkpoint), zap.Time("taken", info.Created),
				zap.Int64("bytes", info.Size), zap.Duration("took", time.Since(start)))
			return info, true, nil
		}
		if ctx.Err() != nil {
			return eventlog.SnapshotInfo{}, false, ctx.Err()
		}
		var skip *skipped
		if errors.As(err, &skip) {
			s.log.Log(skip.level, "snapshot skipped", zap.String("snapshot", info.Name),
				zap.Uint64("checkpoint", info.Checkpoint), zap.String("why", skip.why), zap.Error(skip.err))
			continue
		}
		s.log.Warn("snapshot skipped", zap.String("snapshot", info.Name), zap.Uint64("checkpoint", info.Checkpoint),
			zap.String("why", "it could not be restored"), zap.Error(err))
	}
	if len(list) > 0 {
		s.log.Warn("no snapshot could be restored; folding the log from sequence 1", zap.Int("snapshots", len(list)))
	}
	return eventlog.SnapshotInfo{}, false, nil
}

// skipped is why a snapshot is passed over, and how loudly.
type skipped struct {
	why   string
	level zapcore.Level
	err   error
}

func (s *skipped) Error() string { return s.why }

func skip(why string, err error) error {
	return &skipped{why: why, level: zapcore.WarnLevel, err: err}
}

func (s *Snapshotter) restore(ctx context.Context, path string, info eventlog.SnapshotInfo) error {
	if info.Problem != "" {
		return skip(info.Problem, nil)
	}
	if info.Schema > projection.SchemaVersion {
		return skip(fmt.Sprintf("written by a newer kycstate (%s) at projection schema %d; this build reads up to schema %d",
			info.Version, info.Schema, projection.SchemaVersion), nil)
	}
	obj, err := s.cfg.Store.Open(ctx, info.Name)
	if err != nil {
		return err
	}
	defer obj.Close()
	plain, err := s.cfg.Keys.OpenSnapshot(ctx, info.Name, obj)
	if errors.Is(err, eventlog.ErrNoKey) {
		// The usual fate of a snapshot older than an erasure: said, not warned of.
		return &skipped{why: "its key is destroyed: an erasure came after it", level: zapcore.InfoLevel}
	}
	if err != nil {
		return err
	}
	h := &counted{h: sha256.New()}
	cp, err := projection.Restore(path, io.TeeReader(plain, h), func() error {
		if got := hex.EncodeToString(h.h.Sum(nil)); got != info.Digest || h.n != info.Size {
			return skip(fmt.Sprintf("its projection file is not the one recorded (%d bytes, sha256 %s; recorded %d bytes, sha256 %s)",
				h.n, got, info.Size, info.Digest), nil)
		}
		return nil
	})
	switch {
	case errors.Is(err, eventlog.ErrSnapshotDamaged):
		return skip("its sealed bytes do not open", err)
	case err != nil && domain.KindOf(err) == domain.KindConflict:
		return skip("its projection file is not one this build reads", err)
	case err != nil:
		return err
	case cp != info.Checkpoint:
		os.Remove(path)
		return skip(fmt.Sprintf("its projection file is at checkpoint %d, its record says %d", cp, info.Checkpoint), nil)
	}
	return nil
}

// counted is a hash that counts what it is given.
type counted struct {
	h hash.Hash
	n int64
}

func (c *counted) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}
