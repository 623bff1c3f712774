package eventlog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestApplicantReadsOnlyThatSubject(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()
	// Three applicants of one app, interleaved, and the same applicant id under another app.
	for i := range 12 {
		logAppend(t, l, logNth(i, 3))
	}
	other := logEvent(logApp(1), logApplicant(1), domain.EventCreated, 99)
	logAppend(t, l, other)
	logAppend(t, l, logNth(12, 3))

	evs, err := l.Applicant(ctx, logApp(0), logApplicant(1))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, ev := range evs {
		if ev.ApplicantID != logApplicant(1) || ev.AppKey != logApp(0) {
			t.Fatalf("foreign event %s/%s", ev.AppKey, ev.ApplicantID)
		}
		seqs = append(seqs, ev.Seq)
	}
	// logNth(i, 3) for i = 1, 4, 7, 10 are applicant 1: sequences 2, 5, 8, 11.
	if fmt.Sprint(seqs) != "[2 5 8 11]" {
		t.Fatalf("seqs %v, want [2 5 8 11]", seqs)
	}
	if evs[0].Type != domain.EventCreated || evs[1].Type != domain.EventInProgress {
		t.Errorf("types %s, %s", evs[0].Type, evs[1].Type)
	}

	evs, err = l.Applicant(ctx, logApp(1), logApplicant(1))
	if err != nil || len(evs) != 1 || evs[0].Seq != 13 {
		t.Fatalf("other app: %v, %v", evs, err)
	}
	evs, err = l.Applicant(ctx, logApp(0), logApplicant(77))
	if err != nil || len(evs) != 0 {
		t.Fatalf("unknown applicant: %v, %v", evs, err)
	}
	if _, err := l.Applicant(ctx, logApp(0), "*"); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("wildcard applicant: %v", err)
	}
}

func TestReadRanges(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()

	calls := 0
	if err := l.Read(ctx, 1, 10, func([]domain.Event) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("empty stream: %d calls, %v", calls, err)
	}
	last := logFill(t, l, 25, 4)
	if last != 25 {
		t.Fatalf("filled to %d", last)
	}

	for _, tc := range []struct {
		from     uint64
		batch    int
		first    uint64
		batches  string
		nothing  bool
		wantLast uint64
	}{
		{from: 1, batch: 10, first: 1, batches: "[10 10 5]"},
		{from: 0, batch: 10, first: 1, batches: "[10 10 5]"},
		{from: 7, batch: 4, first: 7, batches: "[4 4 4 4 3]"},
		{from: 25, batch: 4, first: 25, batches: "[1]"},
		{from: 3, batch: 100, first: 3, batches: "[23]"},
		{from: 26, batch: 4, nothing: true},
		{from: 1 << 40, batch: 4, nothing: true},
	} {
		t.Run(fmt.Sprintf("from%d/batch%d", tc.from, tc.batch), func(t *testing.T) {
			c := newLogCollector()
			if err := l.Read(ctx, tc.from, tc.batch, c.add); err != nil {
				t.Fatal(err)
			}
			if tc.nothing {
				if c.count() != 0 {
					t.Fatalf("read %d events", c.count())
				}
				return
			}
			logCheckSeqs(t, c.seqs, tc.first, 25)
			if got := fmt.Sprint(c.batches); got != tc.batches {
				t.Errorf("batches %s, want %s", got, tc.batches)
			}
			for i, ev := range c.events {
				want := logNth(int(ev.Seq-1), 4)
				if ev.ApplicantID != want.ApplicantID || ev.Type != want.Type || !ev.EventAt.Equal(want.EventAt) {
					t.Fatalf("event %d (seq %d) is %s/%s, want %s/%s", i, ev.Seq, ev.ApplicantID, ev.Type, want.ApplicantID, want.Type)
				}
				if len(ev.Stored) == 0 {
					t.Fatalf("seq %d has no stored bytes", ev.Seq)
				}
			}
		})
	}

	if err := l.Read(ctx, 1, 0, func([]domain.Event) error { return nil }); domain.KindOf(err) != domain.KindInvalid {
		t.Errorf("batch 0: %v", err)
	}
}

