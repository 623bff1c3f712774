package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	lagRate    = 1000 // webhooks per second, the steady load
	lagSenders = 64   // enough connections that pacing, not latency, sets the rate
)

// phaseLag measures, at a steady 1,000 webhooks/s through the handler, how long after
// its 200 answer each webhook's event is visible in the projection (Projection.WaitFor
// returns once the projector's commit covers the sequence the 200 carried). The baseline
// is the ingest latency (request sent to 200 received) of the same pacing with no
// projector running, measured first in the same process.
func phaseLag(ctx context.Context, o options, r *result) error {
	// Segments alternate: ingest alone, then with the projector following, rounds times,
	// so that drift of the machine falls on both.
	dur, rounds := 15*time.Second, 2
	if o.Quick {
		dur, rounds = 8*time.Second, 1
	}
	n := int(dur.Seconds() * lagRate)
	app := benchApp(o.Seed)
	w := newWorkload(o.Seed+2, app, 2_000)
	ds := make([]delivery, 2*rounds*n+4*lagSenders)
	for i := range ds {
		ds[i] = w.next()
	}
	hooks, err := seal(app, ds)
	if err != nil {
		return err
	}
	dir, err := phaseDir(o, "lag")
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, err := openLog(ctx, filepath.Join(dir, "stream"), false, log)
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{app}, Events: events, Logger: log,
		Metrics: prometheus.NewRegistry(), KeepRaw: true})
	if err != nil {
		return err
	}
	base, stop, err := serve(ingest.NewHTTPServer("127.0.0.1:0", h), "handler")
	if err != nil {
		return err
	}
	defer stop()
	url := base + "/webhooks/allpass/" + app.Name
	client := keepAliveClient(lagSenders)
	defer client.CloseIdleConnections()
	proj, err := projection.Open(filepath.Join(dir, "projection.db"), projection.Options{Indexer: events.Keys()})
	if err != nil {
		return err
	}
	defer proj.Close()

	// Warm up unpaced and unmeasured: connections open, the stream's first block made.
	const warm = 4 * lagSenders
	if _, _, _, err := postAll(ctx, client, url, hooks[:warm], lagSenders); err != nil {
		return err
	}
	hooks = hooks[warm:]

	var alone, live pacedRun
	for k := range rounds {
		a, err := paced(ctx, client, url, hooks[:n], dur, nil)
		if err != nil {
			return err
		}
		hooks = hooks[n:]
		progress("ingest alone: %.0f webhooks/s, p50 %.1f ms, p99 %.1f ms", a.rate,
			ms(percentile(a.ingest, 0.5)), ms(percentile(a.ingest, 0.99)))
		alone.add(a)

		// The projector follows the log during the next segment; it first catches up on
		// what is there, so the segment measures following, not catching up.
		pctx, cancel := context.WithCancel(ctx)
		var pwg sync.WaitGroup
		pj := projector.New(events, proj, projector.Config{}, log, prometheus.NewRegistry())
		labelled(ctx, "projector", func() { pwg.Go(func() { pj.Run(pctx) }) })
		b, err := following(ctx, o, k, events, proj, func() (pacedRun, error) {
			return paced(ctx, client, url, hooks[:n], dur, proj)
		})
		cancel()
		pwg.Wait()
		if err != nil {
			return err
		}
		hooks = hooks[n:]
		progress("with projector: %.0f webhooks/s, ingest p99 %.1f ms, visible after 200: p50 %.1f ms, p99 %.1f ms",
			b.rate, ms(percentile(b.ingest, 0.99)), ms(percentile(b.lag, 0.5)), ms(percentile(b.lag, 0.99)))
		live.add(b)
	}

	r.set("target_rate", lagRate)
	r.set("alone_rate", alone.rate)
	r.set("alone_p50_ms", ms(percentile(alone.ingest, 0.5)))
	r.set("alone_p99_ms", ms(percentile(alone.ingest, 0.99)))
	r.set("rate", live.rate)
	r.set("ingest_p50_ms", ms(percentile(live.ingest, 0.5)))
	r.set("ingest_p99_ms", ms(percentile(live.ingest, 0.99)))
	r.set("lag_p50_ms", ms(percentile(live.lag, 0.5)))
	r.set("lag_p99_ms", ms(percentile(live.lag, 0.99)))
	r.set("lag_max_ms", ms(percentile(live.lag, 1)))
	r.set("sent", float64(alone.sent+live.sent))
	r.set("behind", float64(alone.behind+live.behind))
	r.set("refused", float64(alone.refused+live.refused))
	return nil
}

