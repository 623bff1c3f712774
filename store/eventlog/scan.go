package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

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
	return l.ProviderApplicant(ctx, domain.ProviderAllpass, app, id)
}

// ProviderApplicant is Applicant for an applicant of any provider (ProviderSubject).
func (l *EventLog) ProviderApplicant(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID) ([]domain.Event, error) {
	const op = "eventlog.EventLog.Applicant"
	subject, err := ProviderSubject(p, app, id)
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
	}, l.decoder(false), func(evs []domain.Event) error {
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
// error fn returns. Events carry the fold's inputs, the payload and Stored; ev.Raw and a
// sealed event's ev.Sealed are not decoded (DecodeEvent(ev.Seq, ev.Stored) has them).
// With the key ring, every event's MAC is checked and ev.Auth says what was found
// (EventLog.decoder).
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
	}, l.decoder(true), fn)
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
	}, l.decoder(true), fn)
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
func scan[T any](ctx context.Context, l *EventLog, sp span, decode decodeFunc[T], fn func([]T) error) error {
	s := &scanner[T]{l: l, sp: sp, decode: decode, fn: fn, next: sp.from}
	return s.run(ctx)
}

// decodeFunc decodes the message stored at seq on subject.
type decodeFunc[T any] func(seq uint64, subject string, data []byte) (T, error)

// bySeq is a decodeFunc for messages whose subject does not matter.
func bySeq[T any](decode func(uint64, []byte) (T, error)) decodeFunc[T] {
	return func(seq uint64, _ string, data []byte) (T, error) { return decode(seq, data) }
}

type scanner[T any] struct {
	l      *EventLog
	sp     span
	decode decodeFunc[T]
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
		if werr := clock.Sleep(ctx, backoff(failures, s.sp.bounded())); werr != nil {
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
		seq, pending, ok := ackSequences(msg.Reply())
		if !ok {
			_, err := msg.Metadata() // says what is wrong with it
			if err == nil {
				err = fmt.Errorf("%w: %q", jetstream.ErrNotJSMessage, msg.Reply())
			}
			return false, err
		}
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
		v, err := s.decode(seq, msg.Subject(), msg.Data())
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
		caughtUp = pending == 0
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

// AppKeyOf returns the app an applicant's events are stored under (the last event's,
// should two apps share an applicant id), and false when the log holds none of it.
// Errors: KindInvalid for a bad id, KindUnavailable when the stream does not answer.
func (l *EventLog) AppKeyOf(ctx context.Context, id domain.ApplicantID) (domain.AppKey, bool, error) {
	const op = "eventlog.EventLog.AppKeyOf"
	if !domain.IsCanonicalUUID(string(id)) {
		return "", false, domain.E(op, domain.KindInvalid, "applicantId is not a lower-case UUID")
	}
	rctx, cancel := context.WithTimeout(ctx, l.requestTimeout)
	defer cancel()
	m, err := l.events.GetLastMsgForSubject(rctx, "kyc.events.allpass.*."+string(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, domain.E(op, domain.KindUnavailable, err)
	}
	parts := strings.Split(m.Subject, ".")
	if len(parts) != 5 || !domain.IsCanonicalUUID(parts[3]) {
		return "", false, domain.E(op, domain.KindInternal, fmt.Sprintf("seq %d has subject %q", m.Sequence, m.Subject))
	}
	return domain.AppKey(parts[3]), true, nil
}

// ProviderAppKeyOf is AppKeyOf for an applicant of provider p (DESIGN.md section 13):
// the app of the last event on kyc.events.<p>.*.<id>. Errors: KindInvalid for a provider
// or id that makes no subject, KindConflict when two apps of p hold the id,
// KindUnavailable.
func (l *EventLog) ProviderAppKeyOf(ctx context.Context, p domain.Provider, id domain.ApplicantID) (domain.AppKey, bool, error) {
	const op = "eventlog.EventLog.AppKeyOf"
	if p == domain.ProviderAllpass {
		return l.AppKeyOf(ctx, id)
	}
	if !p.Valid() || !domain.IsSubjectToken(string(id)) {
		return "", false, domain.E(op, domain.KindInvalid, "not a provider and that provider's applicant id")
	}
	rctx, cancel := context.WithTimeout(ctx, l.requestTimeout)
	defer cancel()
	info, err := l.events.Info(rctx, jetstream.WithSubjectFilter("kyc.events."+string(p)+".*."+string(id)))
	if err != nil {
		return "", false, domain.E(op, domain.KindUnavailable, err)
	}
	var app domain.AppKey
	for subject := range info.State.Subjects {
		parts := strings.Split(subject, ".")
		if len(parts) != 5 {
			return "", false, domain.E(op, domain.KindInternal, fmt.Sprintf("subject %q", subject))
		}
		if app != "" && app != domain.AppKey(parts[3]) {
			return "", false, domain.E(op, domain.KindConflict, fmt.Sprintf("apps %s and %s of %s both hold applicant %s", app, parts[3], p, id))
		}
		app = domain.AppKey(parts[3])
	}
	return app, app != "", nil
}

// ackSequences reads a delivered message's stream sequence and the number of messages
// pending after it from its reply subject, as jetstream.Msg.Metadata does, without
// building the metadata: a rebuild reads a million of them. The subject is
// $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending> (9 tokens), or
// from newer servers $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.
// <sseq>.<cseq>.<time>.<pending>, then any further tokens (11 or more). ok is false for
// anything else, and for a sequence that is not a positive number.
func ackSequences(reply string) (seq, pending uint64, ok bool) {
	const prefix = "$JS.ACK."
	if len(reply) <= len(prefix) || reply[:len(prefix)] != prefix {
		return 0, 0, false
	}
	tokens := 1 + strings.Count(reply, ".")
	var first int // the token index of <delivered>
	switch {
	case tokens == 9:
		first = 4
	case tokens >= 11:
		first = 6
	default:
		return 0, 0, false
	}
	rest := reply
	for range first {
		_, rest, _ = strings.Cut(rest, ".")
	}
	var fields [5]string // delivered, sseq, cseq, time, pending
	for i := range fields {
		fields[i], rest, _ = strings.Cut(rest, ".")
	}
	seq, ok = parseDecimal(fields[1])
	if !ok || seq == 0 {
		return 0, 0, false
	}
	if pending, ok = parseDecimal(fields[4]); !ok {
		return 0, 0, false
	}
	return seq, pending, true
}

// parseDecimal reads a non-empty run of decimal digits that fits in a uint64.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
