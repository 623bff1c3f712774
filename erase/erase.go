// Package erase erases applicants' personal data by crypto-shredding (DESIGN.md section
// 11): on an operator's request (the API's POST /v1/applicants/{id}/erase, `kycstate
// erase`) and by retention (retention.erase_after), in the query node's background loop.
//
// The order of effects is the contract. First the ring records the erasure as under way
// and writes the applicant's tombstone (from then on no key is made for it, and its new
// events are stored without personal fields); then applicantErased is appended to the
// log, so the decision trail says who erased and why before anything is gone; then the
// data key is destroyed (securely deleted from KYC_KEYS); then the applicant's
// authenticated rejects are securely deleted from KYC_REJECTS (a refused webhook opens
// with the app's key, not the data key, so destroying the key does not reach it); last
// the record of the erasure under way is removed. A crash or a refused deletion anywhere in between leaves that
// record, and Run finishes the erasure from it, on restart too: the append is repeated
// under the same message id (the log drops the repeat), the deletion is idempotent.
//
// So a key is never destroyed before the log holds the erasure, and an erasure once begun
// is never left half done. Retention erases nothing while the projection is behind the
// log: a projection that has not folded an applicant's latest event would take an active
// applicant for an old one.
package erase

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	// DefaultRetryEvery is how often erasures whose key is not destroyed yet are retried.
	DefaultRetryEvery = 30 * time.Second
	// DefaultSweepEvery is how often the retention sweep runs when retention is on: the
	// bound is years, so an hour late is nothing, and a sweep reads every state.
	DefaultSweepEvery = time.Hour
)

// Variables for tests.
var (
	// sweepCatchUp bounds a retention sweep's wait for the projection to fold the log.
	sweepCatchUp = time.Minute
	// sweepPage is how many states one sweep reads per projection transaction.
	sweepPage = 500
	// sweepRecheck is how often a long sweep asks MayRun again, between pages: the lease
	// behind it is taken for a round and a minute, and a sweep of many applicants can
	// outlast that; asking again renews it, or stops the sweep once another node holds it.
	sweepRecheck = time.Minute
)

// EventLog is where erasures are appended: *eventlog.EventLog.
type EventLog interface {
	// Append stores ev under the message id msgID once the log acknowledges it, and
	// returns its sequence (the original's for a repeated msgID). Errors:
	// KindUnavailable when the write cannot be confirmed.
	Append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error)
	// LastSeq returns the log's last sequence (0 when empty). Errors: KindUnavailable.
	LastSeq(ctx context.Context) (uint64, error)
}

// Keyring is the erasure lifecycle of the log's key ring: *eventlog.Keyring. Each step
// is idempotent, so an erasure interrupted anywhere is finished by repeating them.
type Keyring interface {
	// BeginErasure records an erasure under way and writes the applicant's tombstone;
	// one already under way is returned as it is. Errors: KindUnavailable.
	// The applicant is (p, app, id) (DESIGN.md section 13). Errors: KindInvalid for a
	// provider, app or id that makes no subject.
	BeginProviderErasure(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, by, reason string) (eventlog.Erasure, error)
	// DestroyProviderKey securely deletes the applicant's data key (its provider's key
	// subject). Errors: KindUnavailable when a deletion is not confirmed.
	DestroyProviderKey(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID) error
	// EndErasure removes the record of an erasure whose key is destroyed.
	EndErasure(ctx context.Context, e eventlog.Erasure) error
	// PendingErasures lists the erasures begun whose key is not destroyed yet.
	PendingErasures(ctx context.Context) ([]eventlog.Erasure, error)
}

// Rejects is where refused webhooks are kept: *eventlog.EventLog.
type Rejects interface {
	// DeleteRejects securely deletes every reject kept whole under the applicant (app,
	// id): those whose signature verified and whose payload named it. It returns how
	// many, and is idempotent. Errors: KindUnavailable when a deletion is not confirmed.
	DeleteProviderRejects(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID) (int, error)
}

// Projection is what the retention sweep reads: *projection.Projection.
type Projection interface {
	// WaitFor blocks until the projection has applied seq or ctx ends, and returns the
	// checkpoint then.
	WaitFor(ctx context.Context, seq uint64) uint64
	// States returns up to limit states in applicant key order after cursor ("" from the
	// start), and the next cursor ("" at the end).
	States(cursor domain.ApplicantKey, limit int) ([]domain.State, domain.ApplicantKey, error)
}

