// Package authlog records refused authentications (a bearer token the read API does not
// know, a failed console sign-in): a log line with the request's source and a
// fingerprint of the token, never the token, and a counter by listener.
//
// The lines are rate-limited per listener (at most Lines per Every, then one summary
// line with the count left out), so a spray of guesses cannot flood the log; the counter
// counts every refusal. The fingerprint is the first 8 hex characters of HMAC-SHA256 of
// the token under a key drawn at random when the process starts: the same wrong token
// has the same fingerprint in one process's lines, so an operator sees one client
// retrying one stale token apart from a spray of guesses, yet nobody can compute a
// token's fingerprint ahead of time or test a guess against a line, and four bytes of it
// say nothing useful about a token of 128 bits or more.
package authlog

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"sync"
	"time"

	"github.com/kycstate/kycstate/internal/source"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultLines = 20
	DefaultEvery = time.Minute
)

// The listeners whose refusals are counted: the read API's bearer tokens, and the
// console's sign-ins (served on the same address, limited apart).
const (
	ListenerAPI     = "api"
	ListenerConsole = "console"
)

// Config holds a Refusals' dependencies.
type Config struct {
	Logger *zap.Logger // nil: no lines
	// Metrics receives kycstate_auth_refused_total. Nil: a private registry.
	Metrics prometheus.Registerer
	Lines   int              // lines per Every per listener before the summary (default DefaultLines)
	Every   time.Duration    // the window of Lines (default DefaultEvery)
	Now     func() time.Time // default time.Now
}

// Refusals is what every listener of one process records its refusals through; its
// fingerprint key is one per process.
type Refusals struct {
	log     *zap.Logger
	key     []byte
	refused *prometheus.CounterVec
	lines   int
	every   time.Duration
	now     func() time.Time
}

// New builds the process's Refusals and registers its counter.
func New(cfg Config) (*Refusals, error) {
	r := &Refusals{log: cfg.Logger, key: make([]byte, 32), lines: cfg.Lines, every: cfg.Every, now: cfg.Now}
	rand.Read(r.key) // never fails (crypto/rand documents it)
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.lines <= 0 {
		r.lines = DefaultLines
	}
	if r.every <= 0 {
		r.every = DefaultEvery
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kycstate_auth_refused_total",
		Help: "Refused authentications by listener: api (a bearer token missing or unknown), console (a failed sign-in).",
	}, []string{"listener"})
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := reg.Register(r.refused); err != nil {
		return nil, err
	}
	return r, nil
}

// Fingerprint is the token's fingerprint in this process's lines: 8 hex characters.
func (r *Refusals) Fingerprint(token string) string {
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// Listener returns the recorder of one listener's refusals, with a line budget of its
// own; its counter series exists (at 0) from now on.
func (r *Refusals) Listener(name string) *Listener {
	return &Listener{r: r, name: name, counter: r.refused.WithLabelValues(name), log: r.log.With(zap.String("listener", name))}
}

// Listener records the refusals of one listener.
type Listener struct {
	r       *Refusals
	name    string
	counter prometheus.Counter
	log     *zap.Logger

	mu      sync.Mutex
	window  time.Time // start of the current window
	logged  int       // lines logged in it
	dropped int       // refusals not logged in it
}

// Refused records one refusal: counted always, logged within the line budget. token is
// what was presented ("" for none: no fingerprint); reason says why in a few words
// ("no token", "unknown token"); fields add context (the method and path). The token
// itself is never logged.
func (l *Listener) Refused(src netip.Addr, token, reason string, fields ...zap.Field) {
	l.counter.Inc()
	now := l.r.now()
	l.mu.Lock()
	var summary int
	if now.Sub(l.window) >= l.r.every || now.Before(l.window) {
		summary, l.dropped = l.dropped, 0
		l.window, l.logged = now, 0
	}
	log := l.logged < l.r.lines
	if log {
		l.logged++
	} else {
		l.dropped++
	}
	l.mu.Unlock()
	if summary > 0 {
		// Written before this window's first line, so it follows the lines it completes.
		l.log.Warn("authentication refusals not logged", zap.Int("count", summary),
			zap.Int("lines", l.r.lines), zap.Duration("every", l.r.every))
	}
	if !log {
		return
	}
	fs := append(make([]zap.Field, 0, len(fields)+3), zap.String("source", source.String(src)), zap.String("reason", reason))
	if token != "" {
		fs = append(fs, zap.String("fingerprint", l.r.Fingerprint(token)))
	}
	l.log.Warn("authentication refused", append(fs, fields...)...)
}
