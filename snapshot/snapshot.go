// Package snapshot takes, keeps and restores snapshots of the projection (DESIGN.md
// section 14), so that a new query node starts from a recent copy and folds only what
// came after it, instead of the whole log.
//
// A snapshot is the projection file as one read transaction sees it (its checkpoint
// inside, free pages written as zeros), sealed under a random key of its own kept in
// KYC_KEYS, and stored in the object store KYC_SNAPSHOTS. What it guarantees:
//
//   - A snapshot holds nothing a projection does not, and an erasure reaches it: before a
//     node commits a batch that folds an applicantErased at sequence E, it destroys the
//     key of every snapshot whose checkpoint is below E (Guard), so those snapshots open
//     nowhere, whatever copies of them exist. A snapshot this node starts is ordered
//     against those commits: either its checkpoint is at or past E, or its key exists
//     before the commit of E looks for keys.
//   - A snapshot becomes visible only complete: the object store shows an object once its
//     last chunk is stored, and a restore checks the digest of the projection file (as
//     well as the sealing's own checks) before the file is used.
//   - One node at a time writes (a lease, "snapshot", in KYC_LEASES): the scheduled
//     snapshot, kycstate snapshot, the removal of old snapshots and of the chunks of an
//     upload that was cut short.
//   - Restore picks the newest snapshot this build can read: its key present, its schema
//     version one this build reads, its digest right; each one passed over is logged with
//     the reason.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	// DefaultEvery is how often query nodes take a snapshot: a new node then folds at
	// most six hours of events after restoring.
	DefaultEvery = 6 * time.Hour
	// DefaultKeep is how many readable snapshots are kept: the newest, and two to fall
	// back on should it not open.
	DefaultKeep = 3
)

// LeaseName is the snapshot writers' lease in KYC_LEASES.
const LeaseName = "snapshot"

// Variables for tests.
var (
	// leaseTTL bounds how long a node that died holding the lease keeps others waiting;
	// the holder renews it every third of it while it works.
	leaseTTL = time.Minute
	// erasureSettle is how long after an erasure made snapshots unreadable a new one is
	// due (at most Every): erasures come in bursts (a retention sweep), one snapshot
	// covers them all.
	erasureSettle = time.Minute
)

// Store is the object store of snapshots: *eventlog.Snapshots.
type Store interface {
	// Put stores a snapshot's sealed bytes; the object is visible only once complete.
	// Errors: r's as they are; KindUnavailable.
	Put(ctx context.Context, info eventlog.SnapshotInfo, r io.Reader) error
	// List returns every snapshot, newest first. Errors: KindUnavailable.
	List(ctx context.Context) ([]eventlog.SnapshotInfo, error)
	// Open reads a snapshot's sealed bytes. Errors: KindNotFound; KindUnavailable.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Delete removes a snapshot; one not there is no error. Errors: KindUnavailable.
	Delete(ctx context.Context, name string) error
	// CleanPartial removes the chunks of uploads cut short; only the lease's holder
	// calls it. Errors: KindUnavailable.
	CleanPartial(ctx context.Context) (int, error)
}

// Keys are the snapshots' keys in the key ring: *eventlog.Keyring.
type Keys interface {
	// SealSnapshot makes snapshot name's key and returns a writer sealing into w; Close
	// writes the last chunk. Errors: KindConflict for a name with a key; KindUnavailable.
	SealSnapshot(ctx context.Context, name string, w io.Writer) (io.WriteCloser, error)
	// OpenSnapshot returns a reader of a snapshot's bytes opened from r. Errors:
	// KindNotFound wrapping eventlog.ErrNoKey when its key is gone; KindUnavailable.
	OpenSnapshot(ctx context.Context, name string, r io.Reader) (io.Reader, error)
	// DestroySnapshotKey securely deletes a snapshot's key. Errors: KindUnavailable.
	DestroySnapshotKey(ctx context.Context, name string) error
	// SnapshotKeys names the snapshots whose key exists. Errors: KindUnavailable.
	SnapshotKeys(ctx context.Context) ([]string, error)
}

// Projection is the projection a snapshot copies: *projection.Projection.
type Projection interface {
	// Snapshot runs fn with a consistent copy of the file, in one read transaction.
	Snapshot(fn func(c *projection.Copy) error) error
}

