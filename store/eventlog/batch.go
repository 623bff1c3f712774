package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"
)

// The atomic batch protocol (nats-server 2.12 and later, ADR-50). Every message of a
// batch carries the batch's id and its 1-based place in it; the last one also carries
// the commit header and is sent as a request. The server stages the others and, on
// the commit, either stores all of them, in order, with consecutive sequences, and
// answers one PubAck for the last (with the batch id and count), or stores none and
// answers an error. Messages before the commit are published without a reply: a
// message the server refuses shows up as an error on the commit (an incomplete batch).
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// Limits of one atomic batch.
const (
	// MaxBatchMsgs is the most messages AppendBatch puts in one atomic batch. The server
	// refuses a batch of more than 1,000 (jetstream.limits.max_batch_size, default 1000,
	// in nats-server 2.15); ingest never gathers more than its in-flight limit (256 by
	// default), and a quarter of the server's limit leaves room for an operator who
	// lowers it.
	MaxBatchMsgs = 250
	// MaxBatchBytes bounds the stored bytes of one atomic batch. The server stages a batch
	// on disk and checks it whole at the commit, holding the stream's lock; a bound keeps
	// one batch of large webhooks from stalling the stream. A single message larger than
	// this still goes, alone.
	MaxBatchBytes = 4 << 20
	// MinAtomicBatch is the fewest messages AppendBatch sends as one atomic batch; fewer
	// are published one by one, pipelined on the connection, each its own PubAck. An
	// atomic batch has a fixed cost (the server stages it in a store of its own): about
	// 1.9 ms on an R1 file stream with fsync always, where a pipelined publish costs
	// about 0.13 ms a message. BenchmarkAppendBatch on the 2-core test machine: 8
	// messages 1.9 ms atomic against 1.0 ms one by one, 16 messages 2.1 ms either way,
	// 32 messages 3.3 ms against 4.1 ms, 250 messages 6.5 ms against 31 ms. So a batch
	// starts to pay at 16 (docs/BENCHMARKS.md).
	MinAtomicBatch = 16
)

// JetStream error codes AppendBatch acts on.
const (
	errCodeBatchDuplicate jetstream.ErrorCode = 10201 // the batch holds a Nats-Msg-Id the stream has
)

// AppendBatch appends every event of batch and sets, on each Pending, either its
// sequence (and Duplicate) or its error, as Append would for that event alone; ev.Seq
// and ev.Stored are set as Append sets them. A Pending is only given a sequence from a
// PubAck that covers its message.
//
// How it writes (group commit, DESIGN.md section 3): fewer than MinAtomicBatch events
// are published at once, pipelined, each with its own PubAck, which is also the path of
// a lone event; more go as JetStream atomic batches of at most MaxBatchMsgs messages and
// MaxBatchBytes, each one write and one fsync on the server. A batch the stream refuses
// (because one of its messages is a duplicate, or the server cannot take another batch
// now) stored nothing, so its messages are then published one by one and each gets its
// own answer: a duplicate is answered as a duplicate with the original's sequence, and
// the others are stored. A batch whose commit got no answer (ctx's deadline, a lost
// connection) may or may not have been stored: each of its messages gets
// KindUnavailable, and a retry under the same message ids is answered as a duplicate.
//
// A Pending whose Stored is set (Prepare) is published as those bytes; the others are
// encoded and sealed here first, one after another (ingest prepares each webhook on its
// own request, so that an applicant's first event, which makes its data key, holds up
// no batch).
//
// ctx bounds every wait, as for Append.
func (l *EventLog) AppendBatch(ctx context.Context, batch []*domain.Pending) {
	const op = "eventlog.EventLog.AppendBatch"
	msgs := make([]*nats.Msg, 0, len(batch))
	todo := make([]*domain.Pending, 0, len(batch))
	for _, p := range batch {
		p.Seq, p.Duplicate, p.Err = 0, false, nil
		var msg *nats.Msg
		var err error
		if p.Stored != nil {
			msg, err = messageOf(op, p.Event, p.MsgID, p.Stored)
		} else {
			msg, err = l.message(ctx, op, p.Event, p.MsgID)
		}
		if err != nil {
			p.Err = err
			continue
		}
		msg.Header.Set(jetstream.MsgIDHeader, p.MsgID)
		msg.Header.Set(jetstream.ExpectedStreamHeader, EventStream)
		msgs = append(msgs, msg)
		todo = append(todo, p)
	}
	if len(todo) < MinAtomicBatch || !l.atomic {
		l.publishEach(ctx, op, todo, msgs)
		return
	}
	for len(todo) > 0 {
		n, size := 0, 0
		for n < len(todo) && n < MaxBatchMsgs {
			size += len(msgs[n].Data)
			if n > 0 && size > MaxBatchBytes {
				break
			}
			n++
		}
		l.publishAtomic(ctx, op, todo[:n], msgs[:n])
		todo, msgs = todo[n:], msgs[n:]
	}
}

