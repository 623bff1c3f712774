package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestOpenEventLogCreatesStreams(t *testing.T) {
	l := startLog(t)
	ctx := context.Background()

	ev, err := l.js.Stream(ctx, EventStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ev.CachedInfo().Config
	if got := strings.Join(cfg.Subjects, ","); got != EventSubjects {
		t.Errorf("subjects %q", got)
	}
	if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy ||
		cfg.Discard != jetstream.DiscardNew || cfg.MaxAge != 0 || cfg.Duplicates != 24*time.Hour ||
		cfg.Replicas != 1 || cfg.MaxMsgsPerSubject != -1 || cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 ||
		!cfg.AllowDirect || cfg.DenyDelete || cfg.DenyPurge {
		t.Errorf("KYC_EVENTS config %+v", cfg)
	}

	rj, err := l.js.Stream(ctx, RejectStream)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := rj.CachedInfo().Config
	if got := strings.Join(rcfg.Subjects, ","); got != RejectSubjects {
		t.Errorf("reject subjects %q", got)
	}
	if rcfg.Storage != jetstream.FileStorage || rcfg.Discard != jetstream.DiscardOld ||
		rcfg.MaxBytes != DefaultRejectsMaxBytes || rcfg.Duplicates > time.Hour || rcfg.Replicas != 1 {
		t.Errorf("KYC_REJECTS config %+v", rcfg)
	}
}

func TestOpenEventLogReopenReportsDifferences(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	l := logOpen(t, c, Config{}, nil)
	logAppend(t, l, logNth(0, 1))

	// Same settings: nothing to report, nothing lost.
	core, logs := observer.New(zapcore.WarnLevel)
	l2 := logOpen(t, c, Config{}, zap.New(core))
	if logs.Len() != 0 {
		t.Fatalf("re-open with the same settings warned: %v", logs.All())
	}
	if last, _ := l2.LastSeq(context.Background()); last != 1 {
		t.Fatalf("after re-open LastSeq %d, want 1", last)
	}

	// Different settings: one warning per setting, stream left as it was.
	core, logs = observer.New(zapcore.WarnLevel)
	logOpen(t, c, Config{DuplicateWindow: time.Hour, RejectsMaxBytes: 1 << 20}, zap.New(core))
	got := map[string]string{}
	for _, e := range logs.FilterMessage("stream setting differs from configuration; left unchanged").All() {
		f := e.ContextMap()
		got[fmt.Sprint(f["stream"], "/", f["setting"])] = fmt.Sprint(f["want"], " vs ", f["have"])
	}
	want := map[string]string{
		"KYC_EVENTS/duplicate_window": "1h0m0s vs 24h0m0s",
		"KYC_REJECTS/max_bytes":       "1048576 vs 67108864",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || logs.Len() != len(want) {
		t.Fatalf("warnings %v (all: %v), want %v", got, logs.All(), want)
	}
	s, err := l.js.Stream(context.Background(), EventStream)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.CachedInfo().Config.Duplicates; d != 24*time.Hour {
		t.Fatalf("existing stream was changed: duplicates %v", d)
	}
}

func TestOpenEventLogRefusesImpossibleReplicas(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	_, err := Open(context.Background(), c, Config{Replicas: 3}, zap.NewNop())
	if err == nil {
		t.Fatal("R3 on a single embedded server accepted")
	}
	if k := domain.KindOf(err); k != domain.KindInvalid && k != domain.KindUnavailable {
		t.Fatalf("kind %v: %v", k, err)
	}
}

func TestSubject(t *testing.T) {
	const app = "71f2c0c6-c720-423b-8df0-7763102ad57e"
	const id = "0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a65"
	got, err := Subject(app, id)
	if err != nil || got != "kyc.events.allpass."+app+"."+id {
		t.Fatalf("Subject = %q, %v", got, err)
	}
	hostile := []string{
		"",
		"x",
		strings.ToUpper(id),
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a6",   // short
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a655", // long
		"0b6c2f5e.9a41-4d7e-8f3a-2c1d9e8b7a65",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a.5",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a*5",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a>5",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a 5",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a\x005",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a\n5",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7ag5",
		"0b6c2f5e9a414d7e8f3a2c1d9e8b7a65----",
		"{0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a}",
		"0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7aé",
		">",
		"*",
		"*.*.*",
	}
	for _, bad := range hostile {
		t.Run(fmt.Sprintf("%q", bad), func(t *testing.T) {
			for _, call := range []struct{ app, id string }{{bad, id}, {app, bad}} {
				s, err := Subject(domain.AppKey(call.app), domain.ApplicantID(call.id))
				if err == nil {
					t.Fatalf("Subject(%q, %q) = %q, want refusal", call.app, call.id, s)
				}
				if domain.KindOf(err) != domain.KindInvalid {
					t.Fatalf("kind %v", domain.KindOf(err))
				}
			}
		})
	}
}

func FuzzSubject(f *testing.F) {
	f.Add("71f2c0c6-c720-423b-8df0-7763102ad57e", "0b6c2f5e-9a41-4d7e-8f3a-2c1d9e8b7a65")
	f.Add("a.b", "*")
	f.Fuzz(func(t *testing.T, app, id string) {
		s, err := Subject(domain.AppKey(app), domain.ApplicantID(id))
		if err != nil {
			return
		}
		tokens := strings.Split(s, ".")
		if len(tokens) != 5 || tokens[3] != app || tokens[4] != id {
			t.Fatalf("Subject(%q, %q) = %q", app, id, s)
		}
		if strings.ContainsAny(s, "*> \x00\t\r\nABCDEF") {
			t.Fatalf("Subject(%q, %q) = %q holds a forbidden character", app, id, s)
		}
	})
}

func TestAppendStoresAndDeduplicates(t *testing.T) {
	l := startLog(t)
	ctx := context.Background()
	ev := logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0)
	ev.V = 0 // Append stamps the version it writes
	id := logMsgID(ev)

	seq, dup, err := l.Append(ctx, ev, id)
	if err != nil || dup || seq != 1 {
		t.Fatalf("Append = %d, %v, %v", seq, dup, err)
	}
	if ev.Seq != 1 || ev.V != domain.StoredVersion || len(ev.Stored) == 0 {
		t.Fatalf("event after Append: seq %d v %d stored %d bytes", ev.Seq, ev.V, len(ev.Stored))
	}
	m, err := l.events.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, ev.Stored) {
		t.Fatal("ev.Stored is not the stored message")
	}
	if got := m.Header.Get(HeaderType); got != string(domain.EventCreated) {
		t.Errorf("%s header %q", HeaderType, got)
	}
	if got := m.Header.Get("Nats-Msg-Id"); got != id {
		t.Errorf("Nats-Msg-Id %q, want %q", got, id)
	}
	if want, _ := Subject(ev.AppKey, ev.ApplicantID); m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}

	// The retry of the same delivery arrives later: same id, another receive time.
	retry := logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0)
	retry.ReceivedAt = retry.ReceivedAt.Add(time.Minute)
	seq, dup, err = l.Append(ctx, retry, id)
	if err != nil || !dup || seq != 1 {
		t.Fatalf("retry Append = %d, %v, %v; want 1, duplicate", seq, dup, err)
	}
	if retry.Seq != 1 || !bytes.Equal(retry.Stored, m.Data) || !retry.ReceivedAt.Equal(ev.ReceivedAt) {
		t.Fatalf("duplicate not replaced by the original: seq %d receivedAt %v", retry.Seq, retry.ReceivedAt)
	}

	// A genuinely repeated event (another id) is stored again.
	again := logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0)
	seq, dup, err = l.Append(ctx, again, id+"-later")
	if err != nil || dup || seq != 2 {
		t.Fatalf("new id Append = %d, %v, %v; want 2, not duplicate", seq, dup, err)
	}
	if last, _ := l.LastSeq(ctx); last != 2 {
		t.Fatalf("LastSeq %d, want 2", last)
	}
}