// Config holds an Eraser's dependencies.
type Config struct {
	// Events is the event log, and Keys its key ring (the log opened with
	// eventlog.Config.Keys). Both required.
	Events EventLog
	Keys   Keyring
	// Rejects is where the applicant's refused webhooks are deleted from (the same log).
	// Required.
	Rejects Rejects
	// Projection, when set, is what the retention sweep reads (last event times).
	Projection Projection
	// EraseAfter (retention.erase_after) erases applicants whose last event is older
	// than this; 0 switches retention off.
	EraseAfter time.Duration
	// SweepEvery and RetryEvery pace Run (defaults DefaultSweepEvery, DefaultRetryEvery).
	SweepEvery, RetryEvery time.Duration
	// MayRun, when set, says whether this node may sweep now: on a cluster the nodes
	// share a lease so that one sweeps at a time (the JetStream KV lease of
	// reconciliation, DESIGN.md section 10). Nil: this node always may.
	MayRun func(ctx context.Context) (bool, error)
	Logger *zap.Logger
	// Metrics receives kycstate_erasures_total and kycstate_erasures_pending. Nil: a
	// private registry.
	Metrics prometheus.Registerer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// AfterAppend, for tests of crash recovery only, runs between the append of
	// applicantErased and the destruction of the key; an error stops the erasure there,
	// as a crash would.
	AfterAppend func(ctx context.Context) error
}

// Eraser erases applicants. Safe for concurrent use.
type Eraser struct {
	cfg     Config
	ring    Keyring
	log     *zap.Logger
	total   *prometheus.CounterVec
	pending prometheus.Gauge
}

// Results counted by kycstate_erasures_total.
const (
	ResultErased  = "erased"  // applicantErased appended and the key destroyed
	ResultPending = "pending" // appended; the key's destruction is retried
	ResultFailed  = "failed"  // not appended: nothing erased yet
)

// New builds an Eraser. Errors: KindInvalid without the log or its key ring;
// KindConflict when the metrics are registered twice.
func New(cfg Config) (*Eraser, error) {
	const op = "erase.New"
	if cfg.Events == nil || cfg.Keys == nil || cfg.Rejects == nil {
		return nil, domain.E(op, domain.KindInvalid, "erasure needs the event log with its key ring (keys.master) and its rejects")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = DefaultSweepEvery
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = DefaultRetryEvery
	}
	e := &Eraser{cfg: cfg, ring: cfg.Keys, log: cfg.Logger.Named("erase"),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kycstate_erasures_total",
			Help: "Erasures by result: erased (key destroyed), pending (appended, key destruction retried), failed (nothing appended)."},
			[]string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kycstate_erasures_pending",
			Help: "Erasures appended whose data key is not destroyed yet; retried until done."}),
	}
	for _, c := range []prometheus.Collector{e.total, e.pending} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, domain.E(op, domain.KindConflict, err)
		}
	}
	for _, r := range []string{ResultErased, ResultPending, ResultFailed} {
		e.total.WithLabelValues(r)
	}
	return e, nil
}

// Erase erases applicant (app, id): by names who asked (a token's name, "retention"),
// reason why. It returns the sequence of applicantErased and pending when the key's
// destruction did not complete (Run retries it). Errors: KindUnavailable when the
// erasure could not be recorded or appended (retry; an erasure already recorded is
// finished by Run); KindInvalid for bad ids.
func (e *Eraser) Erase(ctx context.Context, app domain.AppKey, id domain.ApplicantID, by, reason string) (seq uint64, pending bool, err error) {
	return e.EraseProvider(ctx, domain.ProviderAllpass, app, id, by, reason)
}

// EraseProvider is Erase for an applicant of provider p (DESIGN.md section 13): its
// applicantErased names p and app, and the key destroyed and rejects deleted are that
// provider's applicant's.
func (e *Eraser) EraseProvider(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, by, reason string) (seq uint64, pending bool, err error) {
	p = domain.ProviderOf(string(p))
	if !p.Valid() {
		err := domain.E("erase.Erase", domain.KindInvalid, "unknown provider "+string(p))
		e.failed(id, by, "", err)
		return 0, false, err
	}
	er, err := e.ring.BeginProviderErasure(ctx, p, app, id, by, reason)
	if err != nil {
		e.failed(id, by, "erasure not recorded; nothing erased", err)
		return 0, false, err
	}
	seq, err = e.finish(ctx, er)
	switch {
	case seq == 0:
		// Recorded: Run finishes it (kycstate_erasures_pending counts it meanwhile).
		e.failed(id, by, "erasure recorded but not appended; retrying", err)
		return 0, false, err
	case err != nil:
		e.total.WithLabelValues(ResultPending).Inc()
		e.pending.Inc()
		e.log.Warn("erasure appended, data key not destroyed yet; retrying", zap.String("applicantId", string(id)), zap.Error(err))
		return seq, true, nil
	}
	e.total.WithLabelValues(ResultErased).Inc()
	e.log.Info("applicant erased", zap.String("applicantId", string(id)), zap.String("by", by), zap.Uint64("seq", seq))
	return seq, false, nil
}