// following waits for the projection to catch up with the log, then runs send under a
// CPU profile.
func following(ctx context.Context, o options, k int, events *eventlog.EventLog, proj *projection.Projection, send func() (pacedRun, error)) (pacedRun, error) {
	last, err := events.LastSeq(ctx)
	if err != nil {
		return pacedRun{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	got := proj.WaitFor(wctx, last)
	cancel()
	if got < last {
		return pacedRun{}, fmt.Errorf("projector did not catch up: %d of %d", got, last)
	}
	stopProf, err := profile(o, fmt.Sprintf("lag-%d", k))
	if err != nil {
		return pacedRun{}, err
	}
	run, err := send()
	if perr := stopProf(); perr != nil && err == nil {
		err = perr
	}
	return run, err
}

type pacedRun struct {
	rate    float64 // webhooks answered 200 per second, over the run
	took    time.Duration
	sent    int             // webhooks answered 200
	refused int             // webhooks answered 503
	behind  int             // sends that started more than 10 ms after their slot
	ingest  []time.Duration // request sent to 200 received
	lag     []time.Duration // 200 received to visible in the projection (proj != nil)
}

// add merges run into p.
func (p *pacedRun) add(run pacedRun) {
	p.sent += run.sent
	p.refused += run.refused
	p.behind += run.behind
	p.took += run.took
	p.rate = float64(p.sent) / p.took.Seconds()
	p.ingest = append(p.ingest, run.ingest...)
	p.lag = append(p.lag, run.lag...)
}

// paced sends hooks at lagRate per second for at most dur: send i is due at
// start + i/lagRate, and goes as soon after as a sender is free. A send that starts more
// than 10 ms late is counted as behind (the service did not keep up with the pace). With
// proj, each 200's sequence is waited for in the projection.
func paced(ctx context.Context, client *http.Client, url string, hooks []webhook, dur time.Duration, proj *projection.Projection) (pacedRun, error) {
	interval := time.Second / lagRate
	var next atomic.Int64
	var behind, refused atomic.Int64
	ingestLat := make([][]time.Duration, lagSenders)
	lagLat := make([][]time.Duration, lagSenders)
	var lagMu sync.Mutex // guards lagLat's rows, appended to by waiters
	errs := newErrFirst()
	var senders, waiters sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for s := range lagSenders {
		senders.Go(func() {
			labelGoroutine(ctx, "client")
			var buf bytes.Buffer
			for {
				i := int(next.Add(1) - 1)
				due := start.Add(time.Duration(i) * interval)
				if i >= len(hooks) || !due.Before(end) || ctx.Err() != nil {
					return
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				} else if d < -10*time.Millisecond {
					behind.Add(1)
				}
				t0 := time.Now()
				ack, err := post(ctx, client, url, hooks[i], i, &buf)
				t200 := time.Now()
				if errors.Is(err, errUnavailable) {
					refused.Add(1)
					continue
				}
				if err != nil {
					errs.put(err)
					return
				}
				ingestLat[s] = append(ingestLat[s], t200.Sub(t0))
				if proj != nil {
					waiters.Go(func() {
						wctx, cancel := context.WithTimeout(ctx, time.Minute)
						defer cancel()
						if got := proj.WaitFor(wctx, ack.Seq); got < ack.Seq {
							errs.put(fmt.Errorf("seq %d not visible after a minute (checkpoint %d)", ack.Seq, got))
							return
						}
						d := time.Since(t200)
						lagMu.Lock()
						lagLat[s] = append(lagLat[s], d)
						lagMu.Unlock()
					})
				}
			}
		})
	}
	senders.Wait()
	took := time.Since(start)
	waiters.Wait()
	if err := errs.err(); err != nil {
		return pacedRun{}, err
	}
	if err := ctx.Err(); err != nil {
		return pacedRun{}, err
	}
	var run pacedRun
	for s := range lagSenders {
		run.ingest = append(run.ingest, ingestLat[s]...)
		run.lag = append(run.lag, lagLat[s]...)
	}
	run.sent = len(run.ingest)
	run.took = took
	run.rate = float64(run.sent) / took.Seconds()
	run.behind = int(behind.Load())
	run.refused = int(refused.Load())
	return run, nil
}
