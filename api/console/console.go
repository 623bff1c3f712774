// Package console is kycstate's auditor console (DESIGN.md section 12): server-rendered
// pages over the read API's data, for compliance officers who read history in a browser
// rather than with curl.
//
// The pages are html/template, so everything the log holds (an externalUserId, a warning,
// a step name) reaches the browser as text; the stylesheet and the one script (the live
// change view) are embedded files served from /console/static/, and the
// Content-Security-Policy allows nothing else: no inline script or style, no other
// origin. Every page but the change view works without JavaScript.
//
// The console reads through Backend, which package api implements over its own handlers'
// functions, so a page shows exactly what the API answers, limited by the same roles; it
// imports no store and not package api. A session is a signed, expiring cookie naming
// the token's name and role, never the token; it holds no server state but bounded lists
// of signed-out sessions and of each source's recent sign-in failures. Every form that
// changes something is a POST carrying a CSRF token; reading is GET. Sign-in never
// refuses a valid token: failures slow their source instead.
package console

import (
	"context"
	"crypto/rand"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/authlog"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/kycstate/kycstate/internal/source"
	"go.uber.org/zap"
)

// Principal is who signed in: the configured token's name (shown and logged) and role.
type Principal struct {
	Name string
	Role domain.Role
}

// AsOf is a point in time of the service's knowledge: every event up to stream sequence
// Seq, or every event received by Time. Exactly one is set.
type AsOf struct {
	Seq  uint64
	Time time.Time
}

// Health is what the ops page shows about the projection.
type Health struct {
	Checkpoint uint64 // the last stream sequence applied
	// Lag is how many sequences the projection is behind the log; meaningful only when
	// LagKnown (a node without a projector to ask cannot say).
	Lag      uint64
	LagKnown bool
	// LastSweep is when the last reconciliation sweep (DESIGN.md section 10) finished;
	// meaningful only when SweepConfigured.
	LastSweep       time.Time
	SweepConfigured bool
}

// Backend is what the console reads. Every error is answered as the API answers it
// (internal/httperr.Answer): the status of its kind, and its caller-safe message
// (domain.Public) or the kind's generic one; an error's own text is only logged.
type Backend interface {
	// Authenticate returns who holds token. Errors: KindUnauthorized when no configured
	// token matches. It takes the same time whichever token, if any, matches.
	Authenticate(token string) (Principal, error)
	// State returns an applicant's current state: provider p's applicant id, or with p
	// "" as GET /v1/applicants/{id} without ?provider= (an Allpass applicant with the
	// id, else the one other provider's; DESIGN.md section 13). Errors: KindNotFound;
	// KindConflict (ambiguous_applicant) when several providers' applicants hold id.
	State(ctx context.Context, p domain.Provider, id domain.ApplicantID) (domain.State, error)
	// StateAt returns the state as the service knew it at as. Errors: KindNotFound when
	// the applicant had no events by then; KindUnprocessable for a history too long to
	// fold on request.
	StateAt(ctx context.Context, p domain.Provider, id domain.ApplicantID, as AsOf) (domain.State, error)
	// History returns a page of id's history as GET /v1/applicants/{id}/history answers
	// it: up to limit events with a sequence above after, in stream order, and Next set
	// when more follow. Errors: KindNotFound for an unknown applicant.
	History(ctx context.Context, p domain.Provider, id domain.ApplicantID, after uint64, limit int) (client.History, error)
	// Lookup returns the applicants (of any app and provider) with this externalUserId,
	// at most limit.
	// Errors: KindInvalid for an empty or oversized id.
	Lookup(ctx context.Context, ext domain.ExternalUserID, limit int) ([]domain.State, error)
	// Anomalies returns a page of irregular events as GET /v1/anomalies answers it: up to
	// limit with a sequence above after, in stream order, and Next set when more follow.
	Anomalies(ctx context.Context, after uint64, limit int) (client.Anomalies, error)
	// Changes returns up to limit status changes with a sequence above after, in stream
	// order.
	Changes(ctx context.Context, after uint64, limit int) ([]domain.Change, error)
	// Health returns the projection's checkpoint, lag and reconciliation state. It does
	// not block.
	Health(ctx context.Context) Health
	// Verify folds the log afresh and compares it with the projection. Errors:
	// KindNotFound when this node cannot verify; KindConflict while another verify runs;
	// KindUnavailable past its bound.
	Verify(ctx context.Context) (domain.VerifyResult, error)
	// Erase erases an applicant's personal data (DESIGN.md section 11) on behalf of by,
	// for reason, and returns once the projection shows it erased (or its wait bound has
	// passed). Errors: KindNotFound for an unknown applicant or a node that does not
	// erase; KindInvalid for an empty or oversized reason; KindUnavailable when the
	// erasure could not be appended (nothing was erased; retry).
	// The applicant is named as State names it: p (or "" for Allpass first) and id.
	Erase(ctx context.Context, p domain.Provider, id domain.ApplicantID, by, reason string) (seq uint64, err error)
}