func TestReadStopsAtLastSeqOfTheCall(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()
	logFill(t, l, 10, 2)
	c := newLogCollector()
	err := l.Read(ctx, 1, 3, func(evs []domain.Event) error {
		if c.count() == 0 {
			// Events appended while reading belong to the next Read.
			for i := 10; i < 15; i++ {
				logAppend(t, l, logNth(i, 2))
			}
		}
		return c.add(evs)
	})
	if err != nil {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 1, 10)
}

func TestReadStopsAtFnError(t *testing.T) {
	l := startLogFast(t)
	logFill(t, l, 20, 2)
	stop := errors.New("enough")
	calls := 0
	err := l.Read(context.Background(), 1, 5, func([]domain.Event) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Read returned %v, want fn's error as it is", err)
	}
	if calls != 2 {
		t.Fatalf("fn called %d times after its error", calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	err = l.Read(ctx, 1, 5, func([]domain.Event) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Read: %v", err)
	}
}

func TestReadRefusesForeignMessages(t *testing.T) {
	l := startLogFast(t)
	logFill(t, l, 3, 1)
	// Anyone with NATS access can publish under kyc.events.>; Read names the message.
	if _, err := l.js.Publish(context.Background(), "kyc.events.other", []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	c := newLogCollector()
	err := l.Read(context.Background(), 1, 10, c.add)
	if domain.KindOf(err) != domain.KindInternal || !strings.Contains(err.Error(), "seq 4") {
		t.Fatalf("Read over a foreign message: %v", err)
	}
	logCheckSeqs(t, c.seqs, 1, 3)
}

func TestReadAcrossDeletedMessages(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()
	logFill(t, l, 10, 2)
	for _, seq := range []uint64{1, 4, 5, 10} {
		if err := l.events.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	c := newLogCollector()
	if err := l.Read(ctx, 1, 3, c.add); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.seqs); got != "[2 3 6 7 8 9]" {
		t.Fatalf("seqs %s", got)
	}
	// Following over the same gaps delivers the same and then waits for more.
	c = newLogCollector()
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Follow(fctx, 1, 4, 10*time.Millisecond, c.add) }()
	c.waitFor(t, 6, 20*time.Second)
	logAppend(t, l, logNth(10, 2))
	c.waitFor(t, 7, 20*time.Second)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow: %v", err)
	}
	if got := fmt.Sprint(c.seqs); got != "[2 3 6 7 8 9 11]" {
		t.Fatalf("followed seqs %s", got)
	}
}

// logFollow runs Follow in a goroutine owned by the test.
func logFollow(t *testing.T, l *EventLog, from uint64, maxBatch int, maxWait time.Duration) (*logCollector, func() error) {
	t.Helper()
	c := newLogCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Follow(ctx, from, maxBatch, maxWait, c.add) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Follow did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

func TestFollowDeliversEverythingInOrderWhileAppending(t *testing.T) {
	l := startLogFast(t)
	logFill(t, l, 30, 5)
	c, stop := logFollow(t, l, 1, 7, 20*time.Millisecond)

	// Appends continue from two writers while Follow runs.
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 30 + w; i < 230; i += 2 {
				ev := logNth(i, 5)
				if _, _, err := l.Append(context.Background(), ev, logMsgID(ev)); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	c.waitFor(t, 230, 30*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v, want context.Canceled", err)
	}
	logCheckSeqs(t, c.seqs, 1, 230)
	for _, n := range c.batches {
		if n < 1 || n > 7 {
			t.Fatalf("batch of %d events; want 1..7", n)
		}
	}
}

func TestFollowFlushesAPartialBatchAfterMaxWait(t *testing.T) {
	l := startLogFast(t)
	c, stop := logFollow(t, l, 1, 1000, 30*time.Millisecond)
	logAppend(t, l, logNth(0, 1))
	c.waitFor(t, 1, 20*time.Second) // one event, far below maxBatch, still arrives
	logAppend(t, l, logNth(1, 1))
	logAppend(t, l, logNth(2, 1))
	c.waitFor(t, 3, 20*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 1, 3)
}

func TestFollowResumesFromAGivenSeq(t *testing.T) {
	l := startLogFast(t)
	logFill(t, l, 50, 3)
	c, stop := logFollow(t, l, 37, 10, 5*time.Millisecond)
	c.waitFor(t, 14, 20*time.Second)
	logAppend(t, l, logNth(50, 3))
	c.waitFor(t, 15, 20*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 37, 51)

	// Starting beyond the end waits for that sequence.
	c, stop = logFollow(t, l, 52, 10, 5*time.Millisecond)
	logAppend(t, l, logNth(51, 3))
	c.waitFor(t, 1, 20*time.Second)
	stop()
	logCheckSeqs(t, c.seqs, 52, 52)
}

func TestFollowReturnsFnErrorAsIs(t *testing.T) {
	l := startLogFast(t)
	logFill(t, l, 5, 1)
	boom := errors.New("projection full")
	err := l.Follow(context.Background(), 1, 2, time.Millisecond, func([]domain.Event) error { return boom })
	if err != boom {
		t.Fatalf("Follow returned %v", err)
	}
	if err := l.Follow(context.Background(), 1, 0, time.Millisecond, nil); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("maxBatch 0: %v", err)
	}
}

func TestFollowSurvivesReconnects(t *testing.T) {
	l := startLogFast(t)
	logFill(t, l, 100, 7)
	c, stop := logFollow(t, l, 1, 16, 5*time.Millisecond)

	// Six reconnects, each while Follow is live (it has delivered every event appended so
	// far) and as the next 50 appends are let go, so the appender writes through the
	// reconnect (retrying as Allpass would) and Follow must resume where it was.
	const rounds, chunk = 6, 50
	ctx, cancel := context.WithCancel(context.Background())
	next := make(chan struct{})
	appended := make(chan error, 1)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		appended <- func() error {
			for r := range rounds {
				select {
				case <-next:
				case <-ctx.Done():
					return ctx.Err()
				}
				for i := 100 + r*chunk; i < 100+(r+1)*chunk; i++ {
					if _, err := logAppendRetry(ctx, l, logNth(i, 7), nil); err != nil {
						return err
					}
				}
			}
			return nil
		}()
	})
	for r := range rounds {
		c.waitFor(t, 100+r*chunk, 60*time.Second)
		select {
		case next <- struct{}{}:
		case err := <-appended:
			t.Fatalf("the appender stopped: %v", err)
		}
		if err := l.conn.NC.ForceReconnect(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, 400, 60*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 1, 400)
}

// logAppendRetry appends ev, retrying while the log is unavailable (as Allpass would),
// for up to a minute or until ctx ends; retried, if not nil, is called before each
// retry. The message id makes a retry of a write that did land a duplicate, not a new
// event. It reports failure as an error, so a goroutine of the test may call it.
func logAppendRetry(ctx context.Context, l *EventLog, ev *domain.Event, retried func()) (uint64, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		seq, _, err := l.Append(actx, ev, logMsgID(ev))
		cancel()
		if err == nil {
			return seq, nil
		}
		if domain.KindOf(err) != domain.KindUnavailable || time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("Append %s: %w", logMsgID(ev), err)
		}
		if retried != nil {
			retried()
		}
		time.Sleep(50 * time.Millisecond) // back-off between retries, as a sender would
	}
}

func TestFollowSurvivesServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a server")
	}
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", natsFreePort(t))
	srvCfg := NATSConfig{StoreDir: dir, Listen: listen, SyncInterval: time.Minute,
		ListenSeed: filepath.Join(dir, "client.nk")}
	srv := natsStart(t, srvCfg)
	// The log is reached over TCP, as an ingest or query node reaches a NATS cluster.
	ext := natsStart(t, NATSConfig{URLs: []string{"nats://" + listen}, Credentials: srvCfg.ListenSeed})
	l := logOpen(t, ext, Config{}, nil)
	logFill(t, l, 40, 3)
	c, stop := logFollow(t, l, 1, 8, 5*time.Millisecond)
	c.waitFor(t, 40, 20*time.Second)

	// Shut the server down under the follower, append (retrying) through the outage,
	// and bring it back on the same store.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	refused := make(chan struct{})
	var once sync.Once
	appended := make(chan error, 1)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		appended <- func() error {
			for i := 40; i < 80; i++ {
				if _, err := logAppendRetry(ctx, l, logNth(i, 3), func() { once.Do(func() { close(refused) }) }); err != nil {
					return err
				}
			}
			return nil
		}()
	})
	// The server comes back once the outage has refused an append: the appender is
	// then retrying through it.
	select {
	case <-refused:
	case err := <-appended:
		t.Fatalf("the appender stopped before an append was refused: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no append refused while the server was down")
	}
	natsStart(t, srvCfg)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}

	c.waitFor(t, 80, 60*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 1, 80)
}

