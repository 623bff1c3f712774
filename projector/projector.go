// Package projector folds the event log into the projection, in stream order, exactly once.
//
// It reads with an ordered consumer (through EventLog.Follow) rather than a durable
// pull consumer. The projection's checkpoint, committed in the same bbolt transaction as
// the states it covers, is the only record of how far the fold got; a durable consumer
// would keep a second position on the server, acknowledged separately, that a crash
// between commit and ack would set apart from the first. An ordered consumer keeps no
// server state, restarts itself after the last sequence it delivered, and costs nothing to
// add: every query node folds the whole log into its own file, so each needs its own
// cursor anyway. On restart the projector starts again at checkpoint + 1; batches the
// projection already holds are skipped by Projection.Apply, so replay never applies twice.
//
// What it guarantees: events are applied in stream order, each exactly once, and a batch
// is committed with the checkpoint that covers it or not at all. A failed commit or read
// stops progress and is retried from the checkpoint; it never skips an event. It only
// reads the log, and while it runs it is its node's only writer of the projection. It
// imports no store: it takes the log and the projection as the interfaces it declares
// (EventLog, Projection), which the stores implement.
package projector

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultMaxBatch = 500
	DefaultMaxWait  = time.Millisecond
)

// Config tunes the projector.
type Config struct {
	MaxBatch int // events per bbolt transaction, default DefaultMaxBatch
	// MaxWait is how long a partial batch, once the stream has nothing more pending, waits
	// for more; default DefaultMaxWait (1 ms). Batches grow by themselves under load (events pile up while
	// a commit syncs), so a long linger only adds latency to every read-your-writes.
	MaxWait time.Duration
	// RetryMin and RetryMax bound the backoff after a failed commit (disk full, say) or a
	// lost stream; the projector keeps retrying until ctx ends.
	RetryMin, RetryMax time.Duration
	// LagEvery is how often the stream's last sequence is read for the lag gauge, default 1 s.
	LagEvery time.Duration
	// Shredder, when set, destroys an erased applicant's data key before the batch
	// holding its applicantErased is folded (DESIGN.md section 14): the log this node
	// reads may be a copy (a restored backup, a standby's mirror) whose key ring still
	// holds the key, and the state must never say erased while this node can still open
	// the applicant's data. A failure stops the batch, which is retried.
	Shredder Shredder
	// Scrub, when set, overwrites the projection file's free pages after a batch that
	// folded an erasure is committed (DESIGN.md section 15, erasure leaves no link): the
	// pages that held the applicant's blind index keep it until reused. A failure (a
	// read held the freed pages too long) is logged and the scrub is tried again after
	// every batch until it succeeds. Nil: no scrub (read-only nodes, tests).
	Scrub func() error
}

// Shredder destroys erased applicants' data keys: *eventlog.Keyring.
type Shredder interface {
	// ShredApplicant destroys the applicant's data key in this node's key ring.
	// Idempotent. Errors: KindUnavailable (retry).
	ShredApplicant(ctx context.Context, app domain.AppKey, id domain.ApplicantID) error
}

func (c *Config) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.LagEvery <= 0 {
		c.LagEvery = time.Second
	}
}

// EventLog is what the projector follows: *eventlog.EventLog.
type EventLog interface {
	// Follow delivers every event from sequence from on, in order, without gaps or
	// repeats, in batches of at most maxBatch, until ctx ends; it returns ctx's error
	// then, and fn's error as it is. It survives reconnects by resuming after the last
	// event delivered. Errors: KindUnavailable once the connection is closed.
	Follow(ctx context.Context, from uint64, maxBatch int, maxWait time.Duration, fn func([]domain.Event) error) error
	// LastSeq returns the last sequence in the log (0 when empty). Errors:
	// KindUnavailable when the log does not answer.
	LastSeq(ctx context.Context) (uint64, error)
}

// Projection is what the projector folds into: *projection.Projection.
type Projection interface {
	// Checkpoint returns the last sequence applied; it does not block.
	Checkpoint() uint64
	// Apply folds a batch and commits it with the new checkpoint in one transaction,
	// skipping events at or below the checkpoint; on error nothing is applied.
	Apply(events []domain.Event, f *domain.Folder) ([]domain.Record, error)
	// Err reports a projection that can no longer serve (a damaged file).
	Err() error
}

