package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
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
	// DefaultAppendTimeout bounds the wait for a PubAck.
	DefaultAppendTimeout = 5 * time.Second

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
	AppendTimeout   time.Duration // how long Append waits for the PubAck, default 5 s
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
	if c.AppendTimeout <= 0 {
		c.AppendTimeout = DefaultAppendTimeout
	}
	return c
}

// EventLog is the JetStream stream of webhooks. Its methods are safe for concurrent use.
type EventLog struct {
	conn    *Conn
	js      jetstream.JetStream
	events  jetstream.Stream
	rejects jetstream.Stream
	cfg     Config
	log     *zap.Logger

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
	}
}

// RejectStreamConfig is KYC_REJECTS: refused webhooks, kept so a misconfigured key loses
// nothing. It is bounded by size with Discard Old: when full, the oldest rejects are
// dropped to make room, because the newest are the ones an operator still needs to
// reprocess, and a flood of garbage must not fill the disk the event log lives on.
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
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Duplicates:        rejectsDuplicateWindow,
		AllowDirect:       true,
	}
}

// Open creates or updates KYC_EVENTS and KYC_REJECTS idempotently. Settings of an
// existing stream that differ from cfg are logged, not overwritten.
//
// A stream that exists is never updated: changing retention or discard on the source of
// truth is an operator's decision, so each difference is logged as a warning (one per
// setting) and the stream is used as it is. Errors: KindInvalid when the server refuses
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
	l := &EventLog{conn: c, js: c.JS, cfg: cfg, log: log.Named("eventlog"),
		readIdle: defaultReadIdle, requestTimeout: defaultRequestTimeout}
	var err error
	if l.events, err = l.ensureStream(ctx, op, EventStreamConfig(cfg)); err != nil {
		return nil, err
	}
	if l.rejects, err = l.ensureStream(ctx, op, RejectStreamConfig(cfg)); err != nil {
		return nil, err
	}
	return l, nil
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
	for _, d := range StreamDifferences(want, s.CachedInfo().Config) {
		l.log.Warn("stream setting differs from configuration; left unchanged",
			zap.String("stream", want.Name), zap.String("setting", d.Setting),
			zap.String("want", d.Want), zap.String("have", d.Have))
	}
	return s, nil
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
	return ds
}

// Subject returns kyc.events.allpass.<appKey>.<applicantId>. Both ids must already be
// validated UUIDs; Subject refuses anything else with KindInvalid.
func Subject(app domain.AppKey, id domain.ApplicantID) (string, error) {
	const op = "eventlog.Subject"
	if !domain.IsCanonicalUUID(string(app)) {
		return "", domain.E(op, domain.KindInvalid, "appKey is not a lower-case UUID")
	}
	if !domain.IsCanonicalUUID(string(id)) {
		return "", domain.E(op, domain.KindInvalid, "applicantId is not a lower-case UUID")
	}
	return "kyc.events.allpass." + string(app) + "." + string(id), nil
}

