package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Concurrency of the two ingest comparisons: steady (ingest) and a burst (ingest_burst),
// where group commit carries many webhooks per write.
const (
	ingestSenders = 16
	burstSenders  = 256
)

// phaseIngest measures webhooks/s through the real handler (ingest.NewHandler behind
// ingest.NewHTTPServer on a loopback port; 16 keep-alive connections, each webhook
// distinct and sealed beforehand) beside JetStream's synchronous Publish of the bytes
// the handler stored, from 16 goroutines on one NATS connection, on the same embedded
// server fsyncing every write. Rounds alternate the two sides so that drift of the
// machine falls on both.
func phaseIngest(ctx context.Context, o options, r *result) error {
	n, rounds := 24_000, 24
	if o.Quick {
		n, rounds = 8_000, 8
	}
	return ingestRun(ctx, o, r, "ingest", embeddedTarget(), ingestSenders, 1, n, rounds, false)
}

// phaseIngestNew is phaseIngest with every webhook a new applicant's first (an app at
// the start of a campaign, or catching up after an outage): each one makes its data key
// in KYC_KEYS before its event is written (issue 22). Its ratio is over the bare relay.
func phaseIngestNew(ctx context.Context, o options, r *result) error {
	n, rounds := 24_000, 24
	if o.Quick {
		n, rounds = 8_000, 8
	}
	return ingestRun(ctx, o, r, "ingest_new", embeddedTarget(), ingestSenders, 1, n, rounds, true)
}

// phaseIngestBurstNew is phaseIngestBurst with every webhook a new applicant's first.
func phaseIngestBurstNew(ctx context.Context, o options, r *result) error {
	n, rounds := 40_000, 10
	if o.Quick {
		n, rounds = 12_000, 4
	}
	return ingestRun(ctx, o, r, "ingest_burst_new", embeddedTarget(), burstSenders, burstSenders, n, rounds, true)
}

// phaseIngestBurst is phaseIngest with 256 senders against 256 raw clients publishing
// one message at a time: what a burst of Allpass retries meets.
func phaseIngestBurst(ctx context.Context, o options, r *result) error {
	n, rounds := 40_000, 10
	if o.Quick {
		n, rounds = 12_000, 4
	}
	return ingestRun(ctx, o, r, "ingest_burst", embeddedTarget(), burstSenders, burstSenders, n, rounds, false)
}

// logTarget is where an ingest comparison's stream lives, so that the R1 phases (one
// embedded server) and the R3 phases (a 3-node cluster) measure with the same code.
type logTarget struct {
	// open starts what the stream needs under dir and opens the handler's connection and
	// log; the returned function stops everything it started.
	open func(ctx context.Context, r *result, dir string, log *zap.Logger) (*eventlog.Conn, *eventlog.EventLog, func(), error)
	// raw opens n connections of the baseline's clients to the server the handler's
	// connection c uses.
	raw func(c *eventlog.Conn, n int) ([]jetstream.JetStream, func(), error)
}

// embeddedTarget is the embedded server that fsyncs every write, as `kycstate serve` runs it.
func embeddedTarget() logTarget {
	return logTarget{
		open: func(ctx context.Context, _ *result, dir string, log *zap.Logger) (*eventlog.Conn, *eventlog.EventLog, func(), error) {
			c, events, err := openLog(ctx, dir, false, log)
			if err != nil {
				return nil, nil, nil, err
			}
			return c, events, func() { c.Close() }, nil
		},
		raw: rawClients,
	}
}

