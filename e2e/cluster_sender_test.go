package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// clLifecycle is what the sender delivers for each applicant, in this order: a regular
// path through the lifecycle ending in APPROVED.
var clLifecycle = []string{"applicantCreated", "applicantInProgress", "applicantCompleted", "applicantApproved"}

const clFinalStatus = "APPROVED"

// clKey names one webhook: every (applicant, type) is sent as exactly one delivery.
type clKey struct{ applicant, typ string }

// clAttempt is one POST of a delivery.
type clAttempt struct {
	start, end time.Time
	status     int    // 0: no HTTP answer
	err        string // transport error, or the error body of a refusal
	retryAfter string
	seq        uint64
	duplicate  bool
}

// clDelivery is one webhook as Allpass handles it: the same body and signature resent
// until an attempt is answered 200, or the sender gives up.
type clDelivery struct {
	key       clKey
	body      []byte
	sig       string
	attempts  []clAttempt
	delivered bool // some attempt was answered 200
	seq       uint64
	gaveUp    bool
}

// clSender plays Allpass against one ingest node: workers deliver applicants' lifecycles,
// retrying every answer but 200 with a short bounded backoff (Allpass waits 30 s and
// more; the test compresses that). Its workers are not the test's goroutine: they
// record failures (fail) for the test to report.
type clSender struct {
	url     string
	app     clApp
	keys    allpass.Keys
	client  *http.Client
	workers int
	pace    time.Duration // pause between one worker's webhooks
	budget  time.Duration // how long one delivery is retried before giving up
	maxApps int64

	next      atomic.Int64
	delivered atomic.Int64
	stop      chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup

	mu         sync.Mutex
	deliveries []*clDelivery
	errs       []string
}

func clNewSender(t *testing.T, ingestURL string, app clApp) *clSender {
	t.Helper()
	sec, err := allpass.ParseKey("test", "secret_key", app.secretHex)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := allpass.ParseKey("test", "hmac_key", app.hmacHx)
	if err != nil {
		t.Fatal(err)
	}
	return &clSender{
		url: ingestURL + "/webhooks/allpass/main", app: app,
		keys:    allpass.Keys{Secret: sec, HMAC: mac[:]},
		client:  &http.Client{Timeout: 15 * time.Second},
		workers: 4, pace: 10 * time.Millisecond, budget: 60 * time.Second, maxApps: 5000,
		stop: make(chan struct{}),
	}
}

// start runs the workers until halt.
func (s *clSender) start(ctx context.Context) {
	for range s.workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.work(ctx)
		}()
	}
}

// halt stops starting new webhooks and waits for the ones in flight to be delivered or
// given up. Safe to call twice.
func (s *clSender) halt() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

func (s *clSender) stopped(ctx context.Context) bool {
	select {
	case <-s.stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func (s *clSender) work(ctx context.Context) {
	for !s.stopped(ctx) {
		n := s.next.Add(1)
		if n > s.maxApps {
			return
		}
		applicant := domain.NewUUID()
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second)
		for i, typ := range clLifecycle {
			if s.stopped(ctx) {
				return
			}
			d, err := s.seal(applicant, typ, fmt.Sprintf("ext-%d", n), base.Add(time.Duration(i)*time.Minute))
			if err != nil {
				s.fail("sealing: %v", err)
				return
			}
			s.mu.Lock()
			s.deliveries = append(s.deliveries, d)
			s.mu.Unlock()
			s.deliver(ctx, d)
			time.Sleep(s.pace)
		}
	}
}

func (s *clSender) seal(applicant, typ, ext string, at time.Time) (*clDelivery, error) {
	plain, err := json.Marshal(map[string]any{
		"type": typ, "id": applicant, "externalUserId": ext, "appKey": s.app.appKey,
		"updatedAt": at.Format(time.RFC3339),
	})
	if err != nil {
		return nil, err
	}
	body, sig, err := allpass.Seal(allpass.MethodCBC, s.keys, plain, at.Format(time.RFC3339), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &clDelivery{key: clKey{applicant, typ}, body: body, sig: sig}, nil
}

// deliver posts d until it is answered 200, its budget runs out, or ctx ends. The
// attempts are recorded under the lock, so the test can read them while workers run.
func (s *clSender) deliver(ctx context.Context, d *clDelivery) {
	first := time.Now()
	backoff := 50 * time.Millisecond
	for {
		a := s.post(ctx, d)
		s.mu.Lock()
		d.attempts = append(d.attempts, a)
		if a.status == http.StatusOK {
			d.delivered, d.seq = true, a.seq
		}
		s.mu.Unlock()
		if a.status == http.StatusOK {
			s.delivered.Add(1)
			return
		}
		if time.Since(first) > s.budget || ctx.Err() != nil {
			s.mu.Lock()
			d.gaveUp = true
			s.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *clSender) post(ctx context.Context, d *clDelivery) (a clAttempt) {
	a.start = time.Now()
	defer func() { a.end = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(d.body))
	if err != nil {
		a.err = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-allpass-signature", d.sig)
	resp, err := s.client.Do(req)
	if err != nil {
		a.err = err.Error()
		return a
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	if resp.StatusCode == http.StatusOK {
		var r struct {
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Seq == 0 {
			// A 200 without a sequence is a broken promise; keep it, the checks fail on it.
			a.err = fmt.Sprintf("200 with body %q", body)
		}
		a.seq, a.duplicate = r.Seq, r.Duplicate
	} else {
		a.err = string(body)
	}
	return a
}

func (s *clSender) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// waitDelivered waits until at least n more webhooks than now have been answered 200.
func (s *clSender) waitDelivered(t *testing.T, n int64, d time.Duration, what string) {
	t.Helper()
	target := s.delivered.Load() + n
	clEventually(t, d, what, func() error {
		if got := s.delivered.Load(); got < target {
			return fmt.Errorf("%d of %d webhooks answered 200", got, target)
		}
		return nil
	})
}

// snapshot copies the deliveries and their attempts; call it after halt for a final view.
func (s *clSender) snapshot() []clDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]clDelivery, len(s.deliveries))
	for i, d := range s.deliveries {
		out[i] = *d
		out[i].attempts = append([]clAttempt(nil), d.attempts...)
	}
	return out
}

// clSummary counts what the sender saw, for the log.
func clSummary(ds []clDelivery) string {
	var delivered, gaveUp, attempts, refused, dups int
	statuses := map[int]int{}
	var slowest time.Duration
	for _, d := range ds {
		attempts += len(d.attempts)
		if d.delivered {
			delivered++
			if took := d.attempts[len(d.attempts)-1].end.Sub(d.attempts[0].start); took > slowest {
				slowest = took
			}
		}
		if d.gaveUp {
			gaveUp++
		}
		for _, a := range d.attempts {
			statuses[a.status]++
			if a.status != http.StatusOK {
				refused++
			}
			if a.duplicate {
				dups++
			}
		}
	}
	return fmt.Sprintf("%d webhooks, %d answered 200, %d given up; %d attempts, %d refused (by status %v), "+
		"%d answered as duplicates; slowest delivery %s", len(ds), delivered, gaveUp, attempts, refused,
		statuses, dups, slowest.Round(time.Millisecond))
}