// Defaults of Config.
const (
	DefaultSessionTTL = 8 * time.Hour // a working day: a forgotten session ends by itself
	// Sign-in attempts per source (slower): 5 failures are not slowed (a person mistyping
	// a token); from there each attempt, right or wrong, is held 0.5 s, then 1, 2, and
	// at most 4 s; one failure is forgotten every 12 s. A guesser then gets at most one
	// answer per 4 s per connection, and an officer behind the same address waits at
	// most 4 s to sign in. Guessing a 128-bit token is hopeless anyway; this keeps a weak
	// one out of reach and the log of failures small.
	defaultFreeFailures = 5
	defaultForget       = 12 * time.Second
	defaultFirstHold    = 500 * time.Millisecond
	defaultMaxHold      = 4 * time.Second
	// defaultLimiterSize bounds the sources the slower remembers; past it the ones
	// unknown share a single level, so a spray of addresses costs bounded memory.
	defaultLimiterSize = 10_000
)

// Config holds the console's dependencies.
type Config struct {
	Backend Backend     // required
	Logger  *zap.Logger // nil: no logs
	// SessionKey signs sessions and CSRF tokens; at least 32 bytes. Nil: a random key per
	// process, so sessions end when the process does and cannot be carried to another
	// query node. A configured key makes sessions valid on every node sharing it.
	SessionKey []byte
	// SessionTTL is how long a session lasts (default DefaultSessionTTL).
	SessionTTL time.Duration
	// SecureCookies marks cookies Secure on every request. Without it, cookies are Secure
	// on requests that arrive over TLS or through a proxy that says it terminated TLS
	// (X-Forwarded-Proto or Forwarded: https).
	SecureCookies bool
	// VerifyBound is how long a verify run may take to answer; the request's write
	// deadline is moved past it. Zero: the server's deadline stands.
	VerifyBound time.Duration
	// Now is the clock of sessions and of the sign-in slower (default time.Now).
	Now func() time.Time
	// Sleep holds a slowed sign-in attempt for d, or until ctx ends (default clock.Sleep).
	Sleep func(ctx context.Context, d time.Duration) error
	// Proxies are the trusted proxies whose X-Forwarded-For names a sign-in's source
	// (api.trusted_proxies). Zero: the peer's address is the source.
	Proxies source.Proxies
	// Refusals records failed sign-ins (rate-limited lines with the source and a token
	// fingerprint, and a counter). Nil: the console's own, logging to Logger.
	Refusals *authlog.Listener
	// SignOuts, when set, shares sign-outs between query nodes (eventlog.SignOuts): a
	// session signed out on one node is refused by every node that shares them. Nil:
	// each node refuses only the sessions signed out on it.
	SignOuts SignOuts
}

// SignOuts is where sign-outs are shared between nodes. The console remembers its own
// sign-outs in any case; when the shared store does not answer, a session is judged by
// those alone (and the failure logged), so an outage of the store does not sign every
// officer out.
type SignOuts interface {
	// SignOut records session id as signed out until expires.
	SignOut(ctx context.Context, id string, expires time.Time) error
	// SignedOut reports whether session id was signed out and would not have expired
	// by now.
	SignedOut(ctx context.Context, id string, now time.Time) (bool, error)
}

// Console serves the pages under /console/.
type Console struct {
	b           Backend
	log         *zap.Logger
	keys        keys
	ttl         time.Duration
	secure      bool
	verifyBound time.Duration
	now         func() time.Time
	pages       pages
	slower      *slower
	sleep       func(ctx context.Context, d time.Duration) error
	proxies     source.Proxies
	refusals    *authlog.Listener
	revoked     *revocations
	signOuts    SignOuts
	warned      atomic.Int64 // Unix seconds of the last "sign-outs not shared" warning
	mux         *http.ServeMux
}

// New builds the console. It refuses a config without a backend, or
// with a session key shorter than 32 bytes.
func New(cfg Config) (*Console, error) {
	const op = "console.New"
	if cfg.Backend == nil {
		return nil, domain.E(op, domain.KindInvalid, "no backend")
	}
	key := cfg.SessionKey
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key) // never fails (crypto/rand documents it)
	} else if len(key) < 32 {
		return nil, domain.E(op, domain.KindInvalid, "session key shorter than 32 bytes")
	}
	pg, err := parsePages()
	if err != nil {
		return nil, domain.E(op, domain.KindInternal, err)
	}
	c := &Console{
		b:           cfg.Backend,
		log:         cfg.Logger,
		keys:        deriveKeys(key),
		ttl:         cfg.SessionTTL,
		secure:      cfg.SecureCookies,
		verifyBound: cfg.VerifyBound,
		now:         cfg.Now,
		pages:       pg,
		signOuts:    cfg.SignOuts,
		sleep:       cfg.Sleep,
		proxies:     cfg.Proxies,
		refusals:    cfg.Refusals,
		mux:         http.NewServeMux(),
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.Named("console")
	if c.ttl <= 0 {
		c.ttl = DefaultSessionTTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = clock.Sleep
	}
	if c.refusals == nil {
		r, err := authlog.New(authlog.Config{Logger: c.log})
		if err != nil {
			return nil, domain.E(op, domain.KindInternal, err)
		}
		c.refusals = r.Listener(authlog.ListenerConsole)
	}
	c.slower = newSlower(defaultFreeFailures, defaultForget, defaultFirstHold, defaultMaxHold, defaultLimiterSize)
	c.revoked = newRevocations(defaultLimiterSize)
	c.routes()
	return c, nil
}

// ServeHTTP serves a request under /console/, with the console's headers on every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setHeaders(w)
	c.mux.ServeHTTP(w, r)
}
