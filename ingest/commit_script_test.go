package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/goleak"
)

// The tests in this file script the group commit's hand-offs one step at a time. The log
// is scriptLog, whose Prepare and AppendBatch wait for the test, and the committer's
// queued hook stops each call where the test needs it; every step waits on one of those
// or on an answer, never on the clock. scriptLog is for ordering only: what the
// committer stores in a real log is tested against an embedded nats-server
// (commit_test.go, handler_test.go).

// scriptWait bounds every wait of a script, so that a committer that hangs fails the
// test with the step it hung at instead of running into the test binary's timeout. It
// orders nothing.
const scriptWait = 10 * time.Second

// answerFn answers one AppendBatch: it sets each Pending's sequence or error.
type answerFn func(ctx context.Context, ps []*domain.Pending)

// scriptLog is an EventLog whose writes wait for the test. Every AppendBatch is handed
// to the test on batches and returns when the test answers it; Prepare of a msgID in
// holdPrepare is handed on prepares and returns what the test says. Sequences are
// given in answer order, and a msgID already stored is answered as a duplicate with its
// first sequence, as the stream's duplicate window would.
type scriptLog struct {
	batches  chan *batchCall
	prepares chan *prepareCall
	stop     chan struct{} // closed when the test ends: whatever still waits gives up

	mu          sync.Mutex
	holdPrepare map[string]bool
	last        uint64
	seqOf       map[string]uint64
}

// batchCall is one AppendBatch under way.
type batchCall struct {
	log    *scriptLog
	ctx    context.Context
	ids    []string // the batch's msgIDs, in order
	answer chan answerFn
}

// prepareCall is one held Prepare.
type prepareCall struct {
	id  string
	err chan error
}

func newScriptLog() *scriptLog {
	return &scriptLog{
		batches:     make(chan *batchCall),
		prepares:    make(chan *prepareCall),
		stop:        make(chan struct{}),
		holdPrepare: map[string]bool{},
		seqOf:       map[string]uint64{},
	}
}

var errScriptStopped = errors.New("script stopped")

func (l *scriptLog) Prepare(ctx context.Context, p *domain.Pending) error {
	l.mu.Lock()
	hold := l.holdPrepare[p.MsgID]
	l.mu.Unlock()
	if hold {
		pc := &prepareCall{id: p.MsgID, err: make(chan error)}
		select {
		case l.prepares <- pc:
		case <-l.stop:
			return errScriptStopped
		}
		select {
		case err := <-pc.err:
			if err != nil {
				return err
			}
		case <-l.stop:
			return errScriptStopped
		}
	}
	p.Stored = []byte(p.MsgID)
	return nil
}

func (l *scriptLog) AppendBatch(ctx context.Context, ps []*domain.Pending) {
	b := &batchCall{log: l, ctx: ctx, answer: make(chan answerFn)}
	for _, p := range ps {
		b.ids = append(b.ids, p.MsgID)
	}
	stopped := func() {
		for _, p := range ps {
			p.Err = errScriptStopped
		}
	}
	select {
	case l.batches <- b:
	case <-l.stop:
		stopped()
		return
	}
	select {
	case fn := <-b.answer:
		fn(ctx, ps)
	case <-l.stop:
		stopped()
	}
}

var errNotScripted = domain.E("scriptLog", domain.KindInternal, "not used by the group commit")

func (l *scriptLog) Append(context.Context, *domain.Event, string) (uint64, bool, error) {
	return 0, false, errNotScripted
}
func (l *scriptLog) Reject(context.Context, domain.Reject) error { return errNotScripted }
func (l *scriptLog) Rejects(context.Context, uint64, func(domain.Reject) error) error {
	return errNotScripted
}

// store answers every Pending of a batch as the stream would: a new sequence, or the
// first one and Duplicate for a msgID it already holds.
func (l *scriptLog) store(_ context.Context, ps []*domain.Pending) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ps {
		if seq, ok := l.seqOf[p.MsgID]; ok {
			p.Seq, p.Duplicate = seq, true
			continue
		}
		l.last++
		l.seqOf[p.MsgID] = l.last
		p.Seq = l.last
	}
}

