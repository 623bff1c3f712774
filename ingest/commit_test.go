package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
)

// delivery is one webhook posted and its answer.
type delivery struct {
	n      int // the webhook: payload(cbc, n, ...), one applicant per n
	status int
	seq    uint64
	dup    bool
	raw    string
}

// flood posts webhooks from senders goroutines until next returns false: next(sender, i)
// gives the webhook number of the sender's i-th post. Every post's answer is returned.
// The senders report what goes wrong with t.Errorf: they are not the test's goroutine.
func (e *env) flood(t *testing.T, senders int, next func(sender, i int) (int, bool)) []delivery {
	t.Helper()
	bodies := sync.Map{} // n -> [2]string{body, sig}, sealed once so a repeat is a retry
	seal1 := func(n int) (string, string, error) {
		if v, ok := bodies.Load(n); ok {
			b := v.([2]string)
			return b[0], b[1], nil
		}
		plain, err := json.Marshal(payload(e.cbc, n, "applicantCreated"))
		if err != nil {
			return "", "", err
		}
		body, sig, err := allpass.Seal(e.cbc.Method, e.cbc.Keys[0], plain, "2026-03-01T10:00:00Z", nil)
		if err != nil {
			return "", "", err
		}
		v, _ := bodies.LoadOrStore(n, [2]string{string(body), sig})
		b := v.([2]string)
		return b[0], b[1], nil
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var out []delivery
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := 0; ; i++ {
				n, ok := next(s, i)
				if !ok {
					return
				}
				body, sig, err := seal1(n)
				if err != nil {
					t.Errorf("sealing webhook %d: %v", n, err)
					return
				}
				d := delivery{n: n, status: -1}
				req, _ := http.NewRequest("POST", e.srv.URL+"/webhooks/allpass/cbc", bytes.NewReader([]byte(body)))
				req.Header.Set("x-allpass-signature", sig)
				if resp, err := client.Do(req); err != nil {
					d.raw = err.Error()
				} else {
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					d.status, d.raw = resp.StatusCode, string(raw)
					if d.status == 200 {
						if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
							t.Errorf("webhook %d: 200 with Content-Type %q", n, ct)
							return
						}
						var ok struct {
							Seq       *uint64 `json:"seq"`
							Duplicate *bool   `json:"duplicate"`
						}
						if err := json.Unmarshal(raw, &ok); err != nil || ok.Seq == nil || ok.Duplicate == nil {
							t.Errorf("webhook %d: 200 body %q is not {seq,duplicate}: %v", n, raw, err)
							return
						}
						d.seq, d.dup = *ok.Seq, *ok.Duplicate
					}
				}
				mu.Lock()
				out = append(out, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// checkDeliveries checks every 200 against the log l: the event at its seq is its
// webhook, each webhook is stored at one seq, and no seq holds two webhooks. It returns
// the webhooks answered 200.
func checkDeliveries(t *testing.T, events *eventlog.EventLog, ds []delivery) map[int]uint64 {
	t.Helper()
	seqOf := map[int]uint64{}
	nOf := map[uint64]int{}
	for _, d := range ds {
		if d.status != 200 {
			continue
		}
		if s, ok := seqOf[d.n]; ok && s != d.seq {
			t.Fatalf("webhook %d answered with seq %d and %d", d.n, s, d.seq)
		}
		if n, ok := nOf[d.seq]; ok && n != d.n {
			t.Fatalf("seq %d answered for webhooks %d and %d", d.seq, n, d.n)
		}
		seqOf[d.n], nOf[d.seq] = d.seq, d.n
	}
	for n, seq := range seqOf {
		ev := readOne(t, events, seq)
		if ev.ApplicantID != domain.ApplicantID(applicant(n)) {
			t.Fatalf("seq %d, answered for webhook %d, holds applicant %s", seq, n, ev.ApplicantID)
		}
	}
	// Nothing is stored twice: the stream holds each webhook once.
	seen := map[domain.ApplicantID]uint64{}
	err := events.Read(context.Background(), 1, 512, func(evs []domain.Event) error {
		for _, ev := range evs {
			if prev, ok := seen[ev.ApplicantID]; ok {
				t.Errorf("applicant %s stored at %d and %d", ev.ApplicantID, prev, ev.Seq)
			}
			seen[ev.ApplicantID] = ev.Seq
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqOf
}

// checkProjected runs the projector over l into a projection file in t.TempDir() until it
// has applied the stream's last sequence, then checks that every webhook answered 200 is
// its applicant's one event in the projection, at the seq it was answered with: state
// and history, as the read API serves them.
func checkProjected(t *testing.T, events *eventlog.EventLog, seqOf map[int]uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	last, err := events.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer proj.Close()
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- projector.New(events, proj, projector.Config{}, zap.NewNop(), nil).Run(run) }()
	proj.WaitFor(ctx, last) // or the 60 s deadline: checked below
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("projector: %v", err)
	}
	if cp := proj.Checkpoint(); cp < last {
		t.Fatalf("projection reached seq %d of %d", cp, last)
	}
	for n, seq := range seqOf {
		id := domain.ApplicantID(applicant(n))
		st, ok, err := proj.State(id)
		if err != nil || !ok || st.Events != 1 || st.LastSeq != seq {
			t.Fatalf("webhook %d answered seq %d: projected state %+v, found %v, %v", n, seq, st, ok, err)
		}
		recs, _, err := proj.History(id, 0, 10)
		if err != nil || len(recs) != 1 || recs[0].Seq != seq {
			t.Fatalf("webhook %d answered seq %d: projected history %+v, %v", n, seq, recs, err)
		}
	}
}

// TestGroupCommitUnderLoad: 256 senders at once, with retries of the same webhook mixed
// in (from the same sender and from others, so duplicates land inside atomic batches):
// every webhook is answered 200, is in the stream exactly once and in the projection the
// projector folds from it, and every answer for it carries its one seq; exactly one
// answer per webhook says it is new. The writes did go as batches.
func TestGroupCommitUnderLoad(t *testing.T) {
	const senders, each = 256, 8
	e := newEnvServer(t, t.TempDir(), []jstest.Option{jstest.SyncAlways()})
	ds := e.flood(t, senders, func(s, i int) (int, bool) {
		switch {
		case i < each:
			return s*each + i, true
		case i == each: // a retry of its own first webhook
			return s * each, true
		case i == each+1: // another sender's webhook, likely in flight now
			return ((s+1)%senders)*each + i%each, true
		}
		return 0, false
	})
	for _, d := range ds {
		if d.status != 200 {
			t.Fatalf("webhook %d: %d %s", d.n, d.status, d.raw)
		}
	}
	seqOf := checkDeliveries(t, e.events, ds)
	if len(seqOf) != senders*each {
		t.Fatalf("%d webhooks answered, want %d", len(seqOf), senders*each)
	}
	checkProjected(t, e.events, seqOf)
	news := map[int]int{}
	for _, d := range ds {
		if !d.dup {
			news[d.n]++
		}
	}
	for n := range seqOf {
		if news[n] != 1 {
			t.Fatalf("webhook %d answered as new %d times", n, news[n])
		}
	}
	if last := e.lastSeq(t); last != senders*each {
		t.Fatalf("last seq %d, want %d", last, senders*each)
	}
	writes := e.metric(t, "kycstate_ingest_commit_batch_size", nil)
	if writes == 0 || writes > float64(len(ds))/4 {
		t.Fatalf("%v writes for %d webhooks: no group commit", writes, len(ds))
	}
	t.Logf("%d webhooks in %v writes", len(ds), writes)
}

// TestGroupCommitServerKilledMidBatch: the server shuts down while 256 senders keep
// posting; no webhook is answered 200 unless its batch committed, and after a restart
// every 200 is in the stream at the seq it was answered with, once, and in the projection.
func TestGroupCommitServerKilledMidBatch(t *testing.T) {
	const senders = 256
	dir := t.TempDir()
	e := newEnvServer(t, dir, []jstest.Option{jstest.SyncAlways()},
		func(c *HandlerConfig) { c.AppendTimeout = time.Second })
	var mu sync.Mutex
	oks, killed := 0, false
	ds := e.flood(t, senders, func(s, i int) (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if killed {
			return 0, false
		}
		oks++
		if oks == 1500 {
			// Mid-flight: hundreds of webhooks are in batches being written now.
			killed = true
			go e.conn.NS.Shutdown()
		}
		return s*1000 + i, true
	})
	var good, refused int
	for _, d := range ds {
		switch d.status {
		case 200:
			good++
		case 503:
			refused++
		default:
			t.Fatalf("webhook %d: %d %s", d.n, d.status, d.raw)
		}
	}
	t.Logf("%d answered 200, %d answered 503", good, refused)
	if good == 0 || refused == 0 {
		t.Fatalf("the kill did not land mid-flight: %d 200, %d 503", good, refused)
	}
	e.conn.Close()
	js := jstest.StartIn(t, dir)
	events := js.EventLog(t, eventlog.Config{}, zap.NewNop())
	checkProjected(t, events, checkDeliveries(t, events, ds))
}