func TestAppendRefusesBadInput(t *testing.T) {
	l := startLog(t)
	ctx := context.Background()
	good := func() *domain.Event { return logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0) }
	for name, tc := range map[string]struct {
		ev    *domain.Event
		msgID string
		kind  domain.ErrorKind
	}{
		"nil event":     {nil, "x", domain.KindInvalid},
		"empty msg id":  {good(), "", domain.KindInvalid},
		"bad applicant": {func() *domain.Event { e := good(); e.ApplicantID = "a.b"; return e }(), "x", domain.KindInvalid},
		"bad app":       {func() *domain.Event { e := good(); e.AppKey = ">"; return e }(), "x", domain.KindInvalid},
		"future format": {func() *domain.Event { e := good(); e.V = 99; return e }(), "x", domain.KindInvalid},
		"bad payload":   {func() *domain.Event { e := good(); e.Payload = []byte("{not json"); return e }(), "x", domain.KindInvalid},
		"too large": {func() *domain.Event {
			e := good()
			e.Raw.Body = strings.Repeat("a", EmbeddedMaxPayload)
			return e
		}(), "x", domain.KindTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			seq, _, err := l.Append(ctx, tc.ev, tc.msgID)
			if err == nil {
				t.Fatalf("Append succeeded at seq %d", seq)
			}
			if k := domain.KindOf(err); k != tc.kind {
				t.Fatalf("kind %v (%v), want %v", k, err, tc.kind)
			}
		})
	}
	if last, _ := l.LastSeq(ctx); last != 0 {
		t.Fatalf("refused appends stored %d messages", last)
	}

	// A header-breaking type is stored intact in the message, sanitised in the header.
	ev := good()
	ev.Type = "weird\r\nType"
	seq := logAppend(t, l, ev)
	m, err := l.events.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(HeaderType); got != "weird__Type" {
		t.Errorf("header %q", got)
	}
	back, err := DecodeEvent(seq, m.Data)
	if err != nil || back.Type != ev.Type {
		t.Errorf("stored type %q, %v", back.Type, err)
	}
}

