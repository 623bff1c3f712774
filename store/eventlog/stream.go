package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Stream and subject names (DESIGN.md sections 3 and 4).
const (
	EventStream    = "KYC_EVENTS"
	EventSubjects  = "kyc.events.>"
	RejectStream   = "KYC_REJECTS"
	RejectSubjects = "kyc.rejects.>"
)

// Defaults of Config.
const (
	// DefaultDuplicateWindow is how long the stream remembers a Nats-Msg-Id. Allpass
	// retries a delivery for hours (10 attempts, exponential backoff from 30 s), so a
	// day covers every retry of one delivery.
	DefaultDuplicateWindow = 24 * time.Hour
	// DefaultRejectsMaxBytes bounds KYC_REJECTS; the oldest rejects go first.
	// JetStream reserves it on disk when the stream is created, so it is kept small
	// enough for a modest disk; at about 2 KiB a reject it holds some 30,000 webhooks.
	DefaultRejectsMaxBytes = 64 << 20
	// DefaultRejectsMaxAge is how long a refused webhook is kept: long enough for an
	// operator to notice a misconfigured key over a weekend and reprocess, short enough
	// that personal data in refused bodies does not pile up.
	DefaultRejectsMaxAge = 7 * 24 * time.Hour

	// rejectsDuplicateWindow is short: rejects carry no natural message id, and the
	// window only needs to absorb the client's own publish retries.
	rejectsDuplicateWindow = time.Minute

	// HeaderType carries the event type beside the message, so tools can filter on it
	// without decoding (DESIGN.md section 3: the type is not a subject token).
	HeaderType = "Kyc-Type"
)

// Config holds the stream settings that come from configuration.
type Config struct {
	Replicas        int           // 1 embedded, 3 on a cluster
	DuplicateWindow time.Duration // default 24h
	RejectsMaxBytes int64         // size bound of KYC_REJECTS, default 64 MiB
	// RejectsMaxAge is how long KYC_REJECTS keeps a refused webhook, default 7 days:
	// its body holds personal data, readable with the app's key.
	RejectsMaxAge time.Duration
	// Keys, when set, opens the data-key ring (KYC_KEYS), and Append seals every event
	// under it (stored version 2). Nil: events are stored in clear (version 1).
	Keys *MasterKeys
	// KeyCache tunes the ring's cache of unwrapped keys.
	KeyCache KeyringConfig
	// AfterKeysWrite, when set, runs after each write of new data keys to KYC_KEYS, once
	// they are stored and before any event sealed under them is: a test hook (the crash
	// tests stop there and kill the process between the two writes). Nil in production.
	AfterKeysWrite func(ctx context.Context)
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.RejectsMaxBytes <= 0 {
		c.RejectsMaxBytes = DefaultRejectsMaxBytes
	}
	if c.RejectsMaxAge <= 0 {
		c.RejectsMaxAge = DefaultRejectsMaxAge
	}
	return c
}

// EventLog is the JetStream stream of webhooks. Its methods are safe for concurrent use.
// It is a domain.EventSource.
type EventLog struct {
	conn    *Conn
	js      jetstream.JetStream
	events  jetstream.Stream
	rejects jetstream.Stream
	keys    *Keyring // nil: events stored in clear
	cfg     Config
	log     *zap.Logger
	// atomic: KYC_EVENTS takes atomic batches (AppendBatch); false only when an existing
	// stream could not be updated to allow them, and then AppendBatch publishes one by one.
	atomic bool
	// rollup: KYC_REJECTS allows subject rollups, which keep the samples in their ring
	// (rejects.go); false only when an existing stream could not be updated to allow
	// them, and then samples are not kept.
	rollup  bool
	samples *sampleRing

	readIdle       time.Duration // defaultReadIdle; tests shorten it
	requestTimeout time.Duration // defaultRequestTimeout; tests shorten it
}

// EventStreamConfig is KYC_EVENTS as DESIGN.md section 4 specifies it: file storage,
// limits retention with no age, size or count limit, and Discard New, so history is
// never evicted (a full disk refuses new writes, which ingest answers with 503, rather
// than dropping old events).
func EventStreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:              EventStream,
		Description:       "kycstate event log: every accepted Allpass webhook, the source of truth",
		Subjects:          []string{EventSubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		Discard:           jetstream.DiscardNew,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Duplicates:        cfg.DuplicateWindow,
		AllowDirect:       true,
		// Group commit (ingest, AppendBatch) sends many webhooks as one atomic batch: one
		// write and one fsync for all of them, all stored or none.
		AllowAtomicPublish: true,
	}
}