// Append stores ev with the Nats-Msg-Id msgID and returns its sequence once the stream
// has acknowledged it (PubAck). dup is true when the stream recognised msgID inside its
// duplicate window; seq is then the original's. Errors: KindUnavailable when the stream
// cannot confirm in time (the caller must not claim the write), KindInvalid for bad ids.
// On success ev.Seq and ev.Stored are set.
//
// Append stamps ev.V with domain.StoredVersion (the format this build writes) and
// refuses an event that claims another version. For a duplicate, ev is replaced by the
// original as stored (its receivedAt is the first delivery's), so ev.Stored is always
// the exact bytes at ev.Seq; if the original cannot be read back, ev.Stored is nil.
// KindTooLarge when the message exceeds the server's maximum payload.
func (l *EventLog) Append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error) {
	const op = "eventlog.EventLog.Append"
	if ev == nil {
		return 0, false, domain.E(op, domain.KindInvalid, "no event")
	}
	if msgID == "" {
		return 0, false, domain.E(op, domain.KindInvalid, "empty message id")
	}
	subject, err := Subject(ev.AppKey, ev.ApplicantID)
	if err != nil {
		return 0, false, domain.E(op, domain.KindInvalid, err)
	}
	switch ev.V {
	case 0:
		ev.V = domain.StoredVersion
	case domain.StoredVersion:
	default:
		return 0, false, domain.E(op, domain.KindInvalid,
			fmt.Sprintf("event version %d; this build writes %d", ev.V, domain.StoredVersion))
	}
	data, err := appendStoredEvent(make([]byte, 0, 512+len(ev.Payload)+rawLen(ev)), ev)
	if err != nil {
		return 0, false, domain.E(op, domain.KindInvalid, err)
	}
	if max := l.conn.NC.MaxPayload(); max > 0 && int64(len(data)) > max {
		return 0, false, domain.E(op, domain.KindTooLarge,
			fmt.Sprintf("stored event of %d bytes exceeds the server's maximum payload %d", len(data), max))
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderType, headerValue(string(ev.Type)))

	ctx, cancel := context.WithTimeout(ctx, l.cfg.AppendTimeout)
	defer cancel()
	ack, err := l.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(EventStream))
	if err != nil {
		return 0, false, publishErr(op, err)
	}
	if ack.Stream != EventStream {
		// Stored, but not where the log reads: a second stream claims kyc.events.>.
		return 0, false, domain.E(op, domain.KindInternal,
			fmt.Sprintf("acknowledged by stream %q, not %s", ack.Stream, EventStream))
	}
	if ack.Duplicate {
		l.loadOriginal(ctx, ev, ack.Sequence)
		return ack.Sequence, true, nil
	}
	ev.Seq, ev.Stored = ack.Sequence, data
	return ack.Sequence, false, nil
}

func rawLen(ev *domain.Event) int {
	if ev.Raw == nil {
		return 0
	}
	return len(ev.Raw.Body) + len(ev.Raw.Signature) + 64
}

// loadOriginal replaces ev with the message stored at seq. The duplicate is already
// confirmed, so a failure here only leaves ev.Stored nil.
func (l *EventLog) loadOriginal(ctx context.Context, ev *domain.Event, seq uint64) {
	ev.Seq, ev.Stored = seq, nil
	m, err := l.events.GetMsg(ctx, seq)
	if err != nil {
		l.log.Warn("duplicate's original not readable", zap.Uint64("seq", seq), zap.Error(err))
		return
	}
	orig, err := decodeEvent(seq, m.Data)
	if err != nil {
		l.log.Warn("duplicate's original not decodable", zap.Uint64("seq", seq), zap.Error(err))
		return
	}
	*ev = orig
}

// publishErr classifies a failed publish. Whatever happened, the write is not confirmed:
// a timeout, no responders, a closed or reconnecting connection, an unavailable stream or
// a full disk are all KindUnavailable (retry later; the Nats-Msg-Id makes the retry safe).
func publishErr(op string, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
		return domain.E(op, domain.KindTooLarge, err)
	}
	return domain.E(op, domain.KindUnavailable, err)
}

// headerValue keeps a header printable: the type is free text from the payload, and a
// CR or LF would break the header block.
func headerValue(s string) string {
	const max = 128
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			b := []byte(s)
			for j := range b {
				if b[j] < 0x20 || b[j] == 0x7f {
					b[j] = '_'
				}
			}
			return string(b)
		}
	}
	return s
}

// LastSeq returns the last sequence in the stream (0 when empty).
func (l *EventLog) LastSeq(ctx context.Context) (uint64, error) {
	return lastSeq(ctx, "eventlog.EventLog.LastSeq", l.events)
}

func lastSeq(ctx context.Context, op string, s jetstream.Stream) (uint64, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	return info.State.LastSeq, nil
}