// failed counts an erasure that appended nothing and logs it: the alert on
// kycstate_erasures_total{result="failed"} sends an operator to this line, which names
// the applicant (an invalid id is the caller's error, not the service's, and is only
// counted).
func (e *Eraser) failed(id domain.ApplicantID, by, msg string, err error) {
	e.total.WithLabelValues(ResultFailed).Inc()
	if domain.KindOf(err) != domain.KindInvalid {
		e.log.Error(msg, zap.String("applicantId", string(id)), zap.String("by", by), zap.Error(err))
	}
}

// finish runs the steps after BeginErasure: append, destroy the key, delete the
// rejects, end. seq is 0 when the append did not happen.
func (e *Eraser) finish(ctx context.Context, er eventlog.Erasure) (seq uint64, err error) {
	seq, err = e.appendErased(ctx, er)
	if err != nil {
		return 0, err
	}
	if e.cfg.AfterAppend != nil {
		if err := e.cfg.AfterAppend(ctx); err != nil {
			return seq, err
		}
	}
	p := domain.ProviderOf(string(er.Provider))
	if err := e.ring.DestroyProviderKey(ctx, p, er.AppKey, er.ApplicantID); err != nil {
		return seq, err
	}
	n, err := e.cfg.Rejects.DeleteProviderRejects(ctx, p, er.AppKey, er.ApplicantID)
	if err != nil {
		return seq, err
	}
	if n > 0 {
		e.log.Info("rejects of the erased applicant deleted", zap.String("applicantId", string(er.ApplicantID)), zap.Int("rejects", n))
	}
	if err := e.ring.EndErasure(ctx, er); err != nil {
		// The key is gone; the record left behind only makes Run repeat harmless steps.
		e.log.Warn("erasure done, its record not removed", zap.String("applicantId", string(er.ApplicantID)), zap.Error(err))
	}
	return seq, nil
}

// appendErased appends applicantErased for er. Its message id is derived from the
// erasure's record, so finishing the same erasure again appends nothing new (within
// the log's duplicate window; past it, a second applicantErased, which is harmless).
func (e *Eraser) appendErased(ctx context.Context, er eventlog.Erasure) (uint64, error) {
	payload, err := json.Marshal(struct {
		By     string    `json:"by"`
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	}{er.By, er.Reason, er.At.UTC()})
	if err != nil {
		return 0, domain.E("erase.append", domain.KindInternal, err)
	}
	now := e.cfg.Now().UTC()
	p := domain.ProviderOf(string(er.Provider))
	ev := &domain.Event{Provider: string(p), Origin: domain.OriginOperator, AppKey: er.AppKey, ApplicantID: er.ApplicantID,
		Type: domain.EventErased, EventAt: er.At.UTC(), EventAtSource: domain.SourceReceived, ReceivedAt: now, Payload: payload}
	h := sha256.New()
	if p != domain.ProviderAllpass {
		// Another provider's applicant may share app and id with an Allpass one's record.
		h.Write([]byte("provider\x00" + string(p) + "\x00"))
	}
	h.Write([]byte("kycstate erase\x00" + string(er.AppKey) + "\x00" + string(er.ApplicantID) + "\x00" + strconv.FormatUint(er.Seq, 10)))
	seq, _, err := e.cfg.Events.Append(ctx, ev, hex.EncodeToString(h.Sum(nil)))
	return seq, err
}

