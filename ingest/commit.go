package ingest

import (
	"context"
	"sync"

	"github.com/kycstate/kycstate/domain"
)

// committer is the append path's group commit (DESIGN.md section 3). While one write to
// the log is in flight, the appends that arrive wait in a queue; when the write is
// answered, the next write takes all of them (up to maxBatch) at once, as one atomic
// batch when there are enough (EventLog.AppendBatch decides). Under load a webhook
// costs a share of one fsync instead of one of its own; a lone webhook is written at
// once, as a plain publish, with nothing added to its latency.
//
// There is no goroutine of its own: the request that finds no write in flight becomes
// the writer, writes one batch (its own webhook is in it: the queue is first in, first
// out), answers every webhook of the batch, and passes the writer's role to the first
// of the appends that gathered meanwhile. So every goroutine is a request's, and a
// request that has its answer returns at once.
//
// Every wait is bounded by the caller's ctx: a request whose ctx ends while it waits is
// answered KindUnavailable at once (if its write is under way, the webhook may be
// stored, and Allpass's retry is then answered as a duplicate). A batch is written under
// its writer's deadline, the earliest of the batch since the queue is in order, and is
// not cancelled when the writer's client hangs up.
type committer struct {
	events   EventLog
	maxBatch int
	observe  func(n int) // batch sizes, for the metrics
	// queued, when set, is called once a call has joined the queue, outside the lock,
	// before it waits (writer false) or writes (writer true). A test hook, nil in
	// production: a test blocks in it to script an interleaving (commit_script_test.go).
	queued func(msgID string, writer bool)

	mu      sync.Mutex
	queue   []*call
	writing bool // a writer holds the role; it clears it when the queue is empty
}

// call is one append waiting in the committer.
type call struct {
	p    domain.Pending
	done chan struct{} // closed once p holds the answer
	lead chan struct{} // the writer's role is handed to this call (capacity 1)
}

func newCommitter(events EventLog, maxBatch int, observe func(int)) *committer {
	return &committer{events: events, maxBatch: maxBatch, observe: observe}
}

// append is EventLog.Append through the group commit.
func (c *committer) append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error) {
	me := &call{p: domain.Pending{Event: ev, MsgID: msgID}, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	// Encoded and sealed here, on this request's goroutine, before it joins a batch: the
	// CPU is spread over the requests, and an applicant's first event (which makes its
	// data key in KYC_KEYS) holds up only its own request, not every webhook gathered
	// with it.
	if err := c.events.Prepare(ctx, &me.p); err != nil {
		return 0, false, err
	}
	c.mu.Lock()
	c.queue = append(c.queue, me)
	if c.writing {
		c.mu.Unlock()
		if c.queued != nil {
			c.queued(msgID, false)
		}
		select {
		case <-me.done:
			return me.p.Seq, me.p.Duplicate, me.p.Err
		case <-me.lead:
			if err := ctx.Err(); err != nil {
				// Too late to write for others under this deadline: pass the role on.
				c.leave(me, true)
				return 0, false, domain.E("ingest.append", domain.KindUnavailable, err)
			}
		case <-ctx.Done():
			c.leave(me, false)
			return 0, false, domain.E("ingest.append", domain.KindUnavailable, ctx.Err())
		}
	} else {
		c.writing = true
		c.mu.Unlock()
		if c.queued != nil {
			c.queued(msgID, true)
		}
	}
	c.write(ctx)
	// The batch just written held this call: it was first in the queue.
	<-me.done
	return me.p.Seq, me.p.Duplicate, me.p.Err
}

// leave takes a call whose ctx ended out of the queue. A call no longer in the queue is
// in a batch being written, and its answer is simply not waited for. A call that was
// handed the writer's role (handed, or found so here) passes it on.
func (c *committer) leave(me *call, handed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, q := range c.queue {
		if q == me {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			select {
			case <-me.lead:
				handed = true
			default:
			}
			if handed {
				c.handOffLocked()
			}
			return
		}
	}
}

// write takes one batch off the queue, appends it, answers each of its calls and hands
// the writer's role on. ctx is the writer's.
func (c *committer) write(ctx context.Context) {
	c.mu.Lock()
	n := min(len(c.queue), c.maxBatch)
	batch := make([]*call, n)
	copy(batch, c.queue)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	c.mu.Unlock()

	wctx := context.WithoutCancel(ctx)
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(wctx, deadline)
		defer cancel()
	}
	ps := make([]*domain.Pending, n)
	for i, b := range batch {
		ps[i] = &b.p
	}
	c.events.AppendBatch(wctx, ps)
	if c.observe != nil {
		c.observe(n)
	}
	for _, b := range batch {
		close(b.done)
	}

	c.mu.Lock()
	c.handOffLocked()
	c.mu.Unlock()
}

// handOffLocked gives the writer's role to the first call in the queue, or clears it
// when nothing waits.
func (c *committer) handOffLocked() {
	if len(c.queue) == 0 {
		c.writing = false
		return
	}
	select {
	case c.queue[0].lead <- struct{}{}:
	default: // already handed to it
	}
}