// ingestRun runs one ingest comparison on target: senders HTTP senders against senders
// raw publishers over conns NATS connections. The steady comparison shares one
// connection, as the handler does (and as the figure was first measured); the burst one
// gives each raw publisher its own, as `nats bench js pub sync --clients=256` does.
// With newOnly every webhook is an applicant's first.
func ingestRun(ctx context.Context, o options, r *result, name string, target logTarget, senders, conns, n, rounds int, newOnly bool) error {
	warm := 2 * senders * 4
	app := benchApp(o.Seed)
	w := newWorkload(o.Seed, app, 2_000)
	var ds []delivery
	if newOnly {
		ds = firstDeliveries(w, n+warm)
	} else {
		ds = make([]delivery, n+warm)
		for i := range ds {
			ds[i] = w.next()
		}
	}
	hooks, err := seal(app, ds)
	if err != nil {
		return err
	}
	dir, err := phaseDir(o, name)
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, closeLog, err := target.open(ctx, r, dir, log)
	if err != nil {
		return err
	}
	defer closeLog()
	reg := prometheus.NewRegistry()
	h, err := ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{app}, Events: events, Logger: log,
		Metrics: reg, KeepRaw: true})
	if err != nil {
		return err
	}
	base, stop, err := serve(ingest.NewHTTPServer("127.0.0.1:0", h), "handler")
	if err != nil {
		return err
	}
	defer stop()
	url := base + "/webhooks/allpass/" + app.Name
	client := keepAliveClient(senders)
	defer client.CloseIdleConnections()

	// Two bare net/http handlers beside the real one, same senders and bodies: the relay
	// publishes one stored event per request (js.Publish on the handler's connection, no
	// open, seal or group commit), the echo only answers. They show what the HTTP hop
	// alone costs here, and so how far any handler can get against the raw publishers.
	var roundMsgs atomic.Pointer[[]rawMsg]
	relayBase, stopRelay, err := serve(&http.Server{Handler: relayHandler(c.JS, &roundMsgs)}, "relay")
	if err != nil {
		return err
	}
	defer stopRelay()
	echoBase, stopEcho, err := serve(&http.Server{Handler: relayHandler(nil, nil)}, "echo")
	if err != nil {
		return err
	}
	defer stopEcho()
	relayClient, echoClient := keepAliveClient(senders), keepAliveClient(senders)
	defer relayClient.CloseIdleConnections()
	defer echoClient.CloseIdleConnections()
	clients := make([]jetstream.JetStream, senders)
	for i := range clients {
		clients[i] = c.JS
	}
	if conns > 1 {
		own, closeClients, err := target.raw(c, conns)
		if err != nil {
			return err
		}
		defer closeClients()
		for i := range clients {
			clients[i] = own[i%conns]
		}
	}

	// Warm up: connections open, the stream's first block created.
	if _, _, _, err := postAll(ctx, client, url, hooks[:warm], senders); err != nil {
		return err
	}
	if _, _, _, err := postAll(ctx, echoClient, echoBase, hooks[:warm], senders); err != nil {
		return err
	}
	hooks = hooks[warm:]
	writes0, webhooks0 := histogram(reg, "kycstate_ingest_commit_batch_size")

	probe, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		return err
	}
	defer probe.Close()
	var ours, raw, relay, echo time.Duration
	var oursLat, rawLat, syncLat, relayLat, echoLat []time.Duration
	var pairs []float64 // each round's handler rate over the raw rate of its own bytes
	for k := range rounds {
		lat, err := fsyncProbe(probe, 50)
		if err != nil {
			return err
		}
		syncLat = append(syncLat, lat...)

		part := hooks[k*n/rounds : (k+1)*n/rounds]
		stopProf, err := profile(o, fmt.Sprintf("%s-handler-%d", name, k))
		if err != nil {
			return err
		}
		hTook, lat, first, err := postAll(ctx, client, url, part, senders)
		if err := stopProf(); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		ours, oursLat = ours+hTook, append(oursLat, lat...)

		msgs, err := storedSince(ctx, events, first, len(part))
		if err != nil {
			return err
		}
		took, lat, err := publishAll(ctx, clients, msgs)
		if err != nil {
			return err
		}
		raw, rawLat = raw+took, append(rawLat, lat...)
		pairs = append(pairs, took.Seconds()/hTook.Seconds())

		roundMsgs.Store(&msgs)
		rTook, lat, _, err := postAll(ctx, relayClient, relayBase, part, senders)
		if err != nil {
			return fmt.Errorf("bare relay: %w", err)
		}
		relay, relayLat = relay+rTook, append(relayLat, lat...)
		eTook, lat, _, err := postAll(ctx, echoClient, echoBase, part, senders)
		if err != nil {
			return fmt.Errorf("bare echo: %w", err)
		}
		echo, echoLat = echo+eTook, append(echoLat, lat...)
		progress("round %d/%d: handler %.0f/s, raw publish %.0f/s, bare relay %.0f/s, bare echo %.0f/s", k+1, rounds,
			float64(len(part))/hTook.Seconds(), float64(len(part))/took.Seconds(),
			float64(len(part))/rTook.Seconds(), float64(len(part))/eTook.Seconds())
	}
	r.set("relay_rate", float64(n)/relay.Seconds())
	r.set("relay_p50_ms", ms(percentile(relayLat, 0.5)))
	r.set("echo_rate", float64(n)/echo.Seconds())
	r.set("echo_p50_ms", ms(percentile(echoLat, 0.5)))
	writes, webhooks := histogram(reg, "kycstate_ingest_commit_batch_size")
	r.set("per_write", (webhooks-webhooks0)/(writes-writes0))
	r.set("senders", float64(senders))
	oursRate, rawRate := float64(n)/ours.Seconds(), float64(n)/raw.Seconds()
	r.set("webhooks", float64(n))
	r.set("rate", oursRate)
	r.set("raw_rate", rawRate)
	// The ratio is the median of the rounds' ratios: a disk stall that hits one side of
	// one round (the machine's other tenants fsync too) moves it by one rank, not by the
	// stall's length. The totals' ratio is reported beside it.
	r.set("ratio", median(pairs))
	r.set("ratio_min", slices.Min(pairs))
	r.set("ratio_max", slices.Max(pairs))
	r.set("ratio_totals", oursRate/rawRate)
	r.set("rounds", float64(rounds))
	r.set("p50_ms", ms(percentile(oursLat, 0.5)))
	r.set("p99_ms", ms(percentile(oursLat, 0.99)))
	r.set("raw_p50_ms", ms(percentile(rawLat, 0.5)))
	r.set("raw_p99_ms", ms(percentile(rawLat, 0.99)))
	r.set("fsync_p50_ms", ms(percentile(syncLat, 0.5)))
	r.set("fsync_p99_ms", ms(percentile(syncLat, 0.99)))
	var size int
	for _, h := range hooks {
		size += len(h.body)
	}
	r.set("body_bytes", float64(size)/float64(len(hooks)))
	return nil
}