func TestAppendDedupSurvivesRestart(t *testing.T) {
	cfg := NATSConfig{StoreDir: t.TempDir()}
	c := natsStart(t, cfg)
	l := logOpen(t, c, Config{}, nil)
	ev := logNth(0, 1)
	seq := logAppend(t, l, ev)
	logAppend(t, l, logNth(1, 1))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := natsStart(t, cfg)
	l2 := logOpen(t, c2, Config{}, nil)
	ctx := context.Background()
	if last, err := l2.LastSeq(ctx); err != nil || last != 2 {
		t.Fatalf("after restart LastSeq %d, %v; want 2", last, err)
	}
	again := logNth(0, 1)
	got, dup, err := l2.Append(ctx, again, logMsgID(again))
	if err != nil || !dup || got != seq {
		t.Fatalf("after restart Append = %d, %v, %v; want %d, duplicate", got, dup, err, seq)
	}
	if !bytes.Equal(again.Stored, ev.Stored) {
		t.Fatal("duplicate after restart does not carry the original's bytes")
	}
}

func TestAppendWhenServerIsDownIsUnavailable(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	l := logOpen(t, c, Config{}, nil)
	logAppend(t, l, logNth(0, 1))

	c.Server().Shutdown()
	c.Server().WaitForShutdown()
	for i := 1; i <= 3; i++ {
		ev := logNth(i, 1)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, _, err := l.Append(ctx, ev, logMsgID(ev))
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("Append claimed success with the server down")
			}
			if k := domain.KindOf(err); k != domain.KindUnavailable {
				t.Fatalf("kind %v (%v), want unavailable", k, err)
			}
			if ev.Seq != 0 || ev.Stored != nil {
				t.Fatalf("failed Append set seq %d", ev.Seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Append did not return within its timeout")
		}
	}

	// A caller's own deadline is honoured the same way.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev := logNth(9, 1)
	if _, _, err := l.Append(ctx, ev, logMsgID(ev)); domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("cancelled Append: %v", err)
	}
}

