package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

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
	if ev.Seq != 1 || ev.V != domain.StoredVersionClear || len(ev.Stored) == 0 {
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
