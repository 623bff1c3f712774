package eventlog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// storedReject is a Reject as KYC_REJECTS holds it. JSON strings are UTF-8, and a
// refused body may be any bytes; such a body travels base64-encoded in BodyBase64 so it
// comes back byte for byte.
type storedReject struct {
	domain.Reject
	BodyBase64 string `json:"bodyBase64,omitempty"`
}

const maxReasonLen = 64

// RejectSubject returns kyc.rejects.<reason>, the reason reduced to [a-z0-9_] (upper
// case lowered, anything else '_', at most 64 characters, "unknown" when empty), so no
// caller-supplied text can add subject tokens or wildcards.
func RejectSubject(reason string) string {
	b := make([]byte, 0, min(len(reason), maxReasonLen))
	for i := 0; i < len(reason) && len(b) < maxReasonLen; i++ {
		c := reason[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		default:
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "kyc.rejects.unknown"
	}
	return "kyc.rejects." + string(b)
}

// Reject appends r to KYC_REJECTS on kyc.rejects.<reason>.
//
// r.Seq is ignored (the stream assigns it). Errors: KindUnavailable when the stream does
// not confirm before ctx's deadline (the caller's, as for Append), KindTooLarge over the
// server's maximum payload.
// KYC_REJECTS is size-bounded with Discard Old: keeping a new reject may drop the oldest.
func (l *EventLog) Reject(ctx context.Context, r domain.Reject) error {
	const op = "eventlog.EventLog.Reject"
	r.Seq = 0
	sr := storedReject{Reject: r}
	if !utf8.ValidString(r.Body) {
		sr.Body, sr.BodyBase64 = "", base64.StdEncoding.EncodeToString([]byte(r.Body))
	}
	data, err := json.Marshal(sr)
	if err != nil {
		return domain.E(op, domain.KindInternal, err)
	}
	if max := l.conn.NC.MaxPayload(); max > 0 && int64(len(data)) > max {
		return domain.E(op, domain.KindTooLarge,
			fmt.Sprintf("reject of %d bytes exceeds the server's maximum payload %d", len(data), max))
	}
	ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: RejectSubject(r.Reason), Data: data},
		jetstream.WithExpectStream(RejectStream))
	if err != nil {
		return publishErr(op, err)
	}
	if ack.Stream != RejectStream {
		return domain.E(op, domain.KindInternal,
			fmt.Sprintf("acknowledged by stream %q, not %s", ack.Stream, RejectStream))
	}
	return nil
}

// Rejects calls fn for each kept reject in order, starting at sequence from.
//
// It reads up to the last reject at the time of the call; rejects dropped by the size
// bound are simply absent (sequences jump). fn's error is returned as it is; otherwise
// ctx.Err(), KindInternal for a message that is not a reject, KindUnavailable when the
// stream stops answering.
func (l *EventLog) Rejects(ctx context.Context, from uint64, fn func(domain.Reject) error) error {
	const op = "eventlog.EventLog.Rejects"
	last, err := lastSeq(ctx, op, l.rejects)
	if err != nil {
		return err
	}
	from = max(from, 1)
	if from > last {
		return nil
	}
	return scan(ctx, l, span{
		op: op, stream: l.rejects, from: from, until: last, maxBatch: 256, prefetch: 256,
	}, decodeReject, func(rs []domain.Reject) error {
		for _, r := range rs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

func decodeReject(seq uint64, data []byte) (domain.Reject, error) {
	const op = "eventlog.decodeReject"
	var sr storedReject
	if err := json.Unmarshal(data, &sr); err != nil {
		return domain.Reject{}, domain.E(op, domain.KindInternal, fmt.Errorf("reject seq %d: %w", seq, err))
	}
	if sr.BodyBase64 != "" {
		body, err := base64.StdEncoding.DecodeString(sr.BodyBase64)
		if err != nil {
			return domain.Reject{}, domain.E(op, domain.KindInternal, fmt.Errorf("reject seq %d body: %w", seq, err))
		}
		sr.Body = string(body)
	}
	sr.Seq = seq
	return sr.Reject, nil
}