// unanswered is a write whose acknowledgement never comes: it fails every Pending as
// KindUnavailable once the write's ctx ends, as the real log does when its deadline
// passes.
func (l *scriptLog) unanswered(ctx context.Context, ps []*domain.Pending) {
	select {
	case <-ctx.Done():
	case <-l.stop:
	}
	for _, p := range ps {
		p.Err = domain.E("scriptLog.AppendBatch", domain.KindUnavailable, ctx.Err())
	}
}

// commit lets the batch be stored.
func (b *batchCall) commit(t *testing.T) {
	t.Helper()
	b.give(t, b.log.store)
}

// give answers the batch with fn.
func (b *batchCall) give(t *testing.T, fn answerFn) {
	t.Helper()
	select {
	case b.answer <- fn:
	case <-time.After(scriptWait):
		t.Fatalf("batch %v: AppendBatch no longer waits for its answer", b.ids)
	}
}

// script drives one committer over a scriptLog.
type script struct {
	t      *testing.T
	ctx    context.Context // ended when the test ends
	log    *scriptLog
	c      *committer
	notes  chan queuedNote
	wg     sync.WaitGroup
	sizesM sync.Mutex
	sizes  []int
}

// queuedNote is one call stopped in the committer's queued hook; it goes on when resume
// is closed.
type queuedNote struct {
	id     string
	writer bool
	resume chan struct{}
}

// callAnswer is what one append returned.
type callAnswer struct {
	seq uint64
	dup bool
	err error
}

// newScript starts a script over a committer with maxBatch. Cleanup ends every wait
// still open, waits for every append it started and checks that no goroutine is left.
func newScript(t *testing.T, maxBatch int) *script {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx, cancel := context.WithCancel(context.Background())
	s := &script{t: t, ctx: ctx, log: newScriptLog(), notes: make(chan queuedNote)}
	s.c = newCommitter(s.log, maxBatch, func(n int) {
		s.sizesM.Lock()
		s.sizes = append(s.sizes, n)
		s.sizesM.Unlock()
	})
	s.c.queued = func(id string, writer bool) {
		n := queuedNote{id: id, writer: writer, resume: make(chan struct{})}
		select {
		case s.notes <- n:
		case <-s.log.stop:
			return
		}
		select {
		case <-n.resume:
		case <-s.log.stop:
		}
	}
	t.Cleanup(func() {
		close(s.log.stop)
		cancel()
		s.wg.Wait()
	})
	return s
}

// append starts c.append(ctx, ...) for msgID id on a goroutine of its own; its answer
// arrives on the channel returned.
func (s *script) append(ctx context.Context, id string) <-chan callAnswer {
	out := make(chan callAnswer, 1)
	s.wg.Go(func() {
		seq, dup, err := s.c.append(ctx, &domain.Event{ApplicantID: domain.ApplicantID(id)}, id)
		out <- callAnswer{seq, dup, err}
	})
	return out
}

// queued waits for call id to stop in the queued hook as the writer or as a waiter, and
// returns it held there.
func (s *script) queued(id string, writer bool) queuedNote {
	s.t.Helper()
	select {
	case n := <-s.notes:
		if n.id != id || n.writer != writer {
			s.t.Fatalf("queued %q (writer %v), want %q (writer %v)", n.id, n.writer, id, writer)
		}
		return n
	case <-time.After(scriptWait):
		s.t.Fatalf("%q never joined the queue (writer %v)", id, writer)
	}
	return queuedNote{}
}

// pass waits for call id to join the queue as the writer or as a waiter and lets it go on.
func (s *script) pass(id string, writer bool) {
	s.t.Helper()
	close(s.queued(id, writer).resume)
}

// batch waits for the next AppendBatch and checks that it writes ids, in that order.
func (s *script) batch(ids ...string) *batchCall {
	s.t.Helper()
	select {
	case b := <-s.log.batches:
		if !slices.Equal(b.ids, ids) {
			s.t.Fatalf("batch %v, want %v", b.ids, ids)
		}
		return b
	case <-time.After(scriptWait):
		s.t.Fatalf("no batch written, want %v", ids)
	}
	return nil
}

