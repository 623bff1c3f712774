package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

const benchClients = 32

// BenchmarkStateThroughput measures GET /v1/applicants/{id} through the real handler
// (auth, routing, metrics, a bbolt read, encoding) beside a bare net/http handler that
// serves the same bytes after the same constant-time token check, in the same run, both
// over real loopback connections with keep-alive and 32 concurrent clients.
//
// Reported: ratio (real throughput / bare throughput; goal >= 0.7), each side's req/s,
// and p99 latency of each at 32 connections.
func BenchmarkStateThroughput(b *testing.B) {
	f := newFixture(b, nil)
	target := "/v1/applicants/" + string(idA)
	real := httptest.NewServer(f.h)
	defer real.Close()

	want := f.get(b, target, readerToken)
	body, seq := want.Body.Bytes(), want.Header().Get(SeqHeader)
	sums := [][sha256.Size]byte{sha256.Sum256([]byte(readerToken)), sha256.Sum256([]byte(auditorToken))}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(tok))
		found := 0
		for i := range sums {
			found |= subtle.ConstantTimeCompare(sum[:], sums[i][:])
		}
		if !ok || found == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set(SeqHeader, seq)
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	}))
	defer bare.Close()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}}
	defer client.CloseIdleConnections()
	// Warm both: connections open, pages mapped.
	load(b, client, bare.URL+target, benchClients*20, body)
	load(b, client, real.URL+target, benchClients*20, body)

	b.ResetTimer()
	// Ten rounds interleaved, so drift of the machine during the run falls on both sides.
	const rounds = 10
	var bareT, realT time.Duration
	var bareLat, realLat []time.Duration
	for i := range rounds {
		n := b.N/rounds + boolInt(i < b.N%rounds)
		d, lat := load(b, client, bare.URL+target, n, body)
		bareT, bareLat = bareT+d, append(bareLat, lat...)
		d, lat = load(b, client, real.URL+target, n, body)
		realT, realLat = realT+d, append(realLat, lat...)
	}
	b.StopTimer()
	realRate := float64(b.N) / realT.Seconds()
	bareRate := float64(b.N) / bareT.Seconds()
	b.ReportMetric(realRate/bareRate, "ratio")
	b.ReportMetric(realRate, "req/s")
	b.ReportMetric(bareRate, "bare-req/s")
	b.ReportMetric(ms(percentile(realLat, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(bareLat, 0.99)), "bare-p99-ms")
}

// load sends n GETs from benchClients goroutines and returns the wall time and each
// request's latency. Every response must be the expected body.
func load(b *testing.B, client *http.Client, url string, n int, want []byte) (time.Duration, []time.Duration) {
	var next atomic.Int64
	lats := make([][]time.Duration, benchClients)
	errs := make(chan error, benchClients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, len(want)+64)
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+readerToken)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				buf, err = readAll(resp.Body, buf[:0])
				resp.Body.Close()
				lats[c] = append(lats[c], time.Since(t0))
				if err != nil || resp.StatusCode != http.StatusOK || string(buf) != string(want) {
					errs <- fmt.Errorf("%d %v %q", resp.StatusCode, err, buf)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return elapsed, slices.Concat(lats...)
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// BenchmarkChangeFeedDelay measures how long a product service following /v1/changes
// with wait waits for a decision: from the start of Projection.Apply (fold, bbolt commit
// with fsync) to the follower having decoded the change. Beside it, in the same run, the
// commit on its own (Apply's duration): the baseline the feed adds its wake-up and HTTP
// round trip to. Reported: p50 and p99 of the delay, p50 of the commit, and their ratio.
func BenchmarkChangeFeedDelay(b *testing.B) {
	var waits <-chan uint64
	f := newFixture(b, func(c *Config) { waits = watchWaits(c) })
	srv := httptest.NewServer(f.h)
	defer srv.Close()

	type got struct {
		seq uint64
		at  time.Time
	}
	received := make(chan got, 1)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() { // the follower
		defer close(readerDone)
		after := f.proj.Checkpoint()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/changes?after=%d&wait=1", srv.URL, after), nil)
			req.Header.Set("Authorization", "Bearer "+readerToken)
			resp, err := srv.Client().Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			var page client.Changes
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			now := time.Now()
			if err != nil {
				b.Error(err)
				return
			}
			for _, c := range page.Changes {
				received <- got{c.Seq, now}
			}
			after = page.Next
		}
	}()
	defer func() { close(stop); <-readerDone }()

	delays := make([]time.Duration, 0, b.N)
	commits := make([]time.Duration, 0, b.N)
	types := []domain.EventType{domain.EventIncomplete, domain.EventInProgress}
	b.ResetTimer()
	for i := range b.N {
		// Commit once the follower's next request holds for this event: the figure is
		// the parked follower's delay, not that of one between two requests.
		for want := uint64(len(f.stored)) + 1; ; {
			select {
			case seq := <-waits:
				if seq != want {
					continue // a hold that ended (its wait=1 ran out) before this event
				}
			case <-readerDone:
				b.Fatal("follower stopped")
			}
			break
		}
		at := 2*time.Hour + time.Duration(i)*time.Second
		evs := fixtureEvents(b, uint64(len(f.stored))+1, []spec{{id: idE, app: app1, ext: "user-5", typ: types[i%2], at: at, recv: at}})
		t0 := time.Now()
		if _, err := f.proj.Apply(evs, f.folder); err != nil {
			b.Fatal(err)
		}
		commits = append(commits, time.Since(t0))
		f.stored = append(f.stored, evs...)
		var g got
		select {
		case g = <-received:
		case <-readerDone:
			b.Fatal("follower stopped")
		}
		if g.seq != evs[0].Seq {
			b.Fatalf("follower saw %d, want %d", g.seq, evs[0].Seq)
		}
		delays = append(delays, g.at.Sub(t0))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(delays, 0.50)), "delay-p50-ms")
	b.ReportMetric(ms(percentile(delays, 0.99)), "delay-p99-ms")
	b.ReportMetric(ms(percentile(commits, 0.50)), "commit-p50-ms")
	b.ReportMetric(float64(percentile(delays, 0.50))/float64(percentile(commits, 0.50)), "delay/commit")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
