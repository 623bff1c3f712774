package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rebuildEvents is N: the size of the log the rebuild folds.
func rebuildEvents(o options) int {
	if o.Quick {
		return 100_000
	}
	return 1_000_000
}

// The raw drain asks for what EventLog.Read asks for: up to 2,048 messages or 16 MiB
// ahead of the reader, so the two differ only in what they do with each message.
const (
	drainPrefetch      = 2048
	drainPrefetchBytes = 16 << 20
)

// phaseLoad fills the stream the rebuild reads: N events over about N/10 applicants,
// each sealed and opened as ingest does and stored as EventLog.Append stores it (same
// subject, bytes, type header and Nats-Msg-Id), published asynchronously with a window.
// The server's fsync is relaxed to a 1-minute interval for this phase only: the load is
// setup, not a measured figure, and the drain and rebuild phases restart the server with
// fsync on every write. Beside it, the events are folded in memory to count the mix of
// outcomes the rebuild will decide.
func phaseLoad(ctx context.Context, o options, r *result) error {
	n := rebuildEvents(o)
	const chunk, window = 10_000, 4096
	app := benchApp(o.Seed)
	w := newWorkload(o.Seed+1, app, n/100) // about 1% of applicants cut short at the end
	c, events, err := openLog(ctx, filepath.Join(o.Dir, "stream"), true, newLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	var failed atomic.Int64
	var firstErr atomic.Value
	js, err := jetstream.New(c.NC, jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}))
	if err != nil {
		return err
	}

	// Chunks are drawn in order and sealed on every core by a producer, while the
	// publisher sends the previous chunk.
	type batch struct {
		evs []stored
		err error
	}
	chunks := make(chan batch, 2)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		defer close(chunks)
		for done := 0; done < n; done += chunk {
			ds := make([]delivery, min(chunk, n-done))
			for i := range ds {
				ds[i] = w.next()
			}
			evs, err := storedEvents(pctx, events.Keys(), app, ds)
			select {
			case chunks <- batch{evs, err}:
			case <-pctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { cancel(); <-producerDone }()

	folder := domain.NewFolder()
	states := map[domain.ApplicantID]domain.State{}
	outcomes := map[domain.Outcome]int{}
	var seq uint64
	var bytes int64
	start := time.Now()
	lastReport := start
	for b := range chunks {
		if b.err != nil {
			return b.err
		}
		for _, ev := range b.evs {
			msg := nats.NewMsg(ev.subject)
			msg.Data = ev.data
			msg.Header.Set(eventlog.HeaderType, string(ev.typ))
			if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.msgID), jetstream.WithStallWait(time.Minute)); err != nil {
				return fmt.Errorf("publish %d: %w", seq+1, err)
			}
			seq++
			bytes += int64(len(ev.data))
			de, err := eventlog.DecodeEvent(seq, ev.data)
			if err != nil {
				return err
			}
			s, rec := folder.Apply(states[de.ApplicantID], de)
			states[de.ApplicantID] = s
			outcomes[rec.Outcome]++
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			progress("loaded %d/%d events (%.0f/s)", seq, n, float64(seq)/time.Since(start).Seconds())
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d async publishes failed, first: %v", f, firstErr.Load())
	}
	stream, err := c.JS.Stream(ctx, eventlog.EventStream)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.LastSeq != uint64(n) || info.State.Msgs != uint64(n) {
		return fmt.Errorf("stream holds %d messages up to seq %d, want %d", info.State.Msgs, info.State.LastSeq, n)
	}
	r.set("events", float64(n))
	r.set("applicants", float64(len(states)))
	r.set("rate", float64(n)/took.Seconds())
	r.set("load_s", took.Seconds())
	r.set("event_bytes", float64(bytes)/float64(n))
	r.set("stream_mib", float64(info.State.Bytes)/(1<<20))
	var mix []string
	for k, v := range outcomes {
		r.set("outcome_"+string(k), float64(v))
		mix = append(mix, fmt.Sprintf("%s %.1f%%", k, 100*float64(v)/float64(n)))
	}
	sort.Strings(mix)
	r.note("fold mix of the %d events: %s", n, strings.Join(mix, ", "))
	return nil
}

// phaseDrain reads the whole stream once through an ordered consumer, doing nothing with
// the messages: the rebuild's baseline. The server is restarted (fsync on every write),
// as a rebuild would find it. It runs before and after the rebuild and the faster of the
// two is the baseline: the estimate least disturbed by the machine's other work, and so
// the harder one to come close to.
func phaseDrain(ctx context.Context, o options, r *result) error {
	c, _, err := openLog(ctx, filepath.Join(o.Dir, "stream"), false, newLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	stream, err := c.JS.Stream(ctx, eventlog.EventStream)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	stopProf, err := profile(o, r.Phase)
	if err != nil {
		return err
	}
	start := time.Now()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(drainPrefetch, drainPrefetchBytes))
	if err != nil {
		return err
	}
	var count, size uint64
	labelGoroutine(ctx, "drain")
	for count < last {
		msg, err := it.Next()
		if err != nil {
			it.Stop()
			return fmt.Errorf("drain after %d messages: %w", count, err)
		}
		count++
		size += uint64(len(msg.Data()))
	}
	took := time.Since(start)
	it.Stop()
	if err := stopProf(); err != nil {
		return err
	}
	if err := heapProfile(o, r.Phase); err != nil {
		return err
	}
	r.set("events", float64(count))
	r.set("rate", float64(count)/took.Seconds())
	r.set("seconds", took.Seconds())
	r.set("mib", float64(size)/(1<<20))
	return nil
}

// phaseRebuild runs projection.Rebuild over the whole stream into a new projection file, then
// checks the file's checkpoint is the stream's last sequence.
func phaseRebuild(ctx context.Context, o options, r *result) error {
	c, events, err := openLog(ctx, filepath.Join(o.Dir, "stream"), false, newLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	last, err := events.LastSeq(ctx)
	if err != nil {
		return err
	}
	dir, err := phaseDir(o, "rebuild")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "projection.db")
	stopProf, err := profile(o, "rebuild")
	if err != nil {
		return err
	}
	start := time.Now()
	lastReport := start
	labelled(ctx, "rebuild", func() {
		halfway := false
		var ix projection.Indexer
		if ix, err = events.Keys().Snapshot(ctx); err != nil {
			return
		}
		err = projection.Rebuild(ctx, events, path, projection.RebuildOptions{Indexer: ix, Progress: func(done, total uint64) {
			if !halfway && done >= total/2 {
				halfway = true
				if err := heapProfile(o, "rebuild-halfway"); err != nil {
					progress("heap profile: %v", err)
				}
			}
			if time.Since(lastReport) > 5*time.Second {
				lastReport = time.Now()
				progress("rebuilt %d/%d events (%.0f/s)", done, total, float64(done)/time.Since(start).Seconds())
			}
		}})
	})
	took := time.Since(start)
	if perr := stopProf(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	size, err := rebuiltSize(path, last)
	if err != nil {
		return err
	}
	r.set("events", float64(last))
	r.set("rate", float64(last)/took.Seconds())
	r.set("seconds", took.Seconds())
	r.set("file_mib", float64(size)/(1<<20))
	return nil
}

// rebuiltSize checks that the projection a rebuild wrote at path reached the stream's
// last sequence and returns the file's size.
func rebuiltSize(path string, last uint64) (int64, error) {
	p, err := projection.Open(path, projection.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	cp := p.Checkpoint()
	p.Close()
	if cp != last {
		return 0, fmt.Errorf("rebuilt projection's checkpoint is %d, the stream's last sequence %d", cp, last)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