// prepare waits for the held Prepare of id.
func (s *script) prepare(id string) *prepareCall {
	s.t.Helper()
	select {
	case pc := <-s.log.prepares:
		if pc.id != id {
			s.t.Fatalf("Prepare of %q, want %q", pc.id, id)
		}
		return pc
	case <-time.After(scriptWait):
		s.t.Fatalf("%q never prepared", id)
	}
	return nil
}

// answerOf waits for an append's answer.
func (s *script) answerOf(id string, ch <-chan callAnswer) callAnswer {
	s.t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(scriptWait):
		s.t.Fatalf("%q was never answered", id)
	}
	return callAnswer{}
}

// stored checks that id was answered seq (and dup).
func (s *script) stored(id string, ch <-chan callAnswer, seq uint64, dup bool) {
	s.t.Helper()
	a := s.answerOf(id, ch)
	if a.err != nil || a.seq != seq || a.dup != dup {
		s.t.Errorf("%q answered seq %d dup %v err %v, want seq %d dup %v", id, a.seq, a.dup, a.err, seq, dup)
	}
}

// failed checks that id was answered an error of kind carrying cause.
func (s *script) failed(id string, ch <-chan callAnswer, kind domain.ErrorKind, cause error) {
	s.t.Helper()
	a := s.answerOf(id, ch)
	if a.err == nil || domain.KindOf(a.err) != kind || !errors.Is(a.err, cause) {
		s.t.Errorf("%q answered seq %d dup %v err %v, want a %v error from %v", id, a.seq, a.dup, a.err, kind, cause)
	}
}

// leadHeldBy says which queued call holds the writer's role handed to it and not yet
// taken, or "" when none does.
func (s *script) leadHeldBy() string {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if len(s.c.queue) > 0 && len(s.c.queue[0].lead) == 1 {
		return s.c.queue[0].p.MsgID
	}
	return ""
}

// idle checks that the committer is at rest: nothing queued and the writer's role free,
// so the next append writes at once.
func (s *script) idle() {
	s.t.Helper()
	s.c.mu.Lock()
	q, writing := len(s.c.queue), s.c.writing
	s.c.mu.Unlock()
	if q != 0 || writing {
		s.t.Errorf("committer not at rest: %d queued, writing %v", q, writing)
	}
}

// TestCommitHandsWriterRoleToWaiter: the writes that arrive while a batch is in flight
// wait; when it is answered the first of them takes the writer's role and writes up to
// maxBatch of them, in order, under its own deadline; what is left goes to the next
// writer, and the last one frees the role. A retry inside a batch is its original's
// duplicate.
func TestCommitHandsWriterRoleToWaiter(t *testing.T) {
	s := newScript(t, 2)
	w := s.append(s.ctx, "w")
	s.pass("w", true)
	b1 := s.batch("w")

	deadline := time.Now().Add(time.Hour)
	ctxA, cancelA := context.WithDeadline(s.ctx, deadline)
	defer cancelA()
	a := s.append(ctxA, "a")
	s.pass("a", false)
	retry := s.append(s.ctx, "w") // Allpass retries w while w's write is in flight
	s.pass("w", false)
	c := s.append(s.ctx, "c")
	s.pass("c", false)

	b1.commit(t)
	s.stored("w", w, 1, false)
	b2 := s.batch("a", "w")
	if d, ok := b2.ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("a's batch written under deadline %v (%v), want a's %v", d, ok, deadline)
	}
	b2.commit(t)
	s.stored("a", a, 2, false)
	s.stored("w (retry)", retry, 1, true)

	b3 := s.batch("c")
	if d, ok := b3.ctx.Deadline(); ok {
		t.Errorf("c's batch written under deadline %v; c has none", d)
	}
	b3.commit(t)
	s.stored("c", c, 3, false)
	s.idle()

	d := s.append(s.ctx, "d")
	s.pass("d", true) // the role is free: d writes at once
	s.batch("d").commit(t)
	s.stored("d", d, 4, false)
	s.idle()

	s.sizesM.Lock()
	defer s.sizesM.Unlock()
	if want := []int{1, 2, 1, 1}; !slices.Equal(s.sizes, want) {
		t.Errorf("batch sizes observed %v, want %v", s.sizes, want)
	}
}