func TestDecodeEvent(t *testing.T) {
	ev := logNth(3, 2)
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Clone(data)
	got, err := DecodeEvent(42, buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'x' // the caller reuses its buffer
	}
	if got.Seq != 42 || !bytes.Equal(got.Stored, data) {
		t.Fatalf("seq %d stored %q", got.Seq, got.Stored)
	}
	again, _ := json.Marshal(got)
	if !bytes.Equal(again, data) {
		t.Fatalf("decoded event re-encodes differently:\n%s\n%s", again, data)
	}

	for name, tc := range map[string]struct {
		data string
		kind domain.ErrorKind
	}{
		"empty":       {"", domain.KindInternal},
		"not json":    {"webhook", domain.KindInternal},
		"wrong shape": {`{"v":1,"eventAt":"yesterday"}`, domain.KindInternal},
		"old version": {`{"v":0,"type":"applicantCreated"}`, domain.KindConflict},
		"new version": {`{"v":2,"type":"applicantCreated"}`, domain.KindConflict},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEvent(7, []byte(tc.data))
			if k := domain.KindOf(err); k != tc.kind {
				t.Fatalf("kind %v (%v), want %v", k, err, tc.kind)
			}
			if !strings.Contains(err.Error(), "seq 7") {
				t.Errorf("error %q does not name the sequence", err)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	data, _ := json.Marshal(logNth(0, 1))
	f.Add(data)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"payload":null,"raw":{"body":"\u0000"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeEvent(1, data)
		if err != nil {
			if k := domain.KindOf(err); k != domain.KindInternal && k != domain.KindConflict {
				t.Fatalf("kind %v", k)
			}
			return
		}
		if ev.V != domain.StoredVersion || ev.Seq != 1 || !bytes.Equal(ev.Stored, data) {
			t.Fatalf("decoded %+v", ev)
		}
	})
}

// BenchmarkDecodeEvent decodes a stored event beside json.Unmarshal of the same bytes
// into a domain.Event, interleaved in the same loop. x-json is DecodeEvent's time over
// encoding/json's (DecodeEvent also copies the input, which the Read path does not).
func BenchmarkDecodeEvent(b *testing.B) {
	data, err := json.Marshal(logNth(5, 3))
	if err != nil {
		b.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = DecodeEvent(1, data) })
	var ours, std time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := DecodeEvent(1, data); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		var ev domain.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			b.Fatal(err)
		}
		ours += mid.Sub(start)
		std += time.Since(mid)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(std.Nanoseconds())/float64(b.N), "json-ns/op")
	b.ReportMetric(float64(ours)/float64(std), "x-json")
	b.ReportMetric(allocs, "allocs/decode")
}

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

	// Reconnect repeatedly while an appender keeps writing and Follow keeps delivering.
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := 100; i < 400; i++ {
			logAppendRetry(t, l, logNth(i, 7))
		}
	}()
	for range 6 {
		time.Sleep(20 * time.Millisecond)
		if err := l.conn.NC.ForceReconnect(); err != nil {
			t.Fatal(err)
		}
	}
	<-appended
	c.waitFor(t, 400, 60*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 1, 400)
}

// logAppendRetry appends ev, retrying while the log is unavailable (as Allpass would);
// the message id makes a retry of a write that did land a duplicate, not a new event.
func logAppendRetry(t *testing.T, l *EventLog, ev *domain.Event) uint64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		seq, _, err := l.Append(ctx, ev, logMsgID(ev))
		cancel()
		if err == nil {
			return seq
		}
		if domain.KindOf(err) != domain.KindUnavailable || time.Now().After(deadline) {
			t.Fatalf("Append: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFollowSurvivesServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a server")
	}
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", natsFreePort(t))
	srvCfg := NATSConfig{StoreDir: dir, Listen: listen, SyncInterval: time.Minute}
	srv := natsStart(t, srvCfg)
	// The log is reached over TCP, as an ingest or query node reaches a NATS cluster.
	ext := natsStart(t, NATSConfig{URLs: []string{"nats://" + listen}})
	l := logOpen(t, ext, Config{}, nil)
	logFill(t, l, 40, 3)
	c, stop := logFollow(t, l, 1, 8, 5*time.Millisecond)
	c.waitFor(t, 40, 20*time.Second)

	// Shut the server down under the follower, append (retrying) through the outage,
	// and bring it back on the same store.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 40; i < 80; i++ {
			logAppendRetry(t, l, logNth(i, 3))
		}
	}()
	time.Sleep(300 * time.Millisecond)
	natsStart(t, srvCfg)
	wg.Wait()

	c.waitFor(t, 80, 60*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	logCheckSeqs(t, c.seqs, 1, 80)
}

func TestFollowStopsWhenConnectionCloses(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{}, nil)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(context.Background(), 1, 10, time.Millisecond, func([]domain.Event) error { return nil })
	}()
	time.Sleep(100 * time.Millisecond)
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

