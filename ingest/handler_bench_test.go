package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The ingest benchmarks compare the whole webhook path (HTTP, verification, decryption,
// validation, append with fsync) with its floor: publishing the same stored bytes straight
// to JetStream, on the same embedded server (sync_interval always) in the same run.
//
//	go test ./ingest -run '^$' -bench 'Handler' -benchtime 4000x

// benchRig is the handler behind a real HTTP server and a keep-alive client.
type benchRig struct {
	conn   *jstest.Server
	app    *allpass.App
	url    string
	client *http.Client
}

func newBenchRig(b *testing.B) *benchRig {
	b.Helper()
	conn, events := mustLog(b, b.TempDir(), jstest.SyncAlways())
	cbc, _ := mustApps(b, mustVectors(b))
	h, err := NewHandler(HandlerConfig{Apps: []*allpass.App{cbc}, Events: events, Logger: zap.NewNop(),
		Metrics: prometheus.NewRegistry(), KeepRaw: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config = NewHTTPServer("", h)
	srv.Start()
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	b.Cleanup(tr.CloseIdleConnections)
	return &benchRig{conn: conn, app: cbc, url: srv.URL + "/webhooks/allpass/" + cbc.Name,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// benchHook is one pre-sealed webhook and the message the log stores for it.
type benchHook struct {
	body    []byte
	sig     string
	subject string
	stored  []byte
	msgID   string // for the raw publish: distinct from the webhook's own
}

// prepare seals n distinct webhooks (applicants from offset on) and builds, outside any
// timing, the bytes Append would store for each.
func (r *benchRig) prepare(b *testing.B, n, offset int) []benchHook {
	b.Helper()
	hooks := make([]benchHook, n)
	for i := range hooks {
		body, sig := seal(b, r.app, payload(r.app, offset+i, "applicantCreated"), "2026-03-01T10:00:00Z")
		ev, msgID, err := r.app.Open(body, sig, time.Now(), allpass.Options{KeepRaw: true})
		if err != nil {
			b.Fatal(err)
		}
		ev.V = domain.StoredVersion
		stored, err := json.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		subject, err := eventlog.Subject(ev.AppKey, ev.ApplicantID)
		if err != nil {
			b.Fatal(err)
		}
		hooks[i] = benchHook{body: body, sig: sig, subject: subject, stored: stored, msgID: "raw-" + msgID}
	}
	return hooks
}

func (r *benchRig) post(h benchHook) error {
	req, err := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(h.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-allpass-signature", h.sig)
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	raw, _ := io.ReadAll(resp.Body) // drained, so the connection is reused
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	return nil
}

func (r *benchRig) publish(ctx context.Context, h benchHook) error {
	_, err := r.conn.JS.Publish(ctx, h.subject, h.stored, jetstream.WithMsgID(h.msgID),
		jetstream.WithExpectStream(eventlog.EventStream))
	return err
}

// runConcurrent calls fn for 0..n-1 from the given number of workers and returns the
// wall time; the first error stops the workers.
func runConcurrent(n, workers int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), first
}

// runPaced starts fn(i) at start + i*interval, each in its own goroutine, and returns
// each call's latency measured from its scheduled start, so that a stall delays the
// calls behind it in the figures too (no coordinated omission), and how many failed.
// A rate the log cannot sustain shows as failures (503 after the append timeout), not as
// a stopped benchmark.
func runPaced(n int, interval time.Duration, fn func(i int) error) (lat []time.Duration, failed int, first error) {
	lat = make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
			lat[i] = time.Since(at)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return lat, failed, first
}

func percentileMS(sorted []time.Duration, p int) float64 {
	i := min(len(sorted)-1, len(sorted)*p/100)
	return float64(sorted[i]) / float64(time.Millisecond)
}

const benchSenders = 16

// BenchmarkHandlerThroughput: webhooks per second through the handler (16 concurrent
// keep-alive senders) against raw JetStream publishes of the same stored bytes (16
// concurrent), in short alternating rounds (which goes first alternates too), so that
// the growing stream and load from elsewhere on the machine weigh on both alike. "ratio"
// is the median of the rounds' ratios: a disk stall of a second, which on a shared
// machine lands in one round, does not decide it; "ratio_total" is over the whole run.
// Goal: ratio >= 0.8.
func BenchmarkHandlerThroughput(b *testing.B) {
	r := newBenchRig(b)
	n := b.N
	hooks := r.prepare(b, n, 1)
	ctx := context.Background()
	rounds := max(1, min(32, n/(8*benchSenders)))

	var viaHandler, viaPublish time.Duration
	var ratios []float64
	b.ResetTimer()
	for k := range rounds {
		part := hooks[k*n/rounds : (k+1)*n/rounds]
		var dh, dp time.Duration
		handler := func() {
			d, err := runConcurrent(len(part), benchSenders, func(i int) error { return r.post(part[i]) })
			if err != nil {
				b.Fatal(err)
			}
			dh = d
		}
		publish := func() {
			d, err := runConcurrent(len(part), benchSenders, func(i int) error { return r.publish(ctx, part[i]) })
			if err != nil {
				b.Fatal(err)
			}
			dp = d
		}
		if k%2 == 0 {
			handler()
			publish()
		} else {
			publish()
			handler()
		}
		viaHandler, viaPublish = viaHandler+dh, viaPublish+dp
		if dh > 0 && dp > 0 {
			ratios = append(ratios, dp.Seconds()/dh.Seconds()) // same count: rate ratio
		}
	}
	b.StopTimer()

	webhooks := float64(n) / viaHandler.Seconds()
	publishes := float64(n) / viaPublish.Seconds()
	b.ReportMetric(float64(viaHandler.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(webhooks, "webhooks/s")
	b.ReportMetric(publishes, "publish/s")
	b.ReportMetric(webhooks/publishes, "ratio_total")
	if len(ratios) > 0 {
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/2], "ratio")
	}
}

// BenchmarkHandlerLatency: latency at a paced rate through the handler, beside raw
// publishes paced the same way, as p50/p99 in milliseconds, and the fraction of requests
// that failed (a 503 once the append timed out) when the rate is past what the disk's
// fsync allows. 1000/s is the target rate; 100/s shows the latency of an unsaturated log.
func BenchmarkHandlerLatency(b *testing.B) {
	for _, rate := range []int{1000, 100} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchLatency(b, rate) })
	}
}

func benchLatency(b *testing.B, rate int) {
	r := newBenchRig(b)
	n := b.N
	hooks := r.prepare(b, n, 1)
	ctx := context.Background()
	interval := time.Second / time.Duration(rate)

	b.ResetTimer()
	latHandler, failHandler, errHandler := runPaced(n, interval, func(i int) error { return r.post(hooks[i]) })
	latPublish, failPublish, errPublish := runPaced(n, interval, func(i int) error {
		pctx, cancel := context.WithTimeout(ctx, DefaultAppendTimeout)
		defer cancel()
		return r.publish(pctx, hooks[i])
	})
	b.StopTimer()
	for _, err := range []error{errHandler, errPublish} {
		if err != nil {
			b.Logf("first failure: %v", err)
		}
	}

	slices.Sort(latHandler)
	slices.Sort(latPublish)
	b.ReportMetric(percentileMS(latHandler, 50), "p50_ms")
	b.ReportMetric(percentileMS(latHandler, 99), "p99_ms")
	b.ReportMetric(percentileMS(latPublish, 50), "pub_p50_ms")
	b.ReportMetric(percentileMS(latPublish, 99), "pub_p99_ms")
	b.ReportMetric(percentileMS(latHandler, 99)/percentileMS(latPublish, 99), "p99_ratio")
	b.ReportMetric(float64(failHandler)/float64(n), "failed")
	b.ReportMetric(float64(failPublish)/float64(n), "pub_failed")
}
