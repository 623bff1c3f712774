package eventlog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func pendingOf(evs ...*domain.Event) []*domain.Pending {
	ps := make([]*domain.Pending, len(evs))
	for i, ev := range evs {
		ps[i] = &domain.Pending{Event: ev, MsgID: logMsgID(ev)}
	}
	return ps
}

// TestAppendBatchIsOneAtomicBatch: a batch past MinAtomicBatch is stored whole, in order,
// at consecutive sequences, each Pending answered with its own message's sequence.
func TestAppendBatchIsOneAtomicBatch(t *testing.T) {
	l := startLog(t)
	if !l.atomic {
		t.Fatal("a new KYC_EVENTS does not allow atomic batches")
	}
	logAppend(t, l, logNth(0, 10)) // the batch does not start at 1
	var evs []*domain.Event
	for i := 1; i <= 3*MinAtomicBatch; i++ {
		evs = append(evs, logNth(i, 10))
	}
	ps := pendingOf(evs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.AppendBatch(ctx, ps)
	for i, p := range ps {
		if p.Err != nil || p.Duplicate || p.Seq != uint64(i+2) {
			t.Fatalf("pending %d: seq %d dup %v err %v", i, p.Seq, p.Duplicate, p.Err)
		}
		if p.Event.Seq != p.Seq || p.Event.Stored == nil {
			t.Fatalf("pending %d: event seq %d, stored %d bytes", i, p.Event.Seq, len(p.Event.Stored))
		}
		m, err := l.events.GetMsg(ctx, p.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != string(p.Event.Stored) || m.Header.Get(jetstream.MsgIDHeader) != p.MsgID {
			t.Fatalf("seq %d holds another message", p.Seq)
		}
		if m.Header.Get(headerBatchID) == "" {
			t.Fatalf("seq %d was not written as part of an atomic batch", p.Seq)
		}
	}
	if last, _ := l.LastSeq(ctx); last != uint64(len(ps)+1) {
		t.Fatalf("last seq %d, want %d", last, len(ps)+1)
	}
}

// TestAppendBatchSmallIsPublishedOneByOne: below MinAtomicBatch, no atomic batch (its fixed
// cost would be the whole write), and every event still gets its own sequence.
func TestAppendBatchSmallIsPublishedOneByOne(t *testing.T) {
	l := startLog(t)
	ps := pendingOf(logNth(0, 5), logNth(1, 5), logNth(2, 5))
	l.AppendBatch(context.Background(), ps)
	seen := map[uint64]bool{}
	for i, p := range ps {
		if p.Err != nil || p.Duplicate || p.Seq == 0 || seen[p.Seq] {
			t.Fatalf("pending %d: seq %d dup %v err %v", i, p.Seq, p.Duplicate, p.Err)
		}
		seen[p.Seq] = true
		m, err := l.events.GetMsg(context.Background(), p.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(headerBatchID) != "" {
			t.Fatalf("seq %d went in an atomic batch", p.Seq)
		}
	}
}

// TestAppendBatchWithDuplicate: JetStream refuses a whole atomic batch holding a message
// id it already has; AppendBatch then publishes message by message: the others are
// stored once each, the duplicate is answered as one with the original's sequence, and
// the same id twice inside one batch is stored once.
func TestAppendBatchWithDuplicate(t *testing.T) {
	l := startLog(t)
	orig := logNth(0, 100)
	origSeq := logAppend(t, l, orig)
	evs := []*domain.Event{}
	for i := 1; i <= 2*MinAtomicBatch; i++ {
		evs = append(evs, logNth(i, 100))
	}
	again := *logNth(0, 100) // a retried delivery: same id, later receipt
	again.ReceivedAt = again.ReceivedAt.Add(time.Hour)
	twice := *evs[3]
	evs = append(evs[:5], append([]*domain.Event{&again}, evs[5:]...)...)
	evs = append(evs, &twice)
	ps := pendingOf(evs...)
	l.AppendBatch(context.Background(), ps)

	// Per message id: at most one Pending stored it, every other one is a duplicate of
	// that sequence (the pipelined retry decides which of two equal ids goes first).
	stored := map[uint64]string{}
	byID := map[string][]*domain.Pending{}
	for i, p := range ps {
		if p.Err != nil || p.Seq == 0 {
			t.Fatalf("pending %d: seq %d err %v", i, p.Seq, p.Err)
		}
		byID[p.MsgID] = append(byID[p.MsgID], p)
	}
	for id, group := range byID {
		news := 0
		for _, p := range group {
			if p.Seq != group[0].Seq {
				t.Fatalf("message id %s answered with seqs %d and %d", id, p.Seq, group[0].Seq)
			}
			if !p.Duplicate {
				news++
			}
		}
		switch {
		case id == logMsgID(orig):
			if news != 0 || group[0].Seq != origSeq {
				t.Fatalf("the retried delivery: %d stored anew, seq %d, want 0 and %d", news, group[0].Seq, origSeq)
			}
			if !group[0].Event.ReceivedAt.Equal(orig.ReceivedAt) {
				t.Fatal("the duplicate's event is not the original as stored")
			}
		case news != 1:
			t.Fatalf("message id %s stored %d times in %d pendings", id, news, len(group))
		}
		if prev, ok := stored[group[0].Seq]; ok && prev != id {
			t.Fatalf("seq %d answered for %s and %s", group[0].Seq, prev, id)
		}
		stored[group[0].Seq] = id
	}
	if len(byID[logMsgID(&twice)]) != 2 {
		t.Fatal("the test lost its id given twice")
	}
	last, err := l.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(1 + 2*MinAtomicBatch); last != want {
		t.Fatalf("last seq %d, want %d: something was stored twice or not at all", last, want)
	}
}

// TestAppendBatchRefusesBadEventsAlone: an event Append would refuse fails alone; the
// rest of its batch is stored.
func TestAppendBatchRefusesBadEventsAlone(t *testing.T) {
	l := startLog(t)
	var evs []*domain.Event
	for i := range MinAtomicBatch + 2 {
		evs = append(evs, logNth(i, 50))
	}
	ps := pendingOf(evs...)
	ps[2].MsgID = ""
	ps[4].Event.ApplicantID = "not-a-uuid"
	l.AppendBatch(context.Background(), ps)
	for i, p := range ps {
		switch i {
		case 2, 4:
			if domain.KindOf(p.Err) != domain.KindInvalid || p.Seq != 0 {
				t.Fatalf("bad pending %d: seq %d err %v", i, p.Seq, p.Err)
			}
		default:
			if p.Err != nil || p.Seq == 0 {
				t.Fatalf("pending %d: seq %d err %v", i, p.Seq, p.Err)
			}
		}
	}
}

// TestAppendBatchServerDown: with the server gone, no Pending gets a sequence.
func TestAppendBatchServerDown(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	l := logOpen(t, c, Config{}, nil)
	c.srv.Shutdown()
	for _, n := range []int{1, MinAtomicBatch - 1, 2 * MinAtomicBatch} {
		var evs []*domain.Event
		for i := range n {
			evs = append(evs, logNth(i, 50))
		}
		ps := pendingOf(evs...)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		l.AppendBatch(ctx, ps)
		cancel()
		for i, p := range ps {
			if domain.KindOf(p.Err) != domain.KindUnavailable || p.Seq != 0 {
				t.Fatalf("batch of %d, pending %d: seq %d err %v", n, i, p.Seq, p.Err)
			}
		}
	}
}

// TestOpenUpdatesStreamToAllowAtomic: a KYC_EVENTS made before group commit (no atomic
// publish) is updated on Open, keeps its messages, and takes atomic batches.
func TestOpenUpdatesStreamToAllowAtomic(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	old := EventStreamConfig(Config{})
	old.AllowAtomicPublish = false
	ctx := context.Background()
	s, err := c.JS.CreateStream(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.JS.Publish(ctx, "kyc.events.allpass.x.y", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.AllowAtomicPublish {
		t.Fatal("the old stream allows atomic publish already")
	}
	l := logOpen(t, c, Config{}, nil)
	if !l.atomic {
		t.Fatal("Open did not update the stream")
	}
	info, err := l.events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Config.AllowAtomicPublish || info.State.Msgs != 1 {
		t.Fatalf("after Open: atomic %v, %d messages", info.Config.AllowAtomicPublish, info.State.Msgs)
	}
	var evs []*domain.Event
	for i := range MinAtomicBatch {
		evs = append(evs, logNth(i, 50))
	}
	ps := pendingOf(evs...)
	l.AppendBatch(ctx, ps)
	for i, p := range ps {
		if p.Err != nil || p.Seq != uint64(i+2) {
			t.Fatalf("pending %d: seq %d err %v", i, p.Seq, p.Err)
		}
	}
	// A second Open finds nothing to update.
	if l2 := logOpen(t, c, Config{}, nil); !l2.atomic {
		t.Fatal("second Open")
	}
}

// BenchmarkAppendBatch measures where an atomic batch starts to pay: one write of n
// events as an atomic batch against the same n published one by one, pipelined, on an
// R1 file stream that fsyncs every write. Run with -bench AppendBatch -benchtime 20x.
func BenchmarkAppendBatch(b *testing.B) {
	for _, n := range []int{2, 4, 8, 12, 16, 32, 64, 128, 250} {
		for _, mode := range []string{"atomic", "each"} {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				l := startLog(b)
				ctx := context.Background()
				k := 0
				for b.Loop() {
					b.StopTimer()
					evs := make([]*domain.Event, n)
					for i := range evs {
						evs[i] = logNth(k, 1000)
						k++
					}
					ps := pendingOf(evs...)
					msgs := make([]*nats.Msg, 0, n)
					for _, p := range ps {
						m, err := l.message(context.Background(), "bench", p.Event, p.MsgID)
						if err != nil {
							b.Fatal(err)
						}
						m.Header.Set(jetstream.MsgIDHeader, p.MsgID)
						msgs = append(msgs, m)
					}
					b.StartTimer()
					if mode == "atomic" {
						l.publishAtomic(ctx, "bench", ps, msgs)
					} else {
						l.publishEach(ctx, "bench", ps, msgs)
					}
					for _, p := range ps {
						if p.Err != nil || p.Duplicate {
							b.Fatal(p.Err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/write")
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// TestParseAck: the fast path reads exactly the two usual acknowledgements and leaves
// everything else to encoding/json.
func TestParseAck(t *testing.T) {
	for in, want := range map[string]*jetstream.PubAck{
		`{"stream":"KYC_EVENTS","seq":42}`:                   {Stream: EventStream, Sequence: 42},
		`{"stream":"KYC_EVENTS","seq":7,"duplicate":true}`:   {Stream: EventStream, Sequence: 7, Duplicate: true},
		`{"stream":"KYC_EVENTS","seq":0}`:                    nil,
		`{"stream":"KYC_EVENTS","seq":}`:                     nil,
		`{"stream":"KYC_EVENTS","seq":1,"domain":"x"}`:       nil,
		`{"stream":"OTHER","seq":1}`:                         nil,
		`{"stream":"KYC_EVENTS","seq":99999999999999999999}`: nil,
		`{"error":{"code":503}}`:                             nil,
	} {
		got, ok := parseAck([]byte(in))
		if (want == nil) == ok || (ok && *got != *want) {
			t.Errorf("parseAck(%s) = %+v, %v", in, got, ok)
		}
	}
}

// startLogMaxPayload is an event log on an embedded server whose maximum payload is max,
// as an external cluster's may be (nats-server's default is 1 MiB).
func startLogMaxPayload(tb testing.TB, max int32) *EventLog {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{
		DontListen: true, JetStream: true, StoreDir: tb.TempDir(), NoSigs: true, MaxPayload: max,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(30 * time.Second) {
		tb.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	c, err := Wrap(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return logOpen(tb, c, Config{}, nil)
}

// TestAppendBatchEventAtMaxPayloadFailsAlone: the server's maximum payload counts a
// message's headers with its data. An event whose stored bytes fit under it but not
// with the headers of an atomic batch is refused alone, as too large, before anything is
// published; the webhooks gathered with it are stored. (Refused by the client in the
// middle of a batch, it failed the whole batch as too large, and left the batch's first
// messages staged on the server.)
func TestAppendBatchEventAtMaxPayloadFailsAlone(t *testing.T) {
	const max = 64 << 10
	l := startLogMaxPayload(t, max)
	var evs []*domain.Event
	for i := range MinAtomicBatch + 2 {
		evs = append(evs, logNth(i, 50))
	}
	const big = 3
	ev := evs[big]
	stored := *ev
	data, err := appendStoredEvent(nil, &stored)
	if err != nil {
		t.Fatal(err)
	}
	// Stored bytes 64 under the maximum: the batch headers alone are more.
	ev.Raw.Body += strings.Repeat("x", max-64-len(data))
	if data, _ = appendStoredEvent(nil, ev); len(data) != max-64 {
		t.Fatalf("padded event stores %d bytes, want %d", len(data), max-64)
	}
	ps := pendingOf(evs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.AppendBatch(ctx, ps)
	for i, p := range ps {
		switch {
		case i == big:
			if domain.KindOf(p.Err) != domain.KindTooLarge || p.Seq != 0 {
				t.Fatalf("the event at the maximum: seq %d err %v, want KindTooLarge", p.Seq, p.Err)
			}
		case p.Err != nil || p.Seq == 0:
			t.Fatalf("pending %d, gathered with an event too large: seq %d err %v", i, p.Seq, p.Err)
		}
	}
	if last, _ := l.LastSeq(ctx); last != uint64(len(ps)-1) {
		t.Fatalf("last seq %d, want %d", last, len(ps)-1)
	}
	// Alone, it is refused the same way, never as the log's failure.
	if _, _, err := l.Append(ctx, evs[big], ps[big].MsgID); domain.KindOf(err) != domain.KindTooLarge {
		t.Fatalf("Append alone: %v, want KindTooLarge", err)
	}
}