// BenchmarkAppend measures Append from 16 goroutines against a server that fsyncs every
// write, beside a raw JetStream publish of the same bytes (no message id, no header, no
// encoding) from 16 goroutines in the same run. x-raw is Append's time per event over
// the raw publish's.
func BenchmarkAppend(b *testing.B) {
	const writers, round = 16, 512
	l := startLog(b)
	ctx := context.Background()
	parallel := func(n int, do func(i int) error) time.Duration {
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		start := time.Now()
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += writers {
					if err := do(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		return took
	}
	var ours, raw time.Duration
	var events, n int
	for b.Loop() {
		evs := make([]*domain.Event, round)
		subjects := make([]string, round)
		data := make([][]byte, round)
		for i := range evs {
			evs[i] = logNth(n, 5000)
			n++
			subjects[i], _ = Subject(evs[i].AppKey, evs[i].ApplicantID)
			data[i], _ = json.Marshal(evs[i])
		}
		raw += parallel(round, func(i int) error {
			_, err := l.js.Publish(ctx, subjects[i], data[i])
			return err
		})
		ours += parallel(round, func(i int) error {
			_, dup, err := l.Append(ctx, evs[i], logMsgID(evs[i]))
			if err == nil && dup {
				err = errors.New("unexpected duplicate")
			}
			return err
		})
		events += round
	}
	oursNs := float64(ours.Nanoseconds()) / float64(events)
	rawNs := float64(raw.Nanoseconds()) / float64(events)
	b.ReportMetric(oursNs, "ns/op")
	b.ReportMetric(rawNs, "raw-ns/op")
	b.ReportMetric(oursNs/rawNs, "x-raw")
	b.ReportMetric(1e9/oursNs, "events/s")
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

// logTrickyString draws a string from the characters that stress a JSON codec: quotes,
// backslashes, HTML characters json escapes, control characters, line separators,
// multi-byte and astral runes, and bytes that are not UTF-8.
func logTrickyString(r *rand.Rand) string {
	parts := []string{"a", "Z", "0", " ", `"`, `\`, "/", "<", ">", "&", "\x00", "\n", "\t", "\x1f",
		"\u2028", "\u2029", "é", "日本", "😀", "\xff", "\xed\xa0\x80", "\ufffd", "{", "}", "[", ":", ","}
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}

func logRandomPayload(r *rand.Rand, depth int) any {
	switch k := r.IntN(7); {
	case k == 0 || depth > 3:
		return logTrickyString(r)
	case k == 1:
		return r.Float64() * 1e6
	case k == 2:
		return r.IntN(2) == 0
	case k == 3:
		return nil
	case k == 4:
		var a []any
		for range r.IntN(4) {
			a = append(a, logRandomPayload(r, depth+1))
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(5) {
			m[logTrickyString(r)] = logRandomPayload(r, depth+1)
		}
		return m
	}
}

// TestFastDecodeCoversCanonicalForm checks that what Append writes always takes the fast
// path, and that the fast path agrees with encoding/json on it.
func TestFastDecodeCoversCanonicalForm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		ev := logNth(i, 7)
		if i%2 == 1 {
			ev.Provider = logTrickyString(r)
			ev.AppKey = domain.AppKey(logTrickyString(r))
			ev.ApplicantID = domain.ApplicantID(logTrickyString(r))
			ev.ExternalUserID = domain.ExternalUserID(logTrickyString(r))
			ev.Type = domain.EventType(logTrickyString(r))
			ev.StepName = logTrickyString(r)
			ev.EventAtSource = logTrickyString(r)
			ev.Warnings = nil
			for range r.IntN(3) {
				ev.Warnings = append(ev.Warnings, logTrickyString(r))
			}
			ev.EventAt = time.Unix(r.Int64N(1<<35)-1<<34, r.Int64N(1e9)).In(time.FixedZone("", 60*(r.IntN(1500)-750)))
			ev.ReceivedAt = time.Time{}
			p, err := json.Marshal(logRandomPayload(r, 0))
			if err != nil {
				t.Fatal(err)
			}
			if string(p) == "null" {
				p = []byte("{}")
			}
			ev.Payload = p
			switch r.IntN(3) {
			case 0:
				ev.Raw = nil
			case 1:
				ev.Raw = &domain.Raw{Body: logTrickyString(r), Signature: logTrickyString(r)}
			}
		}
		data, err := appendStoredEvent(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		var fast, slow domain.Event
		if !fastDecodeEvent(data, &fast, false) {
			t.Fatalf("canonical form not decoded by the fast path:\n%s", data)
		}
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast and json decodes differ for\n%s\nfast %#v\njson %#v", data, fast, slow)
		}
	}
}

// FuzzFastDecodeEventMatchesJSON: whenever the fast path accepts input, encoding/json
// accepts it too and decodes the same event.
func FuzzFastDecodeEventMatchesJSON(f *testing.F) {
	for i := range 4 {
		data, _ := json.Marshal(logNth(i, 2))
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"payload":{"a":[1,-2.5e+3,true,null,"\u00e9\"x"]},"warnings":[],"raw":{}}`))
	f.Add([]byte(`{"v":01}`))
	f.Add([]byte(`{"type":"a\ud800b"}`))
	f.Add([]byte(`{"payload":"\xff"}`))
	f.Add([]byte(`{"eventAt":"2025-01-01T00:00:00+01:00","receivedAt":"2025-01-01T00:00:00.5Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast domain.Event
		if !fastDecodeEvent(data, &fast, false) {
			return
		}
		var slow domain.Event
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast path accepted what encoding/json refuses (%v):\n%q", err, data)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decodes differ for %q\nfast %#v\njson %#v", data, fast, slow)
		}
		// Without the raw body, the same event less ev.Raw.
		var lean domain.Event
		if !fastDecodeEvent(data, &lean, true) {
			t.Fatalf("fast path without raw refused what it accepts with raw: %q", data)
		}
		slow.Raw = nil
		if !reflect.DeepEqual(lean, slow) {
			t.Fatalf("decodes without raw differ for %q\nlean %#v\njson %#v", data, lean, slow)
		}
	})
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
	l.readIdle, l.requestTimeout = 300*time.Millisecond, 300*time.Millisecond
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

// TestAcknowledgedAppendsSurviveShutdownUnderLoad shuts the server down while writers
// are appending: every Append is either acknowledged, and then stored exactly as
// acknowledged after a restart, or refused as unavailable.
func TestAcknowledgedAppendsSurviveShutdownUnderLoad(t *testing.T) {
	cfg := NATSConfig{StoreDir: t.TempDir()}
	c := natsStart(t, cfg)
	l := logOpen(t, c, Config{}, nil)

	type result struct {
		ev  *domain.Event
		seq uint64
		err error
	}
	var (
		mu      sync.Mutex
		results []result
		next    atomic.Int64
		acked   = make(chan struct{}, 1000)
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ev := logNth(int(next.Add(1)), 100)
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				seq, dup, err := l.Append(ctx, ev, logMsgID(ev))
				cancel()
				if err == nil && dup {
					err = errors.New("unexpected duplicate")
				}
				mu.Lock()
				results = append(results, result{ev, seq, err})
				mu.Unlock()
				if err != nil {
					return
				}
				select {
				case acked <- struct{}{}:
				default:
				}
			}
		}()
	}
	for range 40 {
		<-acked
	}
	c.Server().Shutdown()
	wg.Wait()
	c.Close()

	l2 := logOpen(t, natsStart(t, cfg), Config{}, nil)
	ctx := context.Background()
	var ok, refused int
	for _, r := range results {
		if r.err != nil {
			if k := domain.KindOf(r.err); k != domain.KindUnavailable {
				t.Fatalf("refused with kind %v: %v", k, r.err)
			}
			refused++
			continue
		}
		ok++
		m, err := l2.events.GetMsg(ctx, r.seq)
		if err != nil {
			t.Fatalf("acknowledged seq %d lost after restart: %v", r.seq, err)
		}
		if !bytes.Equal(m.Data, r.ev.Stored) {
			t.Fatalf("seq %d holds other bytes than acknowledged", r.seq)
		}
	}
	if ok < 40 || refused != 8 {
		t.Fatalf("%d acknowledged, %d refused; want at least 40 and 8", ok, refused)
	}
}