func TestFollowStopsWhenConnectionCloses(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{}, nil)
	logAppend(t, l, logNth(0, 1))
	done := make(chan error, 1)
	delivered := make(chan struct{}, 1)
	go func() {
		done <- l.Follow(context.Background(), 1, 10, time.Millisecond, func([]domain.Event) error {
			select {
			case delivered <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	// Close once Follow is following: it has delivered the log so far and waits for more.
	select {
	case <-delivered:
	case err := <-done:
		t.Fatalf("Follow returned before the close: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Follow delivered nothing")
	}
	c.Close()
	select {
	case err := <-done:
		if domain.KindOf(err) != domain.KindUnavailable {
			t.Fatalf("Follow after Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Follow still running after the connection closed")
	}
}

// BenchmarkRead drains a stream of 200,000 events (20,000 with -short) through Read,
// beside a raw ordered-consumer drain of the same stream (messages only, no decoding) in
// the same run. x-raw is Read's time over the raw drain's.
func BenchmarkRead(b *testing.B) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	l := startLogFast(b)
	last := logFill(b, l, n, 10_000)
	ctx := context.Background()

	rawDrain := func() {
		cons, err := l.events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(readPrefetch, minPrefetchBytes))
		if err != nil {
			b.Fatal(err)
		}
		defer it.Stop()
		for {
			msg, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			meta, err := msg.Metadata()
			if err != nil {
				b.Fatal(err)
			}
			if meta.Sequence.Stream == last {
				return
			}
		}
	}
	read := func() {
		got := 0
		if err := l.Read(ctx, 1, 1000, func(evs []domain.Event) error { got += len(evs); return nil }); err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("read %d events, want %d", got, n)
		}
	}
	// Rounds alternate raw and Read; the fastest round of each is reported, the estimate
	// least disturbed by whatever else the machine is doing.
	ours, raw := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for b.Loop() {
		start := time.Now()
		rawDrain()
		raw = min(raw, time.Since(start))
		start = time.Now()
		read()
		ours = min(ours, time.Since(start))
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(n), "ns/event")
	b.ReportMetric(float64(n)/ours.Seconds(), "events/s")
	b.ReportMetric(float64(n)/raw.Seconds(), "raw-events/s")
	b.ReportMetric(float64(ours)/float64(raw), "x-raw")
}

func TestReadWithSlowFnIsNotIdle(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{}, zap.New(core))
	l.readIdle = 100 * time.Millisecond
	logFill(t, l, 30, 3)
	col := newLogCollector()
	err := l.Read(context.Background(), 1, 10, func(evs []domain.Event) error {
		time.Sleep(400 * time.Millisecond) // four idle periods inside fn
		return col.add(evs)
	})
	if err != nil {
		t.Fatal(err)
	}
	logCheckSeqs(t, col.seqs, 1, 30)
	if logs.Len() != 0 {
		t.Fatalf("a slow fn was taken for a stalled stream: %v", logs.All())
	}
}

func TestReadWhenServerDiesIsUnavailable(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{}, nil)
	// Short, so Read gives up soon after the server is gone, but not so short that a
	// loaded machine (-race, two cores) is taken for a stalled stream before the first
	// delivery: at 300 ms it was, now and then, and Read gave up having read nothing.
	l.readIdle, l.requestTimeout = time.Second, 300*time.Millisecond
	const n = 3 * readPrefetch // more than the client buffers ahead
	logFill(t, l, n, 50)

	col := newLogCollector()
	done := make(chan error, 1)
	go func() {
		done <- l.Read(context.Background(), 1, 100, func(evs []domain.Event) error {
			if col.count() == 0 {
				c.Server().Shutdown()
			}
			return col.add(evs)
		})
	}()
	select {
	case err := <-done:
		if domain.KindOf(err) != domain.KindUnavailable {
			t.Fatalf("Read with the server gone: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Read did not give up")
	}
	if got := col.count(); got == 0 || got >= n {
		t.Fatalf("read %d of %d events", got, n)
	}
	logCheckSeqs(t, col.seqs, 1, uint64(col.count())) // what was delivered is a clean prefix
}

