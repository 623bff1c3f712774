package ingest

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"go.uber.org/zap"
)

// Headers kept with a reject: what re-verifying the request needs (the signature), and
// what tells an operator who sent it. Names are lower case in domain.Reject.Headers.
var keptHeaders = [...]string{allpass.SignatureHeader, "content-type", "user-agent"}

// sampleHeaderMax cuts each header value kept with a sample: a genuine signature is 64
// to 128 hex digits (a few more with a timestamp), and a sample's size must stay under
// eventlog.MaxSampleBytes whatever the request held.
const sampleHeaderMax = 256

// keepReject appends the refused request to the rejects stream (DESIGN.md section 15,
// "Rejects cannot be flooded away"). A webhook a key verified (x.authApp) is kept whole
// under its app and applicant. Anything else is kept only as a sample: if its source's
// and the node's sample budgets allow (sampler), its body cut to domain.SampleBodyMax
// and its headers to sampleHeaderMax; the store keeps samples in a ring of fixed size.
//
// It runs before the answer is flushed, so a sender that saw the refusal of an
// authenticated webhook can count on it being kept, unless the log is down, which is
// logged: the answer stays the refusal.
func (h *handler) keepReject(r *http.Request, x *exchange, status int, code, msg string) {
	rej := domain.Reject{
		App:        x.pathApp,
		Reason:     code,
		Message:    msg,
		Status:     status,
		RemoteAddr: r.RemoteAddr,
		ReceivedAt: x.receivedAt,
	}
	names, provider := keptHeaders[:], allpass.Provider
	if x.papp != nil {
		// Another provider's: its own signature headers, and the provider, so that
		// Reprocess opens it with that provider's adapter. Kept whole when its signature
		// verified, under the app's name (and the applicant, when known), as Allpass's.
		names = slices.Concat(x.papp.headers, keptHeaders[1:])
		provider = string(x.papp.provider)
		rej.Provider = provider
	}
	if x.authApp != "" {
		rej.Kept, rej.Provider, rej.AppKey, rej.ApplicantID = domain.KeptAuthenticated, provider, x.authApp, x.authApplicant
		rej.Body, rej.Headers = string(x.body), keptHeaderValues(r, names, 0)
	} else {
		if !h.samples.allow(sourceOf(r.RemoteAddr), time.Now()) {
			h.m.samplesDropped.Inc()
			return
		}
		rej.Kept, rej.BodySize = domain.KeptSample, len(x.body)
		rej.Body, rej.Headers = string(x.body[:min(len(x.body), domain.SampleBodyMax)]), keptHeaderValues(r, names, sampleHeaderMax)
	}
	// The reject outlives a client that hung up: it is what reprocessing works from.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.appendTimeout)
	defer cancel()
	err := h.events.Reject(ctx, rej)
	if errors.Is(err, domain.ErrNoRoomForSample) {
		h.m.samplesDropped.Inc()
		return
	}
	if err != nil {
		h.log.Error("reject not kept", zap.String("app", x.label), zap.String("reason", code),
			zap.String("kept", rej.Kept), zap.String("remote", r.RemoteAddr), zap.Error(err))
	}
}

// keptHeaderValues are the headers names of r, each cut to limit bytes (0: whole).
func keptHeaderValues(r *http.Request, names []string, limit int) map[string]string {
	headers := make(map[string]string, len(names))
	for _, k := range names {
		if v := r.Header.Get(k); v != "" {
			if limit > 0 && len(v) > limit {
				v = v[:limit]
			}
			headers[k] = v
		}
	}
	return headers
}

// canonicalApp is an appKey as subjects hold it (lower case); a configured app's key is
// validated, so the fallback is never taken.
func canonicalApp(k domain.AppKey) domain.AppKey {
	if c, err := domain.ParseAppKey(string(k)); err == nil {
		return c
	}
	return k
}

// The sample budgets. Per source: a burst of sampleBurst, then one every sampleEvery,
// enough to show an operator what a misconfigured sender sends (its retries come back
// later), too little for one source to churn the sample ring. Per node: globalBurst,
// then one every globalEvery, so that many sources together cost the log a bounded
// write rate. At most sampleSources sources are tracked; past that, refilled buckets
// are forgotten, and unknown sources share one bucket.
const (
	sampleBurst   = 32
	sampleEvery   = time.Second
	globalBurst   = 100
	globalEvery   = 10 * time.Millisecond
	sampleSources = 4096
	overflowKey   = "overflow"
)

// sampler holds the sample budgets: token buckets, refilled on use. It starts no
// goroutine.
type sampler struct {
	mu     sync.Mutex
	all    bucket
	source map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSampler() *sampler {
	return &sampler{all: bucket{tokens: globalBurst}, source: make(map[string]*bucket)}
}

// take refills b up to now at one token per every, at most burst, and takes a token
// if there is one.
func (b *bucket) take(now time.Time, burst float64, every time.Duration, spend bool) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+float64(d)/float64(every))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	if spend {
		b.tokens--
	}
	return true
}

// allow reports whether a refusal from src may be kept as a sample now, and spends the
// budgets if so.
func (s *sampler) allow(src string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.source[src]
	if !ok {
		if len(s.source) >= sampleSources {
			s.sweep(now)
		}
		if len(s.source) >= sampleSources {
			src = overflowKey
			b = s.source[src]
		}
		if b == nil {
			b = &bucket{}
			s.source[src] = b
		}
	}
	if !b.take(now, sampleBurst, sampleEvery, false) || !s.all.take(now, globalBurst, globalEvery, true) {
		return false
	}
	return b.take(now, sampleBurst, sampleEvery, true)
}

// sweep forgets buckets that have refilled: they hold nothing a fresh one would not.
func (s *sampler) sweep(now time.Time) {
	for k, b := range s.source {
		if b.take(now, sampleBurst, sampleEvery, false) && b.tokens >= sampleBurst {
			delete(s.source, k)
		}
	}
}