// fsyncProbe appends 1 KiB to f and fsyncs it, n times: what one JetStream write costs
// at the least when the server syncs every write.
func fsyncProbe(f *os.File, n int) ([]time.Duration, error) {
	buf := make([]byte, 1024)
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// postAll sends every webhook once from senders goroutines and checks each answer is
// 200 {"duplicate":false}. It returns the wall time, each request's latency and the
// lowest sequence acknowledged.
func postAll(ctx context.Context, client *http.Client, url string, hooks []webhook, senders int) (time.Duration, []time.Duration, uint64, error) {
	var next atomic.Int64
	var lowest atomic.Uint64
	lowest.Store(^uint64(0))
	lats := make([][]time.Duration, senders)
	errs := newErrFirst()
	var wg sync.WaitGroup
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			labelGoroutine(ctx, "client")
			var buf bytes.Buffer
			for {
				i := int(next.Add(1) - 1)
				if i >= len(hooks) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				ack, err := post(ctx, client, url, hooks[i], i, &buf)
				if err != nil {
					errs.put(err)
					return
				}
				lats[s] = append(lats[s], time.Since(t0))
				for {
					cur := lowest.Load()
					if ack.Seq >= cur || lowest.CompareAndSwap(cur, ack.Seq) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errs.err(); err != nil {
		return 0, nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, 0, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return took, all, lowest.Load(), nil
}

type ingestAck struct {
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// post sends one webhook, the i-th of its round, and requires a 200 for a new event.
func post(ctx context.Context, client *http.Client, url string, h webhook, i int, buf *bytes.Buffer) (ingestAck, error) {
	if h.url != "" {
		url = h.url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(h.body))
	if err != nil {
		return ingestAck{}, err
	}
	for k, v := range h.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if h.url == "" {
		req.Header.Set("x-allpass-signature", h.sig)
	}
	req.Header.Set(benchIndexHeader, strconv.Itoa(i))
	resp, err := client.Do(req)
	if err != nil {
		return ingestAck{}, err
	}
	err = readBody(resp.Body, buf)
	resp.Body.Close()
	if err != nil {
		return ingestAck{}, err
	}
	var ack ingestAck
	if resp.StatusCode == http.StatusServiceUnavailable {
		return ack, errUnavailable
	}
	if resp.StatusCode != http.StatusOK {
		return ack, fmt.Errorf("webhook answered %d: %s", resp.StatusCode, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), &ack); err != nil {
		return ack, fmt.Errorf("webhook answer %q: %w", buf.Bytes(), err)
	}
	if ack.Duplicate || ack.Seq == 0 {
		return ack, fmt.Errorf("webhook answer %s: want a new event", buf.Bytes())
	}
	return ack, nil
}

// benchIndexHeader tells the bare relay which stored event of the round to publish.
const benchIndexHeader = "X-Bench-Index"

// relayHandler reads the body and answers {"seq":N,"duplicate":false}, as the webhook
// handler does; with js it first publishes the stored event msgs names by the request's
// benchIndexHeader and answers its sequence, without js it answers seq 1.
func relayHandler(js jetstream.JetStream, msgs *atomic.Pointer[[]rawMsg]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		labelGoroutine(r.Context(), "bare")
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seq := uint64(1)
		if js != nil {
			var round []rawMsg
			if p := msgs.Load(); p != nil {
				round = *p
			}
			i, err := strconv.Atoi(r.Header.Get(benchIndexHeader))
			if err != nil || i < 0 || i >= len(round) {
				http.Error(w, "no stored event for this index", http.StatusBadRequest)
				return
			}
			ack, err := js.Publish(r.Context(), round[i].subject, round[i].data)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			seq = ack.Sequence
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(fmt.Appendf(nil, `{"seq":%d,"duplicate":false}`, seq))
	})
}

// errUnavailable is a 503: the log did not confirm the write in time (or the in-flight
// limit was reached). Allpass retries such a delivery later; the paced run counts them.
var errUnavailable = errors.New("webhook answered 503")

// rawMsg is a stored event's subject and exact bytes.
type rawMsg struct {
	subject string
	data    []byte
}

// storedSince reads back the n events stored from sequence first on, as the log holds
// them.
func storedSince(ctx context.Context, events *eventlog.EventLog, first uint64, n int) ([]rawMsg, error) {
	out := make([]rawMsg, 0, n)
	err := events.Read(ctx, first, 1000, func(evs []domain.Event) error {
		for _, ev := range evs {
			subject, err := eventlog.Subject(ev.AppKey, ev.ApplicantID)
			if err != nil {
				return err
			}
			out = append(out, rawMsg{subject, ev.Stored})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, fmt.Errorf("read back %d stored events from seq %d, want %d", len(out), first, n)
	}
	return out, nil
}

// rawClients opens n NATS connections to the embedded server of c, in process, each
// with its own JetStream context: the baseline's clients, one per sender, as `nats
// bench js pub sync --clients=N` runs them.
func rawClients(c *eventlog.Conn, n int) ([]jetstream.JetStream, func(), error) {
	ns := c.Server()
	return jsClients(n, func() (*nats.Conn, error) {
		return nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name("kycstate-bench-raw"))
	})
}

// jsClients opens n connections with connect, each with its own JetStream context; the
// returned function closes them all.
func jsClients(n int, connect func() (*nats.Conn, error)) ([]jetstream.JetStream, func(), error) {
	var conns []*nats.Conn
	closeAll := func() {
		for _, nc := range conns {
			nc.Close()
		}
	}
	var out []jetstream.JetStream
	for range n {
		nc, err := connect()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		out = append(out, js)
	}
	return out, closeAll, nil
}

// histogram returns the sample count and sum of the histogram name in reg.
func histogram(reg *prometheus.Registry, name string) (count, sum float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				if h := m.GetHistogram(); h != nil {
					count += float64(h.GetSampleCount())
					sum += h.GetSampleSum()
				}
			}
		}
	}
	return count, sum
}

// publishAll publishes msgs with JetStream's synchronous Publish (no header, no message
// id), one message at a time per client, every client at once.
func publishAll(ctx context.Context, clients []jetstream.JetStream, msgs []rawMsg) (time.Duration, []time.Duration, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, len(clients))
	errs := newErrFirst()
	var wg sync.WaitGroup
	start := time.Now()
	for s, js := range clients {
		wg.Go(func() {
			labelGoroutine(ctx, "rawclient")
			for {
				i := int(next.Add(1) - 1)
				if i >= len(msgs) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if _, err := js.Publish(ctx, msgs[i].subject, msgs[i].data); err != nil {
					errs.put(err)
					return
				}
				lats[s] = append(lats[s], time.Since(t0))
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errs.err(); err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return took, all, nil
}