// Leases hands out the lease: *eventlog.Leases.
type Leases interface {
	// Acquire takes a lease. Errors: KindConflict wrapping eventlog.ErrLeaseHeld when
	// another holder has it; KindUnavailable.
	Acquire(ctx context.Context, name, holder string, ttl time.Duration) (*eventlog.Lease, error)
}

// Config configures a Snapshotter.
type Config struct {
	Store Store
	Keys  Keys
	// Projection is the projection snapshots copy; nil for a Snapshotter that only
	// guards erasures and restores.
	Projection Projection
	// Leases and Holder: the lease every writer takes. Leases nil: none is taken (a
	// process alone with its data dir, offline).
	Leases Leases
	Holder string
	// TempDir holds the sealed copy while it uploads (data_dir: the disk the projection
	// is on). The copy is sealed: nothing in it is in clear.
	TempDir string
	// Every is how often Run takes a snapshot (DefaultEvery); 0: Run takes none.
	Every time.Duration
	// Keep is how many readable snapshots are kept (DefaultKeep).
	Keep int
	// Version is the kycstate version recorded with each snapshot.
	Version string
	// Ready, when set, holds Run's snapshots back until it returns nil: a node still
	// catching up with the log has nothing worth copying.
	Ready func(ctx context.Context) error
	// MidUpload, set only by a binary built with the crash tests' hooks, runs once half
	// of a snapshot's bytes are sent, with the upload held until it returns.
	MidUpload func(ctx context.Context) error

	Logger  *zap.Logger
	Metrics prometheus.Registerer
}

// Snapshotter takes and keeps the snapshots of one node's projection. Safe for
// concurrent use.
type Snapshotter struct {
	cfg Config
	log *zap.Logger

	// mu orders this node's snapshots against its commits of erasures: a snapshot holds
	// it from the start of its read transaction until its key is stored, Guard from
	// before it looks for keys to destroy until its batch is committed.
	mu sync.Mutex
	// erasedAt is when an erasure last made a snapshot unreadable (Unix ns, 0: never):
	// a new snapshot is due soon after.
	erasedAt atomic.Int64
	poke     chan struct{} // wakes Run when erasedAt is set

	lastSuccess prometheus.Gauge
	duration    prometheus.Gauge
	size        prometheus.Gauge
	failures    prometheus.Counter
	destroyed   prometheus.Counter
}

// New returns a Snapshotter. Errors: KindInvalid for a config without a store or keys.
func New(cfg Config) (*Snapshotter, error) {
	const op = "snapshot.New"
	if cfg.Store == nil || cfg.Keys == nil {
		return nil, domain.E(op, domain.KindInvalid, "snapshots need the object store and the key ring")
	}
	if cfg.Every < 0 {
		return nil, domain.E(op, domain.KindInvalid, "snapshot period must not be negative")
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Snapshotter{cfg: cfg, log: cfg.Logger.Named("snapshot"), poke: make(chan struct{}, 1),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_snapshot_last_success_timestamp_seconds",
			Help: "When the newest snapshot this node can read was taken (by any node), as it last looked; 0: none.",
		}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_snapshot_duration_seconds",
			Help: "Seconds the last snapshot this node took lasted, copy and upload.",
		}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_snapshot_size_bytes",
			Help: "Bytes of the projection file in the last snapshot this node took.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_snapshot_failures_total",
			Help: "Snapshots this node started and did not store.",
		}),
		destroyed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_snapshot_keys_destroyed_total",
			Help: "Snapshot keys this node destroyed because an erasure came after the snapshot.",
		}),
	}
	if cfg.Metrics != nil {
		every := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_snapshot_every_seconds",
			Help: "projection.snapshot_every of this node in seconds; 0: it takes no scheduled snapshot.",
		})
		every.Set(cfg.Every.Seconds())
		cfg.Metrics.MustRegister(s.lastSuccess, s.duration, s.size, s.failures, s.destroyed, every)
	}
	return s, nil
}

// ErrBusy is the cause when another node holds the snapshot lease (KindConflict).
var ErrBusy = errors.New("another node is taking or pruning snapshots")