// TestCommitWaiterCancelledWhileQueued: a waiter whose ctx ends leaves the queue and is
// answered KindUnavailable at once, without waiting for the write in flight; it is
// never written, and the role goes to the next waiter, not to the one that left.
func TestCommitWaiterCancelledWhileQueued(t *testing.T) {
	s := newScript(t, 8)
	w := s.append(s.ctx, "w")
	s.pass("w", true)
	b1 := s.batch("w")

	ctxA, cancelA := context.WithCancel(s.ctx)
	a := s.append(ctxA, "a")
	s.pass("a", false)
	b := s.append(s.ctx, "b")
	s.pass("b", false)
	ctxZ, cancelZ := context.WithCancel(s.ctx)
	z := s.append(ctxZ, "z")
	s.pass("z", false)

	// a is first in the queue, z last; both leave while w's write is still held.
	cancelA()
	s.failed("a", a, domain.KindUnavailable, context.Canceled)
	cancelZ()
	s.failed("z", z, domain.KindUnavailable, context.Canceled)

	b1.commit(t)
	s.stored("w", w, 1, false)
	s.batch("b").commit(t)
	s.stored("b", b, 2, false)
	s.idle()

	// a was never stored: its retry is new.
	a2 := s.append(s.ctx, "a")
	s.pass("a", true)
	s.batch("a").commit(t)
	s.stored("a (retry)", a2, 3, false)
	s.idle()
}

// TestCommitWaiterCancelledWhileBatchInFlight: a waiter whose ctx ends while its batch
// is being written is answered KindUnavailable at once; the batch is not cancelled (not
// by that waiter, not by its writer's client hanging up) and still answers the others.
// The webhook may then be stored, and its retry is answered as the duplicate.
func TestCommitWaiterCancelledWhileBatchInFlight(t *testing.T) {
	s := newScript(t, 8)
	w := s.append(s.ctx, "w")
	s.pass("w", true)
	b1 := s.batch("w")

	ctxA, cancelA := context.WithCancel(s.ctx)
	a := s.append(ctxA, "a")
	s.pass("a", false)
	ctxB, cancelB := context.WithCancel(s.ctx)
	b := s.append(ctxB, "b")
	s.pass("b", false)
	c := s.append(s.ctx, "c")
	s.pass("c", false)

	b1.commit(t)
	s.stored("w", w, 1, false)
	b2 := s.batch("a", "b", "c") // a writes, b and c ride along

	cancelB()
	s.failed("b", b, domain.KindUnavailable, context.Canceled) // before the batch is answered
	cancelA()
	if err := b2.ctx.Err(); err != nil {
		t.Errorf("the writer's client hanging up ended its batch's write: %v", err)
	}
	b2.commit(t)
	s.stored("a", a, 2, false) // the writer waits for its own batch
	s.stored("c", c, 4, false)
	s.idle()

	// b was stored at 3 after its answer: Allpass's retry is the duplicate.
	b2nd := s.append(s.ctx, "b")
	s.pass("b", true)
	s.batch("b").commit(t)
	s.stored("b (retry)", b2nd, 3, true)
	s.idle()
}

