package projection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// The tests here read a real JetStream log (store/eventlog through internal/jstest) as
// the domain.EventSource the projection is rebuilt and verified from.

// fillLog appends the generated events to a real stream and returns them as the log
// gives them back (with the stream's sequences and stored bytes).
func fillLog(t *testing.T, events *eventlog.EventLog, evs []domain.Event) []domain.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range evs {
		ev := evs[i]
		sum := sha256.Sum256(ev.Stored)
		if _, dup, err := events.Append(ctx, &ev, hex.EncodeToString(sum[:])); err != nil || dup {
			t.Fatalf("Append %d: dup %v, %v", i, dup, err)
		}
	}
	var back []domain.Event
	if err := events.Read(ctx, 1, 500, func(evs []domain.Event) error {
		back = append(back, evs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(back) != len(evs) {
		t.Fatalf("read back %d events, appended %d", len(back), len(evs))
	}
	return back
}

// Rebuild and Verify against a real JetStream log: the rebuilt file equals the file the
// live path writes from the same stream, and Verify finds it faithful, then finds a
// tampered state.
func TestRebuildAndVerifyFromStream(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 600
	}
	events := jstest.Start(t).EventLog(t, eventlog.Config{}, nil)
	evs := fillLog(t, events, genLog(70, n/10, n))
	ctx := context.Background()
	dir := t.TempDir()

	live := mustOpen(t, filepath.Join(dir, "live.db"), Options{})
	applyBatches(t, live, evs, 70, 250)

	path := filepath.Join(dir, "projection.db")
	var done, total uint64
	if err := Rebuild(ctx, events, path, RebuildOptions{Progress: func(d, tt uint64) { done, total = d, tt }}); err != nil {
		t.Fatal(err)
	}
	if done != uint64(n) || total != uint64(n) {
		t.Fatalf("progress ended at %d/%d, want %d", done, total, n)
	}
	sameDump(t, dump(t, live), dumpFile(t, path))

	p := mustOpen(t, path, Options{ReadOnly: true})
	res, err := Verify(ctx, events, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differences) != 0 || res.Events != uint64(n) || res.LogLast != uint64(n) || res.Applicants != len(foldLog(evs).states) {
		t.Fatalf("Verify of a rebuilt file: %+v", res)
	}
	p.Close()

	victim := evs[n/2].ApplicantID
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStates)
		st, err := decodeState(b.Get([]byte(victim)))
		if err != nil {
			return err
		}
		st.Digest[31] ^= 0x80
		return b.Put([]byte(victim), appendState(nil, &st))
	})
	p = mustOpen(t, path, Options{ReadOnly: true})
	res, err = Verify(ctx, events, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differences) != 1 || res.Differences[0].ApplicantID != victim || res.Differences[0].Kind != domain.DiffDigest {
		t.Fatalf("Verify of a tampered file: %v", res.Differences)
	}
}

// BenchmarkRebuild measures Rebuild from a real stream of n events (n/10 applicants) in
// events/s, beside a baseline measured in the same run: reading the same stream with
// EventLog.Read and doing nothing with the events. x-read is the rebuild's rate over the
// bare read's (1.0: folding and writing cost nothing beyond reading the log).
//
//	go test ./store/projection -run '^$' -bench BenchmarkRebuild -benchtime 2x
func BenchmarkRebuild(b *testing.B) {
	const n = 100_000
	js := jstest.Start(b)
	events := js.EventLog(b, eventlog.Config{}, nil)
	if last := publishAll(b, js.NC, events, genLog(104, n/10, n)); last != n {
		b.Fatalf("stream holds %d events", last)
	}
	ctx := context.Background()
	dir := b.TempDir()
	// The bare read runs in turn with each rebuild, so that a machine busier or quieter
	// at one moment weighs on both alike.
	var readTook time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		start := time.Now()
		read := 0
		if err := events.Read(ctx, 1, rebuildBatch, func(evs []domain.Event) error { read += len(evs); return nil }); err != nil || read != n {
			b.Fatalf("read %d: %v", read, err)
		}
		readTook += time.Since(start)
		b.StartTimer()
		if err := Rebuild(ctx, events, filepath.Join(dir, fmt.Sprintf("p-%d.db", i)), RebuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	rate := float64(n*b.N) / b.Elapsed().Seconds()
	readRate := float64(n*b.N) / readTook.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(readRate, "read-events/s")
	b.ReportMetric(rate/readRate, "x-read")
}

// publishAll stores events quickly, as Append would store them (the stored bytes, the
// type header, a message id) but published asynchronously; it returns the last sequence.
func publishAll(tb testing.TB, nc *nats.Conn, events *eventlog.EventLog, evs []domain.Event) uint64 {
	tb.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		tb.Fatal(err)
	}
	for i, ev := range evs {
		subject, err := eventlog.Subject(ev.AppKey, ev.ApplicantID)
		if err != nil {
			tb.Fatal(err)
		}
		sum := sha256.Sum256(ev.Stored)
		msg := &nats.Msg{Subject: subject, Data: ev.Stored, Header: nats.Header{eventlog.HeaderType: []string{string(ev.Type)}}}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(hex.EncodeToString(sum[:])),
			jetstream.WithExpectStream(eventlog.EventStream)); err != nil {
			tb.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("async publishes did not complete")
	}
	last, err := events.LastSeq(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return last
}