// Take takes a snapshot now, under the lease, then removes what is not to be kept:
// snapshots past Keep, those whose key an erasure destroyed, keys without a snapshot,
// and the chunks of uploads cut short. It returns the snapshot stored. Errors:
// KindConflict wrapping ErrBusy when another node holds the lease; KindUnavailable when
// the object store or the key ring does not answer; the projection's errors as they are.
func (s *Snapshotter) Take(ctx context.Context) (eventlog.SnapshotInfo, error) {
	const op = "snapshot.Snapshotter.Take"
	if s.cfg.Projection == nil {
		return eventlog.SnapshotInfo{}, domain.E(op, domain.KindInvalid, "no projection to copy")
	}
	var info eventlog.SnapshotInfo
	err := s.underLease(ctx, op, func(ctx context.Context) error {
		if n, err := s.cfg.Store.CleanPartial(ctx); err != nil {
			s.log.Warn("chunks of uploads cut short not removed", zap.Error(err))
		} else if n > 0 {
			s.log.Info("chunks of uploads cut short removed", zap.Int("uploads", n))
		}
		start := time.Now()
		var err error
		if info, err = s.take(ctx, start); err != nil {
			s.failures.Inc()
			return err
		}
		s.duration.Set(time.Since(start).Seconds())
		s.size.Set(float64(info.Size))
		s.lastSuccess.Set(float64(info.Created.UnixNano()) / 1e9)
		s.log.Info("snapshot taken", zap.String("snapshot", info.Name), zap.Uint64("checkpoint", info.Checkpoint),
			zap.Int64("bytes", info.Size), zap.Uint64("storedBytes", info.Stored), zap.Duration("took", time.Since(start)))
		if err := s.prune(ctx); err != nil {
			s.log.Warn("old snapshots not removed", zap.Error(err))
		}
		return nil
	})
	return info, err
}

// underLease runs fn holding the lease, renewed while fn runs; fn's context ends if the
// lease is lost.
func (s *Snapshotter) underLease(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if s.cfg.Leases == nil {
		return fn(ctx)
	}
	lease, err := s.cfg.Leases.Acquire(ctx, LeaseName, s.cfg.Holder, leaseTTL)
	if errors.Is(err, eventlog.ErrLeaseHeld) {
		return domain.E(op, domain.KindConflict, ErrBusy)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := lease.Renew(ctx, nil); errors.Is(err, eventlog.ErrLeaseLost) {
				cancel(domain.E(op, domain.KindConflict, err))
				return
			}
		}
	}()
	err = fn(ctx)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the lease was lost: that is why fn stopped
	}
	cancel(nil)
	wg.Wait()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer rcancel()
	if rerr := lease.Release(rctx); rerr != nil {
		s.log.Warn("snapshot lease not released; it runs out by itself", zap.Error(rerr))
	}
	return err
}