// Projector owns the fold from one event log into one projection.
type Projector struct {
	events EventLog
	proj   Projection
	cfg    Config
	log    *zap.Logger

	last    atomic.Uint64 // stream's last sequence, as last read
	failing atomic.Bool   // the last commit or read failed and has not succeeded since
	// caughtUp is set once the projection has reached the log's end as Ready first saw it
	// (catchUpTo): until then a node that starts on an empty or old projection is not
	// ready, however small its lag, since it would answer 404 for applicants it has not
	// folded yet. After that the lag bound alone decides.
	caughtUp  atomic.Bool
	catchUpTo atomic.Uint64 // that end + 1; 0 until Ready first reads the log

	// Test hooks (nil in production): beforeApply runs before a batch is folded and
	// committed, afterCommit right after the commit, before the next batch is fetched. An
	// error from either is handled like a failed commit or a lost stream.
	beforeApply func(batch []domain.Event) error
	afterCommit func(last uint64) error

	lagSeqs  prometheus.Gauge
	lagHist  prometheus.Histogram
	applied  prometheus.Counter
	failures prometheus.Counter
	// forged counts events folded as unauthenticated: their MAC under the log key fails,
	// so something other than kycstate wrote them (DESIGN.md section 15). Any is alerted.
	forged prometheus.Counter

	scrubDue bool // an erasure was committed and its freed pages are not scrubbed yet; Run's own
}

// New returns a projector; reg may be nil.
func New(events EventLog, proj Projection, cfg Config, log *zap.Logger, reg prometheus.Registerer) *Projector {
	cfg.defaults()
	p := &Projector{
		events: events, proj: proj, cfg: cfg, log: log.Named("projector"),
		lagSeqs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_projector_lag_sequences",
			Help: "Stream sequences not yet applied to the projection.",
		}),
		lagHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kycstate_projector_receipt_to_queryable_seconds",
			Help:    "Seconds from an event's receipt by ingest to its commit in the projection.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_projector_events_applied_total",
			Help: "Events committed to the projection.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_projector_failures_total",
			Help: "Failed commits or stream reads; the projector retries each.",
		}),
		forged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_events_unauthenticated_total",
			Help: "Events folded as unauthenticated: their MAC under the log key fails, so kycstate did not write them. They change nothing; any is an alert.",
		}),
	}
	if reg != nil {
		reg.MustRegister(p.lagSeqs, p.lagHist, p.applied, p.failures, p.forged)
	}
	return p
}

