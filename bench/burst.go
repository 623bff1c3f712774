package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// burstSize is how many webhooks arrive at once: Allpass retrying everything after an
// outage.
const burstSize = 1_500

// phaseBurst sends burstSize distinct webhooks at the same moment, each on its own
// connection, to the handler with the default limits (max_in_flight 256, queue_wait
// 2 s), and counts the share answered 200 on the first try. The baseline, in the same
// run, is the same burst with the queue switched off (a wait of 1 ns: past
// max_in_flight, 503 at once, as before the queue). Every webhook answered 503 is
// retried until it is 200, and the stream must then hold each webhook exactly once:
// nothing is lost and nothing is stored twice.
func phaseBurst(ctx context.Context, o options, r *result) error {
	rounds := 3
	if o.Quick {
		rounds = 1
	}
	app := benchApp(o.Seed)
	w := newWorkload(o.Seed+7, app, 20_000)
	dir, err := phaseDir(o, "burst")
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, err := openLog(ctx, dir, false, log)
	if err != nil {
		return err
	}
	defer c.Close()

	run := func(queueWait time.Duration) (share float64, took time.Duration, err error) {
		ds := make([]delivery, burstSize)
		for i := range ds {
			ds[i] = w.next()
		}
		hooks, err := seal(app, ds)
		if err != nil {
			return 0, 0, err
		}
		log := log
		if queueWait < time.Millisecond {
			log = zap.NewNop() // the baseline's 503s are the point, not news
		}
		h, err := ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{app}, Events: events, Logger: log,
			Metrics: prometheus.NewRegistry(), KeepRaw: true, QueueWait: queueWait})
		if err != nil {
			return 0, 0, err
		}
		base, stop, err := serve(ingest.NewHTTPServer("127.0.0.1:0", h), "handler")
		if err != nil {
			return 0, 0, err
		}
		defer stop()
		url := base + "/webhooks/allpass/" + app.Name
		tr := &http.Transport{MaxIdleConnsPerHost: burstSize, DisableCompression: true}
		defer tr.CloseIdleConnections()
		client := &http.Client{Timeout: 30 * time.Second, Transport: tr}
		before, err := events.LastSeq(ctx)
		if err != nil {
			return 0, 0, err
		}

		gate := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		first, retries := 0, 0
		errs := newErrFirst()
		for i := range hooks {
			wg.Go(func() {
				labelGoroutine(ctx, "client")
				var buf bytes.Buffer
				<-gate
				for try := 0; ; try++ {
					_, err := post(ctx, client, url, hooks[i], i, &buf)
					if err == nil {
						mu.Lock()
						if try == 0 {
							first++
						} else {
							retries++
						}
						mu.Unlock()
						return
					}
					if err != errUnavailable || try >= 20 {
						errs.put(err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
		start := time.Now()
		close(gate)
		wg.Wait()
		took = time.Since(start)
		if err := errs.err(); err != nil {
			return 0, 0, err
		}
		after, err := events.LastSeq(ctx)
		if err != nil {
			return 0, 0, err
		}
		// post requires "duplicate":false for every 200, so each webhook was stored once;
		// the stream holds exactly the burst, nothing more.
		if after-before != burstSize {
			return 0, 0, fmt.Errorf("burst of %d stored %d events", burstSize, after-before)
		}
		return float64(first) / burstSize, took, nil
	}

	var shares, bases []float64
	var took time.Duration
	for k := range rounds {
		share, t, err := run(ingest.DefaultQueueWait)
		if err != nil {
			return err
		}
		base, _, err := run(time.Nanosecond)
		if err != nil {
			return err
		}
		shares, bases = append(shares, share), append(bases, base)
		took += t
		progress("round %d/%d: %.3f answered 200 first try with the queue, %.3f without", k+1, rounds, share, base)
	}
	r.set("share", minOf(shares))
	r.set("base_share", median(bases))
	r.set("seconds", took.Seconds()/float64(rounds))
	r.set("rounds", float64(rounds))
	return nil
}

func minOf(x []float64) float64 {
	m := x[0]
	for _, v := range x[1:] {
		m = min(m, v)
	}
	return m
}