// ResumePending finishes every erasure under way (a crash, a refused deletion). It
// returns how many it finished and sets kycstate_erasures_pending to what is left.
func (e *Eraser) ResumePending(ctx context.Context) (int, error) {
	ers, err := e.ring.PendingErasures(ctx)
	if err != nil {
		return 0, err
	}
	done, left := 0, 0
	var firstErr error
	for _, er := range ers {
		if _, err := e.finish(ctx, er); err != nil {
			left++
			firstErr = cmpErr(firstErr, err)
			continue
		}
		done++
		e.total.WithLabelValues(ResultErased).Inc()
		e.log.Info("pending erasure finished", zap.String("applicantId", string(er.ApplicantID)), zap.String("by", er.By))
	}
	e.pending.Set(float64(left))
	return done, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Sweep erases every applicant not yet erased whose last event is older than
// EraseAfter (retention). It returns how many it erased. Off (0, nil) without
// EraseAfter or a projection.
//
// With MayRun set, a sweep that lasts asks it again now and then (sweepRecheck), which
// renews a lease behind it, and stops with KindConflict once it says no.
//
// It first waits (at most sweepCatchUp) for the projection to fold everything the log
// holds: a last event time read from a projection behind the log may be older than the
// applicant's real last event, and an erasure cannot be undone. Behind after the wait,
// it erases nothing and returns KindUnavailable (the next round tries again).
func (e *Eraser) Sweep(ctx context.Context) (int, error) {
	const op = "erase.Sweep"
	if e.cfg.EraseAfter <= 0 || e.cfg.Projection == nil {
		return 0, nil
	}
	last, err := e.cfg.Events.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, sweepCatchUp)
	cp := e.cfg.Projection.WaitFor(wctx, last)
	cancel()
	if cp < last {
		return 0, domain.E(op, domain.KindUnavailable, fmt.Sprintf(
			"the projection is at seq %d and the log at %d: applicants' last events may not all be folded; nothing erased", cp, last))
	}
	cutoff := e.cfg.Now().Add(-e.cfg.EraseAfter)
	n := 0
	var cursor domain.ApplicantKey
	checked := time.Now()
	for {
		if e.cfg.MayRun != nil && time.Since(checked) >= sweepRecheck {
			ok, err := e.cfg.MayRun(ctx)
			if err != nil {
				return n, err
			}
			if !ok {
				return n, domain.E(op, domain.KindConflict, "another node holds the retention lease now; it sweeps")
			}
			checked = time.Now()
		}
		page, next, err := e.cfg.Projection.States(cursor, sweepPage)
		if err != nil {
			return n, err
		}
		for _, st := range page {
			if st.Erased || st.LastEventAt.IsZero() || !st.LastEventAt.Before(cutoff) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return n, err
			}
			reason := fmt.Sprintf("retention: last event at %s, older than retention.erase_after (%s)",
				st.LastEventAt.UTC().Format(time.RFC3339), e.cfg.EraseAfter)
			if _, _, err := e.EraseProvider(ctx, st.Provider, st.AppKey, st.ApplicantID, "retention", reason); err != nil {
				return n, err
			}
			n++
		}
		if next == "" {
			return n, nil
		}
		cursor = next
	}
}

// Run finishes pending erasures at once and then every RetryEvery, and sweeps for
// retention at once and then every SweepEvery (when this node may), until ctx ends; it
// returns nil then. The first sweep runs at start so that retention switched on, or a
// node restarted, acts without waiting a whole period.
// Failures are logged and retried on the next round, never fatal.
func (e *Eraser) Run(ctx context.Context) error {
	retry := time.NewTicker(e.cfg.RetryEvery)
	defer retry.Stop()
	var sweep <-chan time.Time
	if e.cfg.EraseAfter > 0 && e.cfg.Projection != nil {
		t := time.NewTicker(e.cfg.SweepEvery)
		defer t.Stop()
		sweep = t.C
	}
	e.resume(ctx)
	if sweep != nil {
		e.sweep(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			e.resume(ctx)
		case <-sweep:
			e.sweep(ctx)
		}
	}
}

func (e *Eraser) resume(ctx context.Context) {
	if _, err := e.ResumePending(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("pending erasures not all finished; retrying", zap.Error(err))
	}
}

func (e *Eraser) sweep(ctx context.Context) {
	if e.cfg.MayRun != nil {
		ok, err := e.cfg.MayRun(ctx)
		if err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				e.log.Warn("retention sweep: lease not checked", zap.Error(err))
			}
			return
		}
	}
	n, err := e.Sweep(ctx)
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		e.log.Warn("retention sweep stopped; next round retries", zap.Int("erased", n), zap.Error(err))
	case n > 0:
		e.log.Info("retention sweep erased applicants", zap.Int("erased", n))
	}
}
