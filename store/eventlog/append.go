package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Subject returns kyc.events.allpass.<appKey>.<applicantId>, an Allpass applicant's
// subject. Both ids must already be validated UUIDs; Subject refuses anything else with
// KindInvalid.
func Subject(app domain.AppKey, id domain.ApplicantID) (string, error) {
	return ProviderSubject(domain.ProviderAllpass, app, id)
}

// ProviderSubject returns kyc.events.<provider>.<app>.<applicantId>, the subject of
// every event of one applicant (DESIGN.md sections 3 and 13). For Allpass, app is the
// appKey and both ids are lower-case UUIDs; for the other providers, app is the app's
// name and the id the provider's, both subject tokens (domain.IsSubjectToken). Anything
// else, an unknown provider included, is refused with KindInvalid: no subject is built
// from a token that could add a level or a wildcard.
func ProviderSubject(p domain.Provider, app domain.AppKey, id domain.ApplicantID) (string, error) {
	const op = "eventlog.Subject"
	switch {
	case p == domain.ProviderAllpass:
		if !domain.IsCanonicalUUID(string(app)) {
			return "", domain.E(op, domain.KindInvalid, "appKey is not a lower-case UUID")
		}
		if !domain.IsCanonicalUUID(string(id)) {
			return "", domain.E(op, domain.KindInvalid, "applicantId is not a lower-case UUID")
		}
	case !p.Valid():
		return "", domain.E(op, domain.KindInvalid, "provider is not one of "+providerList())
	case !domain.IsSubjectToken(string(app)):
		return "", domain.E(op, domain.KindInvalid, "app is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	case !domain.IsSubjectToken(string(id)):
		return "", domain.E(op, domain.KindInvalid, "applicantId is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	return "kyc.events." + string(p) + "." + string(app) + "." + string(id), nil
}

// eventSubject is the subject ev is stored on.
func eventSubject(ev *domain.Event) (string, error) {
	return ProviderSubject(domain.ProviderOf(ev.Provider), ev.AppKey, ev.ApplicantID)
}

func providerList() string {
	names := make([]string, 0, len(domain.Providers()))
	for _, p := range domain.Providers() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

// Append stores ev with the Nats-Msg-Id msgID and returns its sequence once the stream
// has acknowledged it (PubAck). dup is true when the stream recognised msgID inside its
// duplicate window; seq is then the original's. Errors: KindUnavailable when the stream
// cannot confirm before ctx's deadline (the caller must not claim the write), KindInvalid
// for bad ids. On success ev.Seq and ev.Stored are set.
//
// The wait for the PubAck has one bound, ctx's deadline, and the caller sets it: ingest
// answers a webhook 503 past its append timeout (ingest.HandlerConfig.AppendTimeout),
// and a second timer here around the same publish would only be a second setting that
// drifts from the first. A ctx without a deadline gets the JetStream client's default
// request timeout (5 s), so no Append waits forever.
//
// Append stamps ev.V with the format this log writes, whichever version the caller
// built (an unknown one is refused): domain.StoredVersion, sealed by the log's Keyring
// and ending in its MAC under the log key, or StoredVersionClear (no MAC: there is no
// log key) for a log opened without master keys; ev itself keeps its
// personal fields in clear, ev.Stored holds them sealed. For a duplicate, ev is replaced by the
// original as stored (its receivedAt is the first delivery's), so ev.Stored is always
// the exact bytes at ev.Seq; if the original cannot be read back, ev.Stored is nil.
// KindTooLarge when the message exceeds the server's maximum payload.
func (l *EventLog) Append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error) {
	const op = "eventlog.EventLog.Append"
	msg, err := l.message(ctx, op, ev, msgID)
	if err != nil {
		return 0, false, err
	}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	msg.Header.Set(jetstream.ExpectedStreamHeader, EventStream)
	ack, err := l.publish(ctx, msg)
	if err != nil {
		return 0, false, publishErr(op, err)
	}
	return l.acknowledged(ctx, op, ev, msg.Data, ack)
}

// acknowledged finishes an append the stream has acknowledged with ack.
func (l *EventLog) acknowledged(ctx context.Context, op string, ev *domain.Event, data []byte, ack *jetstream.PubAck) (uint64, bool, error) {
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

// message checks ev and msgID and encodes ev as the message Append publishes, with its
// type header; the caller adds the publish headers. With a key ring, the stored form is
// ev sealed (stored version 2; the applicant's first event makes its key, which is why
// this takes ctx). Errors: KindInvalid, KindTooLarge, and the ring's (Keyring.Seal).
func (l *EventLog) message(ctx context.Context, op string, ev *domain.Event, msgID string) (*nats.Msg, error) {
	data, err := l.encode(ctx, op, ev, msgID)
	if err != nil {
		return nil, err
	}
	return messageOf(op, ev, msgID, data)
}

// messageOf is the message that stores data, ev's stored form, under msgID. The checks
// repeat encode's cheap ones, for bytes prepared earlier (Prepare).
func messageOf(op string, ev *domain.Event, msgID string, data []byte) (*nats.Msg, error) {
	if ev == nil || msgID == "" {
		return nil, domain.E(op, domain.KindInvalid, "no event or no message id")
	}
	subject, err := eventSubject(ev)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 6)}
	msg.Header.Set(HeaderType, headerValue(string(ev.Type)))
	return msg, nil
}

// Prepare encodes p's event as AppendBatch stores it, sealed under the applicant's data
// key (made here for an applicant's first event), and keeps the bytes in p.Stored. The
// group commit prepares each webhook on its own request's goroutine before it joins a
// batch: the sealing's CPU is then spread over the requests, and the KYC_KEYS round trip
// of one applicant's first event delays that request alone, not every webhook gathered
// with it. Errors are Append's for an event it refuses before publishing: KindInvalid,
// KindTooLarge, and the ring's.
func (l *EventLog) Prepare(ctx context.Context, p *domain.Pending) error {
	data, err := l.encode(ctx, "eventlog.EventLog.Prepare", p.Event, p.MsgID)
	if err != nil {
		return err
	}
	p.Stored = data
	return nil
}

// encode checks ev and msgID and returns ev's stored form. See message.
func (l *EventLog) encode(ctx context.Context, op string, ev *domain.Event, msgID string) ([]byte, error) {
	if ev == nil {
		return nil, domain.E(op, domain.KindInvalid, "no event")
	}
	if msgID == "" {
		return nil, domain.E(op, domain.KindInvalid, "empty message id")
	}
	subject, err := eventSubject(ev)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	switch ev.V {
	case 0, domain.StoredVersionClear, domain.StoredVersionSealed, domain.StoredVersion:
	default:
		return nil, domain.E(op, domain.KindInvalid,
			fmt.Sprintf("event version %d; this build writes %d", ev.V, domain.StoredVersion))
	}
	// The event is sealed on a copy: ev keeps its personal fields, so a caller retrying
	// with it after a failure retries with them.
	stored := *ev
	stored.V = domain.StoredVersionClear
	if l.keys != nil {
		if err := l.keys.Seal(ctx, &stored); err != nil {
			return nil, err
		}
	}
	ev.V = stored.V
	data, err := appendStoredEvent(make([]byte, 0, 640+macSuffixLen+len(ev.Payload)*4/3+rawLen(ev)*4/3), &stored)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	if l.keys != nil {
		// The MAC goes on last, over everything before it and the subject the message
		// is published on (DESIGN.md section 15).
		data = l.keys.logKey.appendMAC(subject, data)
	}
	if max := l.conn.NC.MaxPayload(); max > 0 && int64(len(data))+headerRoom > max {
		return nil, domain.E(op, domain.KindTooLarge,
			fmt.Sprintf("stored event of %d bytes (and its headers) exceeds the server's maximum payload %d", len(data), max))
	}
	return data, nil
}

// headerRoom is what an event's message headers may take of the server's maximum payload,
// which counts headers and data together: the type (up to 128 bytes), the Nats-Msg-Id,
// the expected stream and an atomic batch's three headers come to about 350 bytes. An
// event is refused here, alone, rather than by the client at publish time, where an
// atomic batch would fail as a whole for every webhook gathered with it.
const headerRoom = 1 << 10

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

// Retries of a publish that found no responder (a stream leader changing), as the
// JetStream client makes them.
const (
	publishRetries    = 2
	publishRetryWait  = 250 * time.Millisecond
	ackPrefix         = `{"stream":"` + EventStream + `","seq":`
	ackDuplicateTrail = `,"duplicate":true}`
)

// publish sends msg as a JetStream publish and decodes its PubAck. It does what the
// client's PublishMsg does, but reads the usual acknowledgement, {"stream":"KYC_EVENTS",
// "seq":N} with or without "duplicate":true, without reflection: decoding the PubAck
// with encoding/json was a tenth of ingest's CPU per webhook. Anything else is decoded
// in full. ctx without a deadline gets the client's default timeout.
func (l *EventLog) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	ctx, cancel := l.requestContext(ctx)
	defer cancel()
	resp, err := l.conn.NC.RequestMsgWithContext(ctx, msg)
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < publishRetries; r++ {
		_ = clock.Sleep(ctx, publishRetryWait) // a cancelled ctx fails the request that follows
		resp, err = l.conn.NC.RequestMsgWithContext(ctx, msg)
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, jetstream.ErrNoStreamResponse
		}
		return nil, err
	}
	if ack, ok := parseAck(resp.Data); ok {
		return ack, nil
	}
	var full struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(resp.Data, &full); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if full.Error != nil {
		return nil, fmt.Errorf("nats: %w", full.Error)
	}
	if full.PubAck == nil || full.PubAck.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return full.PubAck, nil
}

// parseAck reads the PubAck KYC_EVENTS usually answers; ok is false for anything else.
func parseAck(b []byte) (*jetstream.PubAck, bool) {
	if !bytes.HasPrefix(b, []byte(ackPrefix)) {
		return nil, false
	}
	b = b[len(ackPrefix):]
	var seq uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i >= 19 {
			return nil, false
		}
		seq = seq*10 + uint64(b[i]-'0')
	}
	if i == 0 || seq == 0 {
		return nil, false
	}
	switch rest := string(b[i:]); rest {
	case "}":
		return &jetstream.PubAck{Stream: EventStream, Sequence: seq}, true
	case ackDuplicateTrail:
		return &jetstream.PubAck{Stream: EventStream, Sequence: seq, Duplicate: true}, true
	}
	return nil, false
}
