package console

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// limiter bounds failed sign-ins per remote address with a token bucket per address:
// burst failures at once, then one per every. It starts no goroutine: buckets that have
// refilled are forgotten when the map is full, and when it is still full the addresses
// it does not know share one bucket, so memory stays bounded whatever the spray.
type limiter struct {
	mu    sync.Mutex
	burst float64
	every time.Duration
	max   int
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// overflow is the shared bucket of addresses the full limiter does not track.
const overflow = "overflow"

func newLimiter(burst int, every time.Duration, max int) *limiter {
	return &limiter{burst: float64(burst), every: every, max: max, m: make(map[string]*bucket)}
}

// refill brings b up to now.
func (l *limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
	}
	b.last = now
}

// allow reports whether addr may try to sign in now, and if not, how long until it may.
func (l *limiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[addr]
	if !ok {
		if b, ok = l.m[overflow]; !ok || len(l.m) < l.max {
			return true, 0 // unknown and not in overflow: a full budget
		}
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// fail spends one try of addr's budget.
func (l *limiter) fail(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[addr]
	if !ok {
		if len(l.m) >= l.max {
			l.sweep(now)
		}
		if len(l.m) >= l.max {
			addr = overflow
			b = l.m[overflow]
		}
		if b == nil {
			b = &bucket{tokens: l.burst, last: now}
			l.m[addr] = b
		}
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// sweep forgets buckets that have refilled: they hold nothing a fresh one would not.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.m {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.m, k)
		}
	}
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// remoteKey is the limiter's key for a request: the peer's IP address, IPv6 addresses by
// their /64 (one host commonly holds a whole /64). Forwarded-for headers are not trusted:
// the console is served on the API's own listener, and any client can write them.
func remoteKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