// RejectStreamConfig is KYC_REJECTS: refused webhooks, kept so a misconfigured key loses
// nothing. It is bounded by size with Discard Old: when full, the oldest rejects are
// dropped to make room, because the newest are the ones an operator still needs to
// reprocess, and a flood of garbage must not fill the disk the event log lives on.
// Garbage cannot take that room either: what no key authenticated is kept in a ring of
// fixed size (rejects.go), which subject rollups (AllowRollup) keep at one message a
// subject.
func RejectStreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:              RejectStream,
		Description:       "kycstate refused webhooks, size-bounded, oldest dropped first",
		Subjects:          []string{RejectSubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          cfg.RejectsMaxBytes,
		MaxAge:            cfg.RejectsMaxAge,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Duplicates:        rejectsDuplicateWindow,
		AllowDirect:       true,
		AllowRollup:       true,
	}
}

// Open creates or updates KYC_EVENTS and KYC_REJECTS idempotently. Settings of an
// existing stream that differ from cfg are logged, not overwritten, with one exception.
//
// A stream that exists is not otherwise updated: changing retention or discard on the
// source of truth is an operator's decision, so each difference is logged as a warning
// (one per setting) and the stream is used as it is. The exception is atomic batch
// publish on KYC_EVENTS, which only adds a way to write and changes nothing stored: a
// stream made by an earlier version is updated to allow it, so group commit works on
// old data dirs too. If that update fails, Open logs it and the log appends one message
// at a time. Errors: KindInvalid when the server refuses
// the configuration (say replicas 3 on a single server), KindUnavailable otherwise.
func Open(ctx context.Context, c *Conn, cfg Config, log *zap.Logger) (*EventLog, error) {
	const op = "eventlog.Open"
	if c == nil || c.JS == nil {
		return nil, domain.E(op, domain.KindInvalid, "no NATS connection")
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	l := &EventLog{conn: c, js: c.JS, cfg: cfg, log: log.Named("eventlog"), samples: newSampleRing(sampleSlots(cfg.RejectsMaxBytes)),
		readIdle: defaultReadIdle, requestTimeout: defaultRequestTimeout}
	var err error
	if l.events, err = l.ensureStream(ctx, op, EventStreamConfig(cfg)); err != nil {
		return nil, err
	}
	l.events, l.atomic = l.allowAtomic(ctx, l.events)
	if l.rejects, err = l.ensureStream(ctx, op, RejectStreamConfig(cfg)); err != nil {
		return nil, err
	}
	if err := l.updateRejects(ctx, op); err != nil {
		return nil, err
	}
	if cfg.Keys != nil {
		if l.keys, err = openKeyring(ctx, l, *cfg.Keys, cfg.KeyCache); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Keys returns the log's data-key ring, nil when it was opened without master keys.
func (l *EventLog) Keys() *Keyring { return l.keys }

// updateRejects brings an existing KYC_REJECTS to two settings of this version. Unlike
// the event log's settings these are updated: the age bound (nats.rejects_max_age) is
// what keeps refused bodies, personal data, from being kept forever, and a stream
// created before it had none; subject rollups keep the samples of unauthenticated
// requests in their ring, and allowing them changes nothing already stored (subjects,
// limits and the rejects kept before are left as they are). An update refused for the
// age is an error; refused for rollups, it is logged and samples are not kept, so junk
// still cannot evict authenticated rejects.
func (l *EventLog) updateRejects(ctx context.Context, op string) error {
	have := l.rejects.CachedInfo().Config
	l.rollup = have.AllowRollup
	if have.MaxAge == l.cfg.RejectsMaxAge && have.AllowRollup {
		return nil
	}
	if have.MaxAge != l.cfg.RejectsMaxAge {
		have.MaxAge = l.cfg.RejectsMaxAge
		s, err := l.js.UpdateStream(ctx, have)
		if err != nil {
			return streamErr(op, RejectStream, err)
		}
		l.log.Info("stream max age updated", zap.String("stream", RejectStream), zap.Duration("maxAge", have.MaxAge))
		l.rejects = s
	}
	if !have.AllowRollup {
		have.AllowRollup = true
		s, err := l.js.UpdateStream(ctx, have)
		if err != nil {
			l.log.Warn("stream not updated to allow rollups; samples of unauthenticated requests are not kept",
				zap.String("stream", RejectStream), zap.Error(err))
			return nil
		}
		l.log.Info("stream updated to allow rollups", zap.String("stream", RejectStream))
		l.rejects, l.rollup = s, true
	}
	return nil
}

func (l *EventLog) ensureStream(ctx context.Context, op string, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := l.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = l.js.CreateStream(ctx, want)
		if err == nil {
			l.log.Info("stream created", zap.String("stream", want.Name),
				zap.Int("replicas", want.Replicas), zap.Duration("duplicates", want.Duplicates))
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, streamErr(op, want.Name, err)
		}
		// Another node created it between our look-up and create: use theirs.
		s, err = l.js.Stream(ctx, want.Name)
	}
	if err != nil {
		return nil, streamErr(op, want.Name, err)
	}
	if s.CachedInfo().Config.Mirror != nil {
		// A standby's mirror: configured as a mirror, written only by it (standby.go).
		l.log.Info("stream is a mirror: this node reads a standby", zap.String("stream", want.Name),
			zap.String("origin", s.CachedInfo().Config.Mirror.Name))
		return s, nil
	}
	for _, d := range StreamDifferences(want, s.CachedInfo().Config) {
		if want.Name == RejectStream && (d.Setting == "max_age" || d.Setting == "allow_rollup") {
			continue // updated by updateRejects
		}
		l.log.Warn("stream setting differs from configuration; left unchanged",
			zap.String("stream", want.Name), zap.String("setting", d.Setting),
			zap.String("want", d.Want), zap.String("have", d.Have))
	}
	return s, nil
}

// allowAtomic updates an existing KYC_EVENTS that does not allow atomic batches to allow
// them, leaving every other setting as the stream has it. It reports whether the stream
// now allows them.
func (l *EventLog) allowAtomic(ctx context.Context, s jetstream.Stream) (jetstream.Stream, bool) {
	have := s.CachedInfo().Config
	if have.AllowAtomicPublish {
		return s, true
	}
	if have.Mirror != nil {
		return s, false // a mirror takes no publishes; Promote configures it
	}
	have.AllowAtomicPublish = true
	updated, err := l.js.UpdateStream(ctx, have)
	if err != nil {
		l.log.Warn("stream not updated to allow atomic batches; appending one message at a time",
			zap.String("stream", have.Name), zap.Error(err))
		return s, false
	}
	l.log.Info("stream updated to allow atomic batches", zap.String("stream", have.Name))
	return updated, true
}

func streamErr(op, name string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 400 {
		return domain.E(op, domain.KindInvalid, fmt.Errorf("stream %s: %w", name, err))
	}
	return domain.E(op, domain.KindUnavailable, fmt.Errorf("stream %s: %w", name, err))
}

// Difference is one stream setting whose value is not the configured one.
type Difference struct {
	Setting    string
	Want, Have string
}

// StreamDifferences compares the settings kycstate relies on; other settings (placement,
// description, metadata) are the operator's business.
func StreamDifferences(want, have jetstream.StreamConfig) []Difference {
	var ds []Difference
	check := func(setting string, w, h any) {
		ws, hs := fmt.Sprint(w), fmt.Sprint(h)
		if ws != hs {
			ds = append(ds, Difference{Setting: setting, Want: ws, Have: hs})
		}
	}
	check("subjects", want.Subjects, have.Subjects)
	check("storage", want.Storage, have.Storage)
	check("retention", want.Retention, have.Retention)
	check("max_age", want.MaxAge, have.MaxAge)
	check("discard", want.Discard, have.Discard)
	check("duplicate_window", want.Duplicates, have.Duplicates)
	check("num_replicas", want.Replicas, have.Replicas)
	check("max_msgs", want.MaxMsgs, have.MaxMsgs)
	check("max_bytes", want.MaxBytes, have.MaxBytes)
	check("max_msgs_per_subject", want.MaxMsgsPerSubject, have.MaxMsgsPerSubject)
	check("allow_direct", want.AllowDirect, have.AllowDirect)
	check("allow_atomic", want.AllowAtomicPublish, have.AllowAtomicPublish)
	check("allow_rollup", want.AllowRollup, have.AllowRollup)
	return ds
}

var _ domain.EventSource = (*EventLog)(nil)