// TestAckSequences reads the sequences of real deliveries, from a consumer on the test
// server, as Metadata does, and refuses subjects that are not acknowledgement subjects.
func TestAckSequences(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()
	logFill(t, l, 5, 2)
	cons, err := l.events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq, pending, ok := ackSequences(msg.Reply())
		if !ok || seq != meta.Sequence.Stream || pending != meta.NumPending || seq != uint64(i+1) {
			t.Fatalf("%q: %d %d %v, Metadata says %d %d", msg.Reply(), seq, pending, ok,
				meta.Sequence.Stream, meta.NumPending)
		}
	}

	for _, c := range []struct {
		reply        string
		seq, pending uint64
		ok           bool
	}{
		{"$JS.ACK.KYC_EVENTS.c.1.42.7.1700000000000000000.3", 42, 3, true},
		{"$JS.ACK._.HASH.KYC_EVENTS.c.1.42.7.1700000000000000000.3", 42, 3, true},
		{"$JS.ACK._.HASH.KYC_EVENTS.c.1.42.7.1700000000000000000.3.tok", 42, 3, true},
		{"$JS.ACK.d.HASH.KYC_EVENTS.c.1.42.7.1700000000000000000.0.tok.more", 42, 0, true},
		{"$JS.ACK.KYC_EVENTS.c.1.18446744073709551615.7.1.0", math.MaxUint64, 0, true},
		{"", 0, 0, false},
		{"_INBOX.abc", 0, 0, false},
		{"$JS.ACK.", 0, 0, false},
		{"$JS.ACK.KYC_EVENTS.c.1.42.7.1", 0, 0, false},                     // 8 tokens
		{"$JS.ACK._.KYC_EVENTS.c.1.42.7.1.3", 0, 0, false},                 // 10 tokens
		{"$JS.ACK.KYC_EVENTS.c.1.0.7.1.3", 0, 0, false},                    // sequence 0
		{"$JS.ACK.KYC_EVENTS.c.1.-4.7.1.3", 0, 0, false},                   // not digits
		{"$JS.ACK.KYC_EVENTS.c.1.+4.7.1.3", 0, 0, false},                   // a sign
		{"$JS.ACK.KYC_EVENTS.c.1.4.7.1.", 0, 0, false},                     // no pending
		{"$JS.ACK.KYC_EVENTS.c.1.18446744073709551616.7.1.0", 0, 0, false}, // past uint64
		{"$JS.ACK.KYC_EVENTS.c.1.42.7.1.3x", 0, 0, false},                  // trailing junk
		{"$js.ack.KYC_EVENTS.c.1.42.7.1.3", 0, 0, false},                   // the prefix's case
	} {
		seq, pending, ok := ackSequences(c.reply)
		if seq != c.seq || pending != c.pending || ok != c.ok {
			t.Errorf("%q: %d %d %v, want %d %d %v", c.reply, seq, pending, ok, c.seq, c.pending, c.ok)
		}
	}
}

// FuzzAckSequences: no subject panics ackSequences, and what it accepts has the shape of
// an acknowledgement subject and a positive sequence.
func FuzzAckSequences(f *testing.F) {
	f.Add("$JS.ACK.KYC_EVENTS.c.1.42.7.1700000000000000000.3")
	f.Add("$JS.ACK._.HASH.KYC_EVENTS.c.1.42.7.1700000000000000000.3.tok")
	f.Add("$JS.ACK.........")
	f.Fuzz(func(t *testing.T, reply string) {
		seq, _, ok := ackSequences(reply)
		if !ok {
			return
		}
		n := strings.Count(reply, ".") + 1
		if !strings.HasPrefix(reply, "$JS.ACK.") || seq == 0 || (n != 9 && n < 11) {
			t.Fatalf("accepted %q (seq %d)", reply, seq)
		}
	})
}
