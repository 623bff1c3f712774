package eventlog

// Shared helpers for the event-log tests (prefixed nats/log; the projection tests keep
// their own). Everything runs against a real embedded nats-server in t.TempDir().

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// natsStart starts an embedded server with cfg (StoreDir defaults to a fresh temp dir)
// and connects to it; the connection and server are closed when the test ends.
func natsStart(tb testing.TB, cfg NATSConfig) *Conn {
	tb.Helper()
	if cfg.StoreDir == "" && len(cfg.URLs) == 0 {
		cfg.StoreDir = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg, natsTestLogger(tb))
	if err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// natsTestLogger logs warnings and errors into the test output.
func natsTestLogger(tb testing.TB) *zap.Logger {
	return zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
}

// logOpen opens the event log over c.
func logOpen(tb testing.TB, c *Conn, cfg Config, log *zap.Logger) *EventLog {
	tb.Helper()
	if log == nil {
		log = natsTestLogger(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, c, cfg, log)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return l
}

// startLog is an event log on a fresh embedded server that fsyncs every write, as
// production does.
func startLog(tb testing.TB) *EventLog {
	tb.Helper()
	return logOpen(tb, natsStart(tb, NATSConfig{}), Config{}, nil)
}

// startLogFast is startLog with a relaxed fsync (once a minute), for tests and
// benchmarks that load many events and do not test durability.
func startLogFast(tb testing.TB) *EventLog {
	tb.Helper()
	return logOpen(tb, natsStart(tb, NATSConfig{SyncInterval: time.Minute}), Config{}, nil)
}

// logUUID returns a canonical lower-case UUID derived from kind and n, so that tests
// name applicants and apps deterministically.
func logUUID(kind string, n int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", kind, n))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func logApp(n int) domain.AppKey            { return domain.AppKey(logUUID("app", n)) }
func logApplicant(n int) domain.ApplicantID { return domain.ApplicantID(logUUID("applicant", n)) }
func logExternal(n int) domain.ExternalUserID {
	return domain.ExternalUserID(fmt.Sprintf("user-%d", n))
}

var logBase = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// logEvent builds an event shaped like what ingest stores: the plaintext payload and a
// raw body of realistic size (the encrypted envelope is about twice the plaintext, hex).
func logEvent(app domain.AppKey, id domain.ApplicantID, typ domain.EventType, n int) *domain.Event {
	at := logBase.Add(time.Duration(n) * time.Second)
	payload := fmt.Sprintf(`{"type":%q,"id":%q,"externalUserId":"user-%s","appKey":%q,`+
		`"warnings":[],"stepName":"document","updatedAt":%q,"n":%d}`,
		typ, id, id[:8], app, at.Format(time.RFC3339Nano), n)
	sum := sha256.Sum256([]byte(payload))
	cipher := make([]byte, 0, 2*len(payload)+64)
	for len(cipher) < 2*len(payload)+32 {
		cipher = hex.AppendEncode(cipher, sum[:])
	}
	return &domain.Event{
		V:              domain.StoredVersionClear,
		Provider:       "allpass",
		AppKey:         app,
		ApplicantID:    id,
		ExternalUserID: domain.ExternalUserID("user-" + string(id[:8])),
		Type:           typ,
		StepName:       "document",
		EventAt:        at,
		EventAtSource:  domain.SourcePayloadUpdatedAt,
		ReceivedAt:     at.Add(150 * time.Millisecond),
		Payload:        json.RawMessage(payload),
		Raw: &domain.Raw{
			Body:      `{"status":true,"statusCode":200,"data":"` + string(cipher) + `","time":"` + at.Format(time.RFC3339) + `"}`,
			Signature: hex.EncodeToString(sum[:]),
		},
	}
}

// logMsgID is a Nats-Msg-Id in the spirit of DESIGN.md section 3: hex SHA-256 over the
// appKey, the plaintext and the event time.
func logMsgID(ev *domain.Event) string {
	h := sha256.New()
	h.Write([]byte(ev.AppKey))
	h.Write(ev.Payload)
	h.Write([]byte(ev.EventAt.Format(time.RFC3339Nano)))
	return hex.EncodeToString(h.Sum(nil))
}

// logAppend appends ev and fails the test unless it is stored as a new message.
func logAppend(tb testing.TB, l *EventLog, ev *domain.Event) uint64 {
	tb.Helper()
	seq, dup, err := l.Append(context.Background(), ev, logMsgID(ev))
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	if dup {
		tb.Fatalf("Append: unexpected duplicate at seq %d", seq)
	}
	return seq
}

// logNth is the n-th event of a synthetic log over applicants applicants of one app
// (n counts from 0): applicants take turns, each running through created, in progress,
// then step passed events.
func logNth(n, applicants int) *domain.Event {
	types := []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventStepPassed}
	a := n % applicants
	k := n / applicants
	typ := types[min(k, len(types)-1)]
	return logEvent(logApp(0), logApplicant(a), typ, n)
}

// logFill appends n synthetic events (logNth) quickly, with the same stored bytes,
// header and message ids Append would use, by publishing asynchronously. It returns
// the last sequence.
func logFill(tb testing.TB, l *EventLog, n, applicants int) uint64 {
	tb.Helper()
	js, err := jetstream.New(l.conn.NC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < n; i++ {
		ev := logNth(i, applicants)
		subject, err := Subject(ev.AppKey, ev.ApplicantID)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{HeaderType: []string{string(ev.Type)}}}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(logMsgID(ev)), jetstream.WithExpectStream(EventStream)); err != nil {
			tb.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("async publishes did not complete")
	}
	last, err := l.LastSeq(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return last
}

// logCollector gathers what Read or Follow delivers and checks the order as it goes.
type logCollector struct {
	mu      sync.Mutex
	seqs    []uint64
	batches []int
	events  []domain.Event
	more    chan struct{} // signalled after each batch
}

func newLogCollector() *logCollector { return &logCollector{more: make(chan struct{}, 1)} }

func (c *logCollector) add(evs []domain.Event) error {
	c.mu.Lock()
	c.batches = append(c.batches, len(evs))
	for _, ev := range evs {
		c.seqs = append(c.seqs, ev.Seq)
	}
	c.events = append(c.events, evs...)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
	return nil
}

func (c *logCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

// waitFor blocks until at least n events arrived or the deadline passes.
func (c *logCollector) waitFor(tb testing.TB, n int, within time.Duration) {
	tb.Helper()
	deadline := time.After(within)
	for c.count() < n {
		select {
		case <-c.more:
		case <-deadline:
			tb.Fatalf("got %d events, want %d", c.count(), n)
		}
	}
}

// logCheckSeqs fails unless seqs is exactly from, from+1, ..., to.
func logCheckSeqs(tb testing.TB, seqs []uint64, from, to uint64) {
	tb.Helper()
	if want := int(to - from + 1); len(seqs) != want {
		tb.Fatalf("got %d events, want %d (seqs %v...)", len(seqs), want, seqs[:min(len(seqs), 20)])
	}
	for i, s := range seqs {
		if s != from+uint64(i) {
			tb.Fatalf("event %d has seq %d, want %d", i, s, from+uint64(i))
		}
	}
}