// TestCommitWaiterCancelledHoldingLead: a waiter handed the writer's role after its ctx
// ended does not write; it passes the role to the next waiter, or frees it when none is
// left, so nothing waits for a writer that will not come. Which way the waiter learns
// is up to its select (the role and the end of its ctx are both ready); both must pass
// the role, and the rounds give each way its turn.
func TestCommitWaiterCancelledHoldingLead(t *testing.T) {
	for round := range 8 {
		t.Run(fmt.Sprintf("next waiter/%d", round), func(t *testing.T) {
			s := newScript(t, 8)
			w := s.append(s.ctx, "w")
			s.pass("w", true)
			b1 := s.batch("w")
			ctxA, cancelA := context.WithCancel(s.ctx)
			a := s.append(ctxA, "a")
			held := s.queued("a", false) // a is queued, not yet waiting
			b := s.append(s.ctx, "b")
			s.pass("b", false)

			cancelA()
			b1.commit(t)
			s.stored("w", w, 1, false) // w returns after it handed the role on
			if h := s.leadHeldBy(); h != "a" {
				t.Fatalf("the writer's role is held by %q, want a", h)
			}
			close(held.resume)
			s.failed("a", a, domain.KindUnavailable, context.Canceled)
			s.batch("b").commit(t)
			s.stored("b", b, 2, false)
			s.idle()
		})
		t.Run(fmt.Sprintf("no waiter/%d", round), func(t *testing.T) {
			s := newScript(t, 8)
			w := s.append(s.ctx, "w")
			s.pass("w", true)
			b1 := s.batch("w")
			ctxA, cancelA := context.WithCancel(s.ctx)
			a := s.append(ctxA, "a")
			held := s.queued("a", false)

			cancelA()
			b1.commit(t)
			s.stored("w", w, 1, false)
			if h := s.leadHeldBy(); h != "a" {
				t.Fatalf("the writer's role is held by %q, want a", h)
			}
			close(held.resume)
			s.failed("a", a, domain.KindUnavailable, context.Canceled)
			s.idle()
			d := s.append(s.ctx, "d")
			s.pass("d", true)
			s.batch("d").commit(t)
			s.stored("d", d, 2, false)
			s.idle()
		})
	}
}

// TestCommitWriterDeadlinePassesMidBatch: a batch is written under its writer's
// deadline; when it passes before the log answers, every call of the batch is answered
// KindUnavailable (a waiter whose own ctx is still open too: it is not written), and
// the calls that queued meanwhile get the role and are written.
func TestCommitWriterDeadlinePassesMidBatch(t *testing.T) {
	s := newScript(t, 8)
	// The deadline is short, but nothing below waits for it except the log's write: the
	// hook holds a before it writes, so b joins its batch whenever the deadline passes.
	deadline := time.Now().Add(50 * time.Millisecond)
	ctxA, cancelA := context.WithDeadline(s.ctx, deadline)
	defer cancelA()
	a := s.append(ctxA, "a")
	heldA := s.queued("a", true)
	b := s.append(s.ctx, "b")
	s.pass("b", false)
	close(heldA.resume)

	b1 := s.batch("a", "b")
	if d, ok := b1.ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("batch written under deadline %v (%v), want a's %v", d, ok, deadline)
	}
	c := s.append(s.ctx, "c")
	s.pass("c", false)
	b1.give(t, s.log.unanswered)
	s.failed("a", a, domain.KindUnavailable, context.DeadlineExceeded)
	s.failed("b", b, domain.KindUnavailable, context.DeadlineExceeded)

	s.batch("c").commit(t)
	s.stored("c", c, 1, false)
	s.idle()
}

// TestCommitPrepareHoldsUpOnlyItsOwn: a call is prepared (encoded, sealed, its data key
// made) before it joins the queue, so a slow Prepare neither holds the writer's role nor
// delays the others; a Prepare that fails is the call's answer, and nothing is queued.
func TestCommitPrepareHoldsUpOnlyItsOwn(t *testing.T) {
	s := newScript(t, 8)
	s.log.holdPrepare["a"] = true
	s.log.holdPrepare["x"] = true
	a := s.append(s.ctx, "a")
	pa := s.prepare("a")

	w := s.append(s.ctx, "w")
	s.pass("w", true) // a, still preparing, does not hold the role
	s.batch("w").commit(t)
	s.stored("w", w, 1, false)
	s.idle()

	x := s.append(s.ctx, "x")
	px := s.prepare("x")
	refused := domain.E("scriptLog.Prepare", domain.KindInvalid, "refused")
	px.err <- refused
	s.failed("x", x, domain.KindInvalid, refused)
	s.idle()

	pa.err <- nil
	s.pass("a", true)
	s.batch("a").commit(t)
	s.stored("a", a, 2, false)
	s.idle()
}