// publishEach publishes msgs at once, each as its own request, and waits for every
// PubAck. The requests share the connection, so they are pipelined: the server gets
// them back to back and the wait is about one round trip plus their writes.
func (l *EventLog) publishEach(ctx context.Context, op string, ps []*domain.Pending, msgs []*nats.Msg) {
	one := func(i int) {
		p := ps[i]
		ack, err := l.publish(ctx, msgs[i])
		if err != nil {
			p.Err = publishErr(op, err)
			return
		}
		p.Seq, p.Duplicate, p.Err = l.acknowledged(ctx, op, p.Event, msgs[i].Data, ack)
	}
	switch len(ps) {
	case 0:
		return
	case 1:
		one(0)
		return
	}
	// The first is published on this goroutine, the others each on one of their own.
	var wg sync.WaitGroup
	for i := 1; i < len(ps); i++ {
		wg.Go(func() { one(i) })
	}
	one(0)
	wg.Wait()
}

// publishAtomic sends msgs as one atomic batch and answers every Pending from its
// PubAck, or, when the stream refused the batch, publishes them one by one.
func (l *EventLog) publishAtomic(ctx context.Context, op string, ps []*domain.Pending, msgs []*nats.Msg) {
	if len(ps) == 1 {
		l.publishEach(ctx, op, ps, msgs)
		return
	}
	first, err := l.commitBatch(ctx, EventStream, msgs)
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		for i, p := range ps {
			p.Event.Seq, p.Event.Stored = first+uint64(i), msgs[i].Data
			p.Seq = p.Event.Seq
		}
		return
	case errors.As(err, &apiErr):
		// Refused as a whole: nothing of it is stored. A duplicate is the expected case
		// (a retry gathered with new webhooks); anything else (too many batches in
		// flight, batching switched off on the stream) is logged, and the messages still
		// get their answers one by one.
		if apiErr.ErrorCode != errCodeBatchDuplicate {
			l.log.Warn("atomic batch refused; publishing its messages one by one",
				zap.Int("messages", len(msgs)), zap.Error(err))
		}
		for _, m := range msgs {
			m.Header.Del(headerBatchID)
			m.Header.Del(headerBatchSeq)
			m.Header.Del(headerBatchCommit)
		}
		l.publishEach(ctx, op, ps, msgs)
	default:
		for _, p := range ps {
			p.Err = publishErr(op, err)
		}
	}
}

// batchAck is the server's answer to a commit: a PubAck for the batch's last message,
// or an error.
type batchAck struct {
	Error    *jetstream.APIError `json:"error,omitempty"`
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	BatchID  string              `json:"batch"`
	Count    int                 `json:"count"`
}

// commitBatch publishes msgs as one atomic batch to stream and returns the sequence of
// its first message; the others follow it without a gap. An error that is a *jetstream.APIError
// means the stream refused the batch and stored none of it; any other error means its
// fate is unknown.
func (l *EventLog) commitBatch(ctx context.Context, stream string, msgs []*nats.Msg) (uint64, error) {
	id := nuid.Next()
	last := len(msgs) - 1
	for i, m := range msgs {
		m.Header.Set(headerBatchID, id)
		m.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		if i < last {
			if err := l.conn.NC.PublishMsg(m); err != nil {
				return 0, err
			}
		}
	}
	msgs[last].Header.Set(headerBatchCommit, "1")
	ctx, cancel := l.requestContext(ctx)
	defer cancel()
	resp, err := l.conn.NC.RequestMsgWithContext(ctx, msgs[last])
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			err = jetstream.ErrNoStreamResponse
		}
		return 0, err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("atomic batch: %w", jetstream.ErrInvalidJSAck)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	switch {
	case ack.Stream != stream:
		return 0, fmt.Errorf("atomic batch acknowledged by stream %q, not %s", ack.Stream, stream)
	case ack.BatchID != id || ack.Count != len(msgs) || ack.Sequence < uint64(len(msgs)):
		return 0, fmt.Errorf("atomic batch: acknowledgement %q/%d at %d for batch %q of %d",
			ack.BatchID, ack.Count, ack.Sequence, id, len(msgs))
	}
	return ack.Sequence - uint64(last), nil
}

// requestContext gives a ctx without a deadline the JetStream client's default timeout,
// as PublishMsg does, so no commit waits forever.
func (l *EventLog) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.js.Options().DefaultTimeout)
}