// Run folds the log into the projection until ctx ends, and returns ctx's error. A failed
// commit or read is logged and retried from the checkpoint with backoff: the projector
// stops making progress, never skips.
func (p *Projector) Run(ctx context.Context) error {
	lagDone := make(chan struct{})
	go func() { defer close(lagDone); p.watchLag(ctx) }()
	defer func() { <-lagDone }()

	folder := domain.NewFolder()
	backoff := p.cfg.RetryMin
	for {
		from := p.proj.Checkpoint() + 1
		err := p.events.Follow(ctx, from, p.cfg.MaxBatch, p.cfg.MaxWait, func(batch []domain.Event) error {
			if p.beforeApply != nil {
				if err := p.beforeApply(batch); err != nil {
					return err
				}
			}
			if err := p.shred(ctx, batch); err != nil {
				return err
			}
			recs, err := p.proj.Apply(batch, folder)
			if err != nil {
				return err
			}
			p.committed(batch, recs)
			p.scrub(recs)
			backoff = p.cfg.RetryMin
			if p.afterCommit != nil {
				return p.afterCommit(batch[len(batch)-1].Seq)
			}
			return nil
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.failing.Store(true)
		p.failures.Inc()
		p.log.Error("projection stalled, retrying from checkpoint",
			zap.Uint64("checkpoint", p.proj.Checkpoint()), zap.Duration("retryIn", backoff), zap.Error(err))
		if err := clock.Sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

// shred destroys the keys of the applicants whose erasure batch holds, before the batch
// is folded; events the projection already holds are skipped, as Apply skips them.
func (p *Projector) shred(ctx context.Context, batch []domain.Event) error {
	if p.cfg.Shredder == nil {
		return nil
	}
	cp := p.proj.Checkpoint()
	for i := range batch {
		ev := &batch[i]
		if ev.Seq <= cp || ev.Type != domain.EventErased || ev.Origin != domain.OriginOperator {
			continue
		}
		if ev.Auth == domain.AuthFailed {
			// Not written by kycstate (its MAC fails): a forged erasure destroys nothing,
			// as the fold erases nothing for it (DESIGN.md section 15).
			continue
		}
		if err := p.cfg.Shredder.ShredApplicant(ctx, ev.AppKey, ev.ApplicantID); err != nil {
			return err
		}
	}
	return nil
}

// scrub runs Config.Scrub once recs hold an erasure, and after every batch until it
// succeeds. A failed scrub does not stop the fold: the erasure is committed, and what
// the free pages still hold is the index the file held before it.
func (p *Projector) scrub(recs []domain.Record) {
	if p.cfg.Scrub == nil {
		return
	}
	for _, r := range recs {
		if r.Outcome == domain.OutcomeErased {
			p.scrubDue = true
			break
		}
	}
	if !p.scrubDue {
		return
	}
	if err := p.cfg.Scrub(); err != nil {
		p.log.Warn("free pages of the projection not scrubbed after an erasure; retrying after the next batch", zap.Error(err))
		return
	}
	p.scrubDue = false
}

func (p *Projector) committed(batch []domain.Event, recs []domain.Record) {
	if p.failing.Swap(false) {
		p.log.Info("projection resumed", zap.Uint64("checkpoint", p.proj.Checkpoint()))
	}
	now := time.Now()
	for _, ev := range batch {
		p.lagHist.Observe(now.Sub(ev.ReceivedAt).Seconds())
	}
	p.applied.Add(float64(len(batch)))
	for _, r := range recs {
		if r.Outcome == domain.OutcomeUnauthenticated {
			p.forged.Inc()
			p.log.Warn("unauthenticated event folded with no effect: its MAC under the log key fails",
				zap.Uint64("seq", r.Seq), zap.String("applicantId", string(r.ApplicantID)))
		}
	}
	last := batch[len(batch)-1].Seq
	if last > p.last.Load() {
		p.last.Store(last)
	}
	p.lagSeqs.Set(float64(p.last.Load() - min(p.last.Load(), p.proj.Checkpoint())))
}

func (p *Projector) watchLag(ctx context.Context) {
	t := time.NewTicker(p.cfg.LagEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, p.cfg.LagEvery)
		last, err := p.events.LastSeq(rctx)
		cancel()
		if err == nil {
			p.last.Store(last)
			p.lagSeqs.Set(float64(last - min(last, p.proj.Checkpoint())))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lag returns how many sequences the projection is behind the stream, as last read.
func (p *Projector) Lag() uint64 {
	last, cp := p.last.Load(), p.proj.Checkpoint()
	return last - min(last, cp)
}

// ErrBehind is returned by Ready when the projection is further behind than allowed.
var ErrBehind = errors.New("projection is behind the event log")

// ErrCatchingUp is returned by Ready until the projection has first caught up with the log.
var ErrCatchingUp = errors.New("projection is catching up with the event log since the node started")

// Ready reports whether the log is reachable, the projection file is sound, and the
// projection is within maxLag sequences of the log and not stalled.
func (p *Projector) Ready(ctx context.Context, maxLag uint64) error {
	last, err := p.events.LastSeq(ctx)
	if err != nil {
		return domain.E("projector.Ready", domain.KindUnavailable, err)
	}
	if err := p.proj.Err(); err != nil {
		return domain.E("projector.Ready", domain.KindUnavailable, err)
	}
	if p.failing.Load() {
		return domain.E("projector.Ready", domain.KindUnavailable, "projection commits are failing")
	}
	cp := p.proj.Checkpoint()
	if !p.caughtUp.Load() {
		p.catchUpTo.CompareAndSwap(0, last+1)
		if cp+1 < p.catchUpTo.Load() {
			return domain.E("projector.Ready", domain.KindUnavailable, ErrCatchingUp)
		}
		p.caughtUp.Store(true)
	}
	if last > cp+maxLag {
		return domain.E("projector.Ready", domain.KindUnavailable, ErrBehind)
	}
	return nil
}