// take copies the projection into a sealed file under TempDir in one read transaction,
// then uploads that file: the read transaction lasts as long as a local copy, not as an
// upload (bbolt cannot grow its map while a reader holds the old one).
func (s *Snapshotter) take(ctx context.Context, start time.Time) (info eventlog.SnapshotInfo, err error) {
	const op = "snapshot.Snapshotter.take"
	removeSealedCopies(s.cfg.TempDir, s.log) // of a process that died uploading
	f, err := os.CreateTemp(s.cfg.TempDir, sealedPrefix+"*"+sealedSuffix)
	if err != nil {
		return info, domain.E(op, domain.KindUnavailable, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()

	s.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			s.mu.Unlock()
		}
	}
	defer unlock()
	keyMade := false
	err = s.cfg.Projection.Snapshot(func(c *projection.Copy) error {
		info = eventlog.SnapshotInfo{Name: eventlog.NewSnapshotName(c.Checkpoint, start), Checkpoint: c.Checkpoint,
			Schema: c.Schema, Version: s.cfg.Version, Created: start.UTC(), Size: c.Size}
		// The key is stored before this node's next erasure can commit: see mu.
		sealer, err := s.cfg.Keys.SealSnapshot(ctx, info.Name, f)
		unlock()
		if err != nil {
			return err
		}
		keyMade = true
		sum := sha256.New()
		if _, err := c.WriteTo(io.MultiWriter(sum, sealer)); err != nil {
			return err
		}
		if err := sealer.Close(); err != nil {
			return domain.E(op, domain.KindUnavailable, err)
		}
		info.Digest = hex.EncodeToString(sum.Sum(nil))
		return nil
	})
	unlock()
	if err != nil && domain.KindOf(err) == domain.KindOther {
		err = domain.E(op, domain.KindUnavailable, err) // writing the sealed copy
	}
	defer func() {
		if err != nil && keyMade {
			// Nothing will read it: a key without its snapshot is only clutter.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if derr := s.cfg.Keys.DestroySnapshotKey(dctx, info.Name); derr != nil {
				s.log.Warn("key of a snapshot not stored left behind", zap.String("snapshot", info.Name), zap.Error(derr))
			}
		}
	}()
	if err != nil {
		return info, err
	}
	if err := f.Sync(); err != nil {
		return info, domain.E(op, domain.KindUnavailable, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return info, domain.E(op, domain.KindUnavailable, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, domain.E(op, domain.KindUnavailable, err)
	}
	var r io.Reader = f
	if s.cfg.MidUpload != nil {
		r = &midway{r: f, at: fi.Size() / 2, hook: func() error { return s.cfg.MidUpload(ctx) }}
	}
	if err := s.cfg.Store.Put(ctx, info, r); err != nil {
		return info, err
	}
	info.Stored = uint64(fi.Size())
	return info, nil
}

// The sealed copies under TempDir.
const (
	sealedPrefix = "kycstate-snapshot-"
	sealedSuffix = ".sealed"
)

// removeSealedCopies removes sealed copies a process left when it died uploading them.
// A process that holds the lease is the only one uploading, so none is in use.
func removeSealedCopies(dir string, log *zap.Logger) {
	old, _ := filepath.Glob(filepath.Join(dir, sealedPrefix+"*"+sealedSuffix))
	for _, p := range old {
		if err := os.Remove(p); err == nil {
			log.Info("sealed copy of an upload cut short removed", zap.String("file", p))
		}
	}
}

// midway runs hook once, when the reader has given at bytes.
type midway struct {
	r    io.Reader
	at   int64
	read int64
	hook func() error
}

func (m *midway) Read(p []byte) (int, error) {
	if m.hook != nil && m.read >= m.at {
		hook := m.hook
		m.hook = nil
		if err := hook(); err != nil {
			return 0, err
		}
	}
	if m.hook != nil {
		p = p[:min(int64(len(p)), max(m.at-m.read, 1))]
	}
	n, err := m.r.Read(p)
	m.read += int64(n)
	return n, err
}

// prune removes what is not kept: snapshots that cannot be read (their key destroyed,
// their metadata unreadable), readable ones past Keep, and keys whose snapshot is gone
// (an upload that never finished). Called under the lease.
func (s *Snapshotter) prune(ctx context.Context) error {
	list, err := s.cfg.Store.List(ctx)
	if err != nil {
		return err
	}
	names, err := s.cfg.Keys.SnapshotKeys(ctx)
	if err != nil {
		return err
	}
	keyed := map[string]bool{}
	for _, n := range names {
		keyed[n] = true
	}
	listed := map[string]bool{}
	kept := 0
	var errs []error
	for _, info := range list {
		listed[info.Name] = true
		why := ""
		switch {
		case info.Problem != "":
			why = info.Problem
		case !keyed[info.Name]:
			why = "its key is destroyed"
		case kept >= s.cfg.Keep:
			why = fmt.Sprintf("older than the %d kept", s.cfg.Keep)
		default:
			kept++
			continue
		}
		if err := s.cfg.Store.Delete(ctx, info.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if keyed[info.Name] {
			if err := s.cfg.Keys.DestroySnapshotKey(ctx, info.Name); err != nil {
				errs = append(errs, err)
			}
		}
		s.log.Info("snapshot removed", zap.String("snapshot", info.Name), zap.String("why", why))
	}
	for _, n := range names {
		if !listed[n] {
			if err := s.cfg.Keys.DestroySnapshotKey(ctx, n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Newest returns the newest snapshot whose key exists, and sets the metric of when it
// was taken. Errors: KindUnavailable.
func (s *Snapshotter) Newest(ctx context.Context) (eventlog.SnapshotInfo, bool, error) {
	list, err := s.cfg.Store.List(ctx)
	if err != nil {
		return eventlog.SnapshotInfo{}, false, err
	}
	names, err := s.cfg.Keys.SnapshotKeys(ctx)
	if err != nil {
		return eventlog.SnapshotInfo{}, false, err
	}
	for _, info := range list {
		if info.Problem == "" && slices.Contains(names, info.Name) {
			s.lastSuccess.Set(float64(info.Created.UnixNano()) / 1e9)
			return info, true, nil
		}
	}
	s.lastSuccess.Set(0)
	return eventlog.SnapshotInfo{}, false, nil
}