// Applicant returns one applicant's events in stream order (a subject-filtered read).
// It reads up to the applicant's last event at the time of the call. Errors: KindInvalid
// for bad ids, KindUnavailable when the stream does not answer or stops making progress.
func (l *EventLog) Applicant(ctx context.Context, app domain.AppKey, id domain.ApplicantID) ([]domain.Event, error) {
	const op = "eventlog.EventLog.Applicant"
	subject, err := Subject(app, id)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	last, err := l.events.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	var out []domain.Event
	err = scan(ctx, l, span{
		op: op, stream: l.events, filter: subject, from: 1, until: last.Sequence,
		maxBatch: 1 << 16, prefetch: 256,
	}, decodeEvent, func(evs []domain.Event) error {
		out = append(out, evs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Read calls fn for every event from sequence from (inclusive) up to the last sequence at
// the time of the call, in order, in batches of at most batch events. It stops at the first
// error fn returns. Events carry the fold's inputs, the payload and Stored; ev.Raw is not
// decoded (DecodeEvent(ev.Seq, ev.Stored) has it).
//
// fn's error is returned as it is; otherwise ctx.Err() when ctx ends, KindInvalid for a
// batch below 1, KindInternal for a message that is not a stored event, KindUnavailable
// when the stream stops delivering for 15 s. A reconnect in the middle is invisible:
// the read resumes after the last event delivered. fn owns each slice it receives.
func (l *EventLog) Read(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
	const op = "eventlog.EventLog.Read"
	if batch < 1 {
		return domain.E(op, domain.KindInvalid, "batch must be at least 1")
	}
	last, err := l.LastSeq(ctx)
	if err != nil {
		return domain.E(op, domain.KindOther, err)
	}
	from = max(from, 1)
	if from > last {
		return nil
	}
	return scan(ctx, l, span{
		op: op, stream: l.events, from: from, until: last, maxBatch: batch,
		prefetch: readPrefetch, contiguous: true,
	}, decodeFoldInputs, fn)
}

// Follow delivers every event from sequence from on, in order, without gaps or repeats, in
// batches bounded by maxBatch and by maxWait since the batch's first event, until ctx ends.
// It survives reconnects by resuming after the last event it delivered. fn's error stops it.
// Events are decoded as Read decodes them (no ev.Raw).
//
// It returns ctx.Err() when ctx ends and fn's error as it is; KindInvalid for maxBatch
// below 1, KindInternal for a message that is not a stored event, KindUnavailable once
// the connection is closed. Any other failure (server restart, lost consumer, missed
// heartbeats) is retried with backoff, resuming at the sequence after the last delivered.
// Each delivered sequence is greater than the one before; a jump is accepted only after
// the stream confirms the sequences in between no longer exist.
func (l *EventLog) Follow(ctx context.Context, from uint64, maxBatch int, maxWait time.Duration, fn func([]domain.Event) error) error {
	const op = "eventlog.EventLog.Follow"
	if maxBatch < 1 {
		return domain.E(op, domain.KindInvalid, "maxBatch must be at least 1")
	}
	return scan(ctx, l, span{
		op: op, stream: l.events, from: max(from, 1), maxBatch: maxBatch,
		maxWait: max(maxWait, 0), prefetch: readPrefetch, contiguous: true,
	}, decodeFoldInputs, fn)
}

// DecodeEvent parses a stored message. seq and data are kept in the event.
//
// data is copied, so the caller may reuse its buffer (a bbolt value, say). Errors:
// KindInternal when data is not a stored event, KindConflict when it was written in a
// format version this build does not read.
func DecodeEvent(seq uint64, data []byte) (domain.Event, error) {
	return decodeEvent(seq, slices.Clone(data))
}

// decodeEvent is DecodeEvent for a buffer the event may keep (a message read from NATS
// is never reused by the client). ev.Payload may share data's memory.
//
// Decoding is the bulk of a replay's cost (a rebuild decodes every event of the log), so
// the canonical form Append writes goes through fastDecodeEvent; anything else, and
// every error, goes through encoding/json, which stays the definition of the format.
func decodeEvent(seq uint64, data []byte) (domain.Event, error) {
	return decodeStored(seq, data, false)
}

// decodeFoldInputs is decodeEvent without ev.Raw: Read and Follow feed the fold, the
// projection and exports, which read the fold's inputs and ev.Stored but never the original
// body, and unescaping that body (JSON inside a JSON string) was the largest single cost
// of a rebuild's decode. DecodeEvent(ev.Seq, ev.Stored) gives it back when wanted.
func decodeFoldInputs(seq uint64, data []byte) (domain.Event, error) {
	return decodeStored(seq, data, true)
}

func decodeStored(seq uint64, data []byte, skipRaw bool) (domain.Event, error) {
	const op = "eventlog.DecodeEvent"
	var ev domain.Event
	if !fastDecodeEvent(data, &ev, skipRaw) {
		ev = domain.Event{}
		if err := json.Unmarshal(data, &ev); err != nil {
			return domain.Event{}, domain.E(op, domain.KindInternal, fmt.Errorf("seq %d is not a stored event: %w", seq, err))
		}
		if skipRaw {
			ev.Raw = nil
		}
	}
	if ev.V != domain.StoredVersion {
		return domain.Event{}, domain.E(op, domain.KindConflict,
			fmt.Sprintf("seq %d has stored format version %d; this build reads version %d", seq, ev.V, domain.StoredVersion))
	}
	ev.Seq, ev.Stored = seq, data
	return ev, nil
}

// Tuning of ordered reads.
const (
	// readPrefetch is how many messages the client keeps requested ahead of the reader.
	readPrefetch = 2048
	// defaultReadIdle bounds a bounded read (Read, Applicant, Rejects) whose stream stops
	// delivering: it fails with KindUnavailable instead of hanging.
	defaultReadIdle = 15 * time.Second
	// defaultRequestTimeout bounds one control request (create a consumer, get a message).
	defaultRequestTimeout = 5 * time.Second
	// consumerInactive lets the server reclaim a consumer whose reader died.
	consumerInactive = 2 * time.Minute
	minPrefetchBytes = 16 << 20
)

// span is one ordered read of a stream.
type span struct {
	op         string
	stream     jetstream.Stream
	filter     string        // subject filter; "" reads the whole stream
	from       uint64        // first sequence wanted, at least 1
	until      uint64        // last sequence wanted; 0 follows the stream until ctx ends
	maxBatch   int           // events per fn call
	maxWait    time.Duration // following: how long a started batch may wait to fill
	prefetch   int           // messages requested ahead
	contiguous bool          // unfiltered: a jump in sequence is checked against the stream
}

func (sp span) bounded() bool { return sp.until != 0 }

// scan delivers sp's messages in stream order to fn, in batches. It owns one ordered
// consumer at a time; when the consumer fails in a way its own reset did not repair, scan
// creates a new one starting after the last message it accepted, so nothing is skipped
// or repeated across reconnects and server restarts.
func scan[T any](ctx context.Context, l *EventLog, sp span, decode func(uint64, []byte) (T, error), fn func([]T) error) error {
	s := &scanner[T]{l: l, sp: sp, decode: decode, fn: fn, next: sp.from}
	return s.run(ctx)
}

type scanner[T any] struct {
	l      *EventLog
	sp     span
	decode func(uint64, []byte) (T, error)
	fn     func([]T) error

	next     uint64        // the sequence wanted next: the last accepted + 1
	batch    []T           // accepted, not yet given to fn
	first    time.Time     // when batch's first element was accepted
	received atomic.Uint64 // messages received, watched by the idle guard
}

// run retries consume until it reports a final result. Errors consume marks final (fn's,
// a decode failure, ctx, the end of a bounded read) are returned as they are.
func (s *scanner[T]) run(ctx context.Context) error {
	failures := 0
	lastProgress := time.Now()
	for {
		before := s.received.Load()
		final, err := s.consume(ctx)
		if final {
			return err
		}
		if s.received.Load() != before {
			failures, lastProgress = 0, time.Now()
		}
		// Hand over what is accepted before waiting, so maxWait holds across retries.
		if ferr := s.flush(ctx); ferr != nil {
			return ferr
		}
		if nc := s.l.conn.NC; nc.IsClosed() || nc.IsDraining() {
			return domain.E(s.sp.op, domain.KindUnavailable, fmt.Errorf("connection closed: %w", err))
		}
		if s.sp.bounded() && time.Since(lastProgress) > s.l.readIdle {
			return domain.E(s.sp.op, domain.KindUnavailable, fmt.Errorf("no progress at seq %d: %w", s.next, err))
		}
		failures++
		if failures == 1 {
			s.l.log.Warn("ordered read failed; resuming", zap.String("op", s.sp.op),
				zap.Uint64("next", s.next), zap.Error(err))
		} else {
			s.l.log.Debug("ordered read failed again; resuming", zap.String("op", s.sp.op),
				zap.Uint64("next", s.next), zap.Int("failures", failures), zap.Error(err))
		}
		if werr := sleepCtx(ctx, backoff(failures, s.sp.bounded())); werr != nil {
			return werr
		}
	}
}

// consume reads through one ordered consumer. final reports whether err is the scan's
// result; otherwise err is the failure to retry after.
func (s *scanner[T]) consume(ctx context.Context) (final bool, err error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       s.next,
		InactiveThreshold: consumerInactive,
		// One internal reset attempt: its retries are not cancellable, ours are.
		MaxResetAttempts: 1,
	}
	if s.sp.filter != "" {
		cfg.FilterSubjects = []string{s.sp.filter}
	}
	cctx, cancel := context.WithTimeout(ctx, s.l.requestTimeout)
	cons, err := s.sp.stream.OrderedConsumer(cctx, cfg)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		return false, fmt.Errorf("create ordered consumer: %w", err)
	}
	defer s.deleteConsumer(ctx, cons)
	if s.sp.bounded() {
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			return true, s.flush(ctx)
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(s.sp.prefetch, s.prefetchBytes()))
	if err != nil {
		return false, fmt.Errorf("start ordered consumer: %w", err)
	}

	// The guard stops the iterator when ctx ends (Next would otherwise block) and, for a
	// bounded read, when Next has waited through two ticks without a message: time spent
	// in fn does not count as idle.
	quit, guardDone := make(chan struct{}), make(chan struct{})
	var idle, waiting atomic.Bool
	go func() {
		defer close(guardDone)
		var tick <-chan time.Time
		if s.sp.bounded() {
			t := time.NewTicker(s.l.readIdle / 2)
			defer t.Stop()
			tick = t.C
		}
		seen, wasWaiting := s.received.Load(), false
		for {
			select {
			case <-ctx.Done():
				it.Stop()
				return
			case <-quit:
				return
			case <-tick:
				n, w := s.received.Load(), waiting.Load()
				if n == seen && w && wasWaiting {
					idle.Store(true)
					it.Stop()
					return
				}
				seen, wasWaiting = n, w
			}
		}
	}()
	defer func() {
		close(quit)
		it.Stop()
		<-guardDone
	}()

	caughtUp := false // the last message said nothing more is pending
	for {
		var msg jetstream.Msg
		if !s.sp.bounded() && len(s.batch) > 0 && caughtUp {
			wait := s.sp.maxWait - time.Since(s.first)
			if wait <= 0 {
				if err := s.flush(ctx); err != nil {
					return true, err
				}
				continue
			}
			msg, err = it.Next(jetstream.NextMaxWait(wait))
		} else {
			waiting.Store(true)
			msg, err = it.Next()
			waiting.Store(false)
		}
		if err != nil {
			switch {
			case errors.Is(err, nats.ErrTimeout):
				if err := s.flush(ctx); err != nil {
					return true, err
				}
				continue
			case ctx.Err() != nil:
				return true, ctx.Err()
			case idle.Load():
				return false, fmt.Errorf("no message for %s", s.l.readIdle)
			}
			return false, err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return false, err
		}
		seq := meta.Sequence.Stream
		s.received.Add(1)
		if seq < s.next {
			// Never hand an event over twice; ordered consumers should make this impossible.
			s.l.log.Error("stream delivered an earlier sequence again; skipped", zap.String("op", s.sp.op),
				zap.Uint64("seq", seq), zap.Uint64("next", s.next))
			continue
		}
		if s.sp.bounded() && seq > s.sp.until {
			return true, s.flush(ctx)
		}
		if seq > s.next && s.sp.contiguous {
			if err := s.confirmGap(ctx, seq); err != nil {
				return false, err
			}
		}
		v, err := s.decode(seq, msg.Data())
		if err != nil {
			// Everything before the bad message is good: hand it over, then stop there.
			if ferr := s.flush(ctx); ferr != nil {
				return true, ferr
			}
			return true, err
		}
		if len(s.batch) == 0 {
			s.first = time.Now()
		}
		s.batch = append(s.batch, v)
		s.next = seq + 1
		caughtUp = meta.NumPending == 0
		if len(s.batch) >= s.sp.maxBatch {
			if err := s.flush(ctx); err != nil {
				return true, err
			}
		}
		if s.sp.bounded() && (seq >= s.sp.until || caughtUp) {
			return true, s.flush(ctx)
		}
	}
}

// confirmGap accepts a jump from s.next to seq only if the stream holds nothing in
// between (the messages were deleted); otherwise the consumer skipped and must restart.
func (s *scanner[T]) confirmGap(ctx context.Context, seq uint64) error {
	subject := s.sp.filter
	if subject == "" {
		subject = ">"
	}
	cctx, cancel := context.WithTimeout(ctx, s.l.requestTimeout)
	defer cancel()
	m, err := s.sp.stream.GetMsg(cctx, s.next, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		return fmt.Errorf("check gap before seq %d: %w", seq, err)
	}
	if m.Sequence < seq {
		return fmt.Errorf("consumer jumped from %d to %d over existing seq %d", s.next, seq, m.Sequence)
	}
	return nil
}

// flush hands the accepted batch to fn. A ctx that ended meanwhile stops the scan even
// when the rest is already buffered.
func (s *scanner[T]) flush(ctx context.Context) error {
	if len(s.batch) > 0 {
		b := s.batch
		s.batch = make([]T, 0, min(cap(b), 1024))
		if err := s.fn(b); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *scanner[T]) prefetchBytes() int {
	return max(minPrefetchBytes, 2*int(s.l.conn.NC.MaxPayload()))
}

// deleteConsumer frees the server's consumer now rather than after consumerInactive.
// Best effort: a failure leaves it to the inactivity threshold.
func (s *scanner[T]) deleteConsumer(ctx context.Context, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || !s.l.conn.NC.IsConnected() {
		return // a request now would only wait in the reconnect buffer
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = s.l.js.DeleteConsumer(dctx, info.Stream, info.Name)
}

func backoff(failures int, bounded bool) time.Duration {
	limit := 5 * time.Second
	if bounded {
		limit = time.Second
	}
	d := 50 * time.Millisecond << min(failures, 10)
	return min(d, limit)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fastDecodeEvent decodes data if it is in the canonical form json.Marshal writes for a
// domain.Event: no whitespace outside the payload, only the known keys, each at most
// once, no nulls. It reports false for anything outside that form, and the caller falls
// back to json.Unmarshal. When it reports true, ev is what json.Unmarshal would have
// produced (FuzzFastDecodeEventMatchesJSON checks this), except that ev.Payload shares
// data's memory instead of holding a copy.
func fastDecodeEvent(data []byte, ev *domain.Event, skipRaw bool) bool {
	d := fastDec{data: data}
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return d.i == len(d.data)
	}
	var seen uint16
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		var bit uint16
		var s string
		switch string(key) {
		case "v":
			bit = 1 << 0
			ev.V, ok = d.smallInt()
		case "provider":
			bit = 1 << 1
			ev.Provider, ok = d.str()
		case "appKey":
			bit = 1 << 2
			s, ok = d.str()
			ev.AppKey = domain.AppKey(s)
		case "applicantId":
			bit = 1 << 3
			s, ok = d.str()
			ev.ApplicantID = domain.ApplicantID(s)
		case "externalUserId":
			bit = 1 << 4
			s, ok = d.str()
			ev.ExternalUserID = domain.ExternalUserID(s)
		case "type":
			bit = 1 << 5
			s, ok = d.str()
			ev.Type = domain.EventType(s)
		case "stepName":
			bit = 1 << 6
			ev.StepName, ok = d.str()
		case "warnings":
			bit = 1 << 7
			ev.Warnings, ok = d.strs()
		case "eventAt":
			bit = 1 << 8
			ok = d.time(&ev.EventAt)
		case "eventAtSource":
			bit = 1 << 9
			ev.EventAtSource, ok = d.str()
		case "receivedAt":
			bit = 1 << 10
			ok = d.time(&ev.ReceivedAt)
		case "payload":
			bit = 1 << 11
			ev.Payload, ok = d.rawValue()
		case "raw":
			bit = 1 << 12
			if skipRaw {
				ok = d.skipValue(0)
			} else {
				ev.Raw, ok = d.rawObject()
			}
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.eat('}') {
			return d.i == len(d.data)
		}
		if !d.eat(',') {
			return false
		}
	}
}

// fastDec is a cursor over JSON in canonical form. Its methods report false where the
// input leaves that form; they never decide that input is invalid JSON.
type fastDec struct {
	data []byte
	i    int
}

func (d *fastDec) eat(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// key reads "name": where name holds no escape.
func (d *fastDec) key() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		if c == '"' {
			k := d.data[start:d.i]
			d.i++
			return k, d.eat(':')
		}
		if c == '\\' || c < 0x20 {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// smallInt reads a non-negative integer of at most 9 digits.
func (d *fastDec) smallInt() (int, bool) {
	start, n := d.i, 0
	for d.i < len(d.data) && '0' <= d.data[d.i] && d.data[d.i] <= '9' {
		n = n*10 + int(d.data[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || digits > 9 || (digits > 1 && d.data[start] == '0') {
		return 0, false
	}
	return n, true
}

func (d *fastDec) str() (string, bool) {
	b, ok := d.strBytes()
	if !ok {
		return "", false
	}
	return internString(b), true
}

// strBytes reads a JSON string and returns its contents unescaped: a slice of data when
// there is nothing to unescape, a new buffer otherwise. It reports false for escapes
// json would treat specially (surrogates) and for bytes json would replace (invalid
// UTF-8), as well as for anything invalid.
func (d *fastDec) strBytes() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start, i := d.i, d.i
	for i < len(d.data) {
		c := d.data[i]
		if c == '"' {
			d.i = i + 1
			return d.data[start:i], true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	buf := make([]byte, i-start, len(d.data)-start)
	copy(buf, d.data[start:i])
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.i = i + 1
			return buf, true
		case c < 0x20:
			return nil, false
		case c == '\\':
			if i+1 >= len(d.data) {
				return nil, false
			}
			switch e := d.data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				if i+6 > len(d.data) {
					return nil, false
				}
				r, ok := hex4(d.data[i+2 : i+6])
				if !ok || utf16.IsSurrogate(r) {
					return nil, false
				}
				buf = utf8.AppendRune(buf, r)
				i += 4
			default:
				return nil, false
			}
			i += 2
		case c < utf8.RuneSelf:
			j := i + 1
			for j < len(d.data) && d.data[j] >= 0x20 && d.data[j] < utf8.RuneSelf && d.data[j] != '"' && d.data[j] != '\\' {
				j++
			}
			buf = append(buf, d.data[i:j]...)
			i = j
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			buf = append(buf, d.data[i:i+size]...)
			i += size
		}
	}
	return nil, false
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (d *fastDec) strs() ([]string, bool) {
	if !d.eat('[') {
		return nil, false
	}
	out := []string{}
	if d.eat(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.eat(']') {
			return out, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// time hands the string token to time.Time.UnmarshalJSON, as encoding/json does.
func (d *fastDec) time(t *time.Time) bool {
	start := d.i
	if _, ok := d.strBytes(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.data[start:d.i]) == nil
}

func (d *fastDec) rawObject() (*domain.Raw, bool) {
	if !d.eat('{') {
		return nil, false
	}
	r := &domain.Raw{}
	if d.eat('}') {
		return r, true
	}
	var seenBody, seenSig bool
	for {
		key, ok := d.key()
		if !ok {
			return nil, false
		}
		switch string(key) {
		case "body":
			if seenBody {
				return nil, false
			}
			seenBody = true
			r.Body, ok = d.str()
		case "signature":
			if seenSig {
				return nil, false
			}
			seenSig = true
			r.Signature, ok = d.str()
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
		if d.eat('}') {
			return r, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// rawValue returns the bytes of one JSON value (the payload), checked the way
// encoding/json checks a json.RawMessage: JSON syntax, any bytes inside strings.
func (d *fastDec) rawValue() (json.RawMessage, bool) {
	start := d.i
	if d.i < len(d.data) && d.data[d.i] == 'n' {
		return nil, false // null: leave it to encoding/json
	}
	if !d.skipValue(0) {
		return nil, false
	}
	return json.RawMessage(d.data[start:d.i:d.i]), true
}

const fastMaxDepth = 128

func (d *fastDec) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDec) skipValue(depth int) bool {
	if depth > fastMaxDepth || d.i >= len(d.data) {
		return false
	}
	switch c := d.data[d.i]; {
	case c == '{':
		d.i++
		d.ws()
		if d.eat('}') {
			return true
		}
		for {
			d.ws()
			if !d.skipString() {
				return false
			}
			d.ws()
			if !d.eat(':') {
				return false
			}
			d.ws()
			if !d.skipValue(depth + 1) {
				return false
			}
			d.ws()
			if d.eat('}') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case c == '[':
		d.i++
		d.ws()
		if d.eat(']') {
			return true
		}
		for {
			d.ws()
			if !d.skipValue(depth + 1) {
				return false
			}
			d.ws()
			if d.eat(']') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case c == '"':
		return d.skipString()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.skipNumber()
	}
	return false
}

func (d *fastDec) literal(lit string) bool {
	if len(d.data)-d.i >= len(lit) && string(d.data[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

// skipString checks a JSON string: valid escapes, no control characters; other bytes are
// kept as they are (a json.RawMessage is not unescaped).
func (d *fastDec) skipString() bool {
	if !d.eat('"') {
		return false
	}
	for d.i < len(d.data) {
		j := bytes.IndexAny(d.data[d.i:], "\"\\")
		if j < 0 {
			return false
		}
		for _, c := range d.data[d.i : d.i+j] {
			if c < 0x20 {
				return false
			}
		}
		d.i += j
		if d.data[d.i] == '"' {
			d.i++
			return true
		}
		if d.i+1 >= len(d.data) {
			return false
		}
		switch d.data[d.i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			d.i += 2
		case 'u':
			if d.i+6 > len(d.data) {
				return false
			}
			if _, ok := hex4(d.data[d.i+2 : d.i+6]); !ok {
				return false
			}
			d.i += 6
		default:
			return false
		}
	}
	return false
}

// skipNumber checks -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDec) skipNumber() bool {
	d.eat('-')
	switch {
	case d.eat('0'):
	case d.i < len(d.data) && '1' <= d.data[d.i] && d.data[d.i] <= '9':
		d.digits()
	default:
		return false
	}
	if d.eat('.') && !d.digits() {
		return false
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if !d.digits() {
			return false
		}
	}
	return true
}

func (d *fastDec) digits() bool {
	start := d.i
	for d.i < len(d.data) && '0' <= d.data[d.i] && d.data[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// internString returns the constant for the strings most events repeat (provider, event
// types, time sources), so decoding them allocates nothing.
func internString(b []byte) string {
	switch string(b) {
	case "allpass":
		return "allpass"
	case string(domain.EventCreated):
		return string(domain.EventCreated)
	case string(domain.EventIncomplete):
		return string(domain.EventIncomplete)
	case string(domain.EventInProgress):
		return string(domain.EventInProgress)
	case string(domain.EventInReview):
		return string(domain.EventInReview)
	case string(domain.EventOnHold):
		return string(domain.EventOnHold)
	case string(domain.EventCompleted):
		return string(domain.EventCompleted)
	case string(domain.EventApproved):
		return string(domain.EventApproved)
	case string(domain.EventRejected):
		return string(domain.EventRejected)
	case string(domain.EventStepPassed):
		return string(domain.EventStepPassed)
	case domain.SourcePayloadUpdatedAt:
		return domain.SourcePayloadUpdatedAt
	case domain.SourcePayloadCreatedAt:
		return domain.SourcePayloadCreatedAt
	case domain.SourcePayloadTime:
		return domain.SourcePayloadTime
	case domain.SourcePayloadTimestamp:
		return domain.SourcePayloadTimestamp
	case domain.SourceEnvelopeTime:
		return domain.SourceEnvelopeTime
	case domain.SourceReceived:
		return domain.SourceReceived
	}
	return string(b)
}
