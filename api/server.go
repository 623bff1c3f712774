// Package api is kycstate's read HTTP API (DESIGN.md section 7): applicants' current and
// point-in-time state, history, lists, anomalies and the change feed, read from the
// projection behind bearer tokens of three roles (reader ⊂ auditor ⊂ admin); the two
// actions an auditor or an admin may ask for (reconcile an applicant, erase one); and the
// auditor console (package console) on the same listener.
//
// What every caller can rely on: each response, errors included, carries X-Kycstate-Seq,
// and what it answers reflects every event up to that sequence; a token's role is checked
// before the projection is read; no request is held past its bound (minSeq, wait,
// verify); an error's status comes from its kind, in internal/httperr as for every
// listener, and its body has a stable code and a message safe to show. The response
// types are package client's, so a Go caller decodes exactly what the server encodes, and
// openapi.yaml declares every route, method and status the server answers: the tests
// check real responses against it, so the document cannot drift from the code.
//
// It never writes the projection or the log, and imports no NATS: verify, reconcile and
// erase are functions the query node gives it (Config.Verify, Config.Reconcile,
// Config.Erase).
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/kycstate/kycstate/api/console"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/authlog"
	"github.com/kycstate/kycstate/internal/httperr"
	"github.com/kycstate/kycstate/internal/source"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Token is one configured bearer token. Name appears in logs; Secret never does.
type Token struct {
	Name   string
	Role   domain.Role
	Secret string
}

// Defaults of Config.
const (
	DefaultMaxWait        = 5 * time.Second  // longest ?minSeq wait
	DefaultMaxChangesWait = 60 * time.Second // longest /v1/changes?wait
	maxChangesWaitParam   = 60               // seconds; a larger ?wait is refused
	readyTimeout          = 2 * time.Second  // how long /readyz lets cfg.Ready run
	// DefaultVerifyTimeout bounds GET /v1/verify, which reads the whole log. It reads at
	// least as fast as a rebuild folds (75,000 events/s in docs/BENCHMARKS.md), so this
	// covers some 20 million events; a longer log is verified offline.
	DefaultVerifyTimeout = 5 * time.Minute
	// writeMargin is how long past its own bound a held request may take to write its
	// answer before the connection's write deadline cuts it.
	writeMargin = 15 * time.Second
)

// Projection is what the API reads: *projection.Projection. Its reads fail with
// KindUnavailable when the file cannot be read and KindInternal when it is damaged; the
// API answers those with their kind's generic message.
type Projection interface {
	// Checkpoint returns the last stream sequence applied; it does not block.
	Checkpoint() uint64
	// WaitFor blocks until the checkpoint reaches seq or ctx ends (or the projection
	// closes), and returns the checkpoint then.
	WaitFor(ctx context.Context, seq uint64) uint64
	// State returns an Allpass applicant's current state; false when it has none.
	State(id domain.ApplicantID) (domain.State, bool, error)
	// StateOf returns the current state of the applicant with key id (any provider's,
	// domain.KeyOf); false when it has none.
	StateOf(id domain.ApplicantKey) (domain.State, bool, error)
	// ApplicantsByID returns every applicant of every provider and app whose own id is
	// id, in applicant key order.
	ApplicantsByID(id domain.ApplicantID) ([]domain.State, error)
	// HistoryOf returns up to limit records of the applicant with key id after seq
	// after, in stream order, and the seq to continue from (0: no more); limit <= 0
	// returns all of them.
	HistoryOf(id domain.ApplicantKey, after uint64, limit int) ([]domain.Record, uint64, error)
	// ByExternalUserID returns the applicants of every provider whose id is stored in
	// clear as ext (of app, if not empty), in applicant key order, at most limit.
	ByExternalUserID(ext domain.ExternalUserID, app domain.AppKey, limit int) ([]domain.State, error)
	// ByExternalUserIndex returns the applicants whose sealed id has the blind index
	// index(appKey) (of app, if not empty), in applicant id order, at most limit; the
	// caller checks each by opening its id.
	ByExternalUserIndex(index func(domain.AppKey) domain.ExternalUserIndex, app domain.AppKey, limit int) ([]domain.State, error)
	// ByStatus returns up to limit applicants in status s after the cursor (an
	// applicant id, "" from the start), and the next cursor ("" at the end).
	ByStatus(s domain.Status, cursor domain.ApplicantKey, limit int) ([]domain.State, domain.ApplicantKey, error)
	// Anomalies returns up to limit irregular events after seq after, and the seq to
	// continue from (0: no more).
	Anomalies(after uint64, limit int) ([]domain.Record, uint64, error)
	// Changes returns up to limit status changes after seq after, in stream order.
	Changes(after uint64, limit int) ([]domain.Change, error)
}

// Config holds the server's dependencies.
type Config struct {
	Projection Projection  // required: *projection.Projection
	Tokens     []Token     // at least one
	Logger     *zap.Logger // nil: no logs
	// Gatherer is what /metrics exposes. Nil: Metrics if it is also a Gatherer (a
	// *prometheus.Registry is), else nothing.
	Gatherer prometheus.Gatherer
	// Metrics receives the API's own metrics. Nil: they are kept in a private registry.
	Metrics prometheus.Registerer
	// Ready answers /readyz: nil error when the log is reachable and the projector has
	// caught up within its bound. Nil: ready whenever the server answers.
	Ready func(ctx context.Context) error
	// MaxWait bounds ?minSeq waits (default 5 s), and how long reconcile and erase wait
	// for the projection to reach the log's last sequence.
	MaxWait time.Duration
	// LastSeq returns the event log's last sequence (eventlog.EventLog.LastSeq).
	// Reconcile and erase read it when a request arrives and wait (up to MaxWait) for the
	// projection to apply it before they look the applicant up (DESIGN.md section 7).
	// Nil: they act on the projection as it is.
	LastSeq func(ctx context.Context) (uint64, error)
	// MaxChangesWait bounds /v1/changes?wait (default and at most 60 s).
	MaxChangesWait time.Duration
	// Verify answers GET /v1/verify (auditor): it folds the log afresh and compares it
	// with Projection, as projection.Verify does. Nil: the route answers 404, after the same
	// authentication as on a node that has it, saying this node does not verify.
	Verify func(ctx context.Context) (domain.VerifyResult, error)
	// Lag reports how many sequences the projection is behind the log (the projector's
	// Lag), for the console's ops page. Nil: shown as unknown.
	Lag func() uint64
	// ConsoleSessionKey signs the console's session cookies (at least 32 bytes), bound
	// to Tokens; the service gives every query node the same one (api.console.session_key,
	// or derived from keys.master). Nil: a random key per process, so sessions end with it.
	ConsoleSessionKey []byte
	// TrustedProxies are the proxies (api.trusted_proxies) whose X-Forwarded-For names a
	// request's source, for the console's sign-in slower and the logs of refused
	// authentications. Nil: the peer's address is the source.
	TrustedProxies []netip.Prefix
	// ConsoleSignOuts shares console sign-outs between query nodes (KYC_SIGNOUTS). Nil:
	// each node refuses only the sessions signed out on it.
	ConsoleSignOuts console.SignOuts
	// Keys opens sealed externalUserIds at the edge and hashes lookups (the event log's
	// key ring). Nil: only ids stored in clear (stored version 1) are shown and found.
	Keys Keys
	// Erase answers POST /v1/applicants/{id}/erase (admin). Nil: the route answers 404,
	// after authentication, saying this node does not erase.
	Erase EraseFunc
	// Reconcile answers POST /v1/applicants/{id}/reconcile (auditor): one check against
	// Allpass's Open API (reconcile.Reconciler.Check). Nil: the route answers 404
	// (CodeReconcileDisabled) after the same authentication.
	Reconcile func(ctx context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error)
	// ReconcileKey is Reconcile of the applicant with key k (reconcile.Reconciler.CheckKey):
	// what the route calls when ?provider= names the applicant (DESIGN.md section 13). Nil:
	// such a request answers 404 (CodeReconcileDisabled).
	ReconcileKey func(ctx context.Context, k domain.ApplicantKey, dryRun bool) (reconcile.Report, error)
	// LastSweep says when the last reconciliation sweep ended (zero: none yet), for the
	// console's ops page. Nil: this node does not sweep.
	LastSweep func() time.Time
	// VerifyTimeout bounds one GET /v1/verify (default DefaultVerifyTimeout). The
	// request's write deadline is moved past it, so the server's WriteTimeout does not
	// cut the answer.
	VerifyTimeout time.Duration
	// waiting, when set, is called each time a request is about to hold for the
	// projection to reach seq (?minSeq, /v1/changes?wait, an erase's wait): it has read
	// the checkpoint short of seq. A test hook, nil in production: tests order their
	// commits after it instead of sleeping.
	waiting func(seq uint64)
}

// server is the handler's shared state; handlers reach it through the closure.
type server struct {
	proj           Projection
	tokens         []tokenHash
	log            *zap.Logger
	errs           httperr.Writer // answers every handler's error
	gatherer       prometheus.Gatherer
	metrics        *metrics
	ready          func(ctx context.Context) error
	maxWait        time.Duration
	lastSeq        func(ctx context.Context) (uint64, error)
	maxChangesWait time.Duration
	verify         func(ctx context.Context) (domain.VerifyResult, error)
	reconcile      func(ctx context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error)
	reconcileKey   func(ctx context.Context, k domain.ApplicantKey, dryRun bool) (reconcile.Report, error)
	verifyTimeout  time.Duration
	verifying      chan struct{} // holds a token while a verify runs: one at a time
	lag            func() uint64
	keys           Keys
	erase          EraseFunc
	lastSweep      func() time.Time
	console        http.Handler
	proxies        source.Proxies
	refusals       *authlog.Refusals
	refused        *authlog.Listener // the API's own refusals; the console has its listener
	mux            *http.ServeMux
	waiting        func(seq uint64) // Config.waiting
}

// tokenHash holds a token's SHA-256 rather than the secret, so that comparing presented
// tokens takes the same time whatever their length (subtle.ConstantTimeCompare returns
// early on a length difference).
type tokenHash struct {
	name string
	role domain.Role
	sum  [sha256.Size]byte
}

// NewServer builds the read API's handler. It refuses a config without a projection or
// tokens, with an unknown role, an empty or repeated secret, or metrics that cannot be
// registered.
func NewServer(cfg Config) (http.Handler, error) {
	const op = "api.NewServer"
	if cfg.Projection == nil {
		return nil, domain.E(op, domain.KindInvalid, "no projection")
	}
	if len(cfg.Tokens) == 0 {
		return nil, domain.E(op, domain.KindInvalid, "no tokens: every route but health and metrics needs one")
	}
	s := &server{
		proj:           cfg.Projection,
		log:            cfg.Logger,
		ready:          cfg.Ready,
		maxWait:        cfg.MaxWait,
		lastSeq:        cfg.LastSeq,
		maxChangesWait: cfg.MaxChangesWait,
		gatherer:       cfg.Gatherer,
		verify:         cfg.Verify,
		reconcile:      cfg.Reconcile,
		reconcileKey:   cfg.ReconcileKey,
		lastSweep:      cfg.LastSweep,
		verifyTimeout:  cfg.VerifyTimeout,
		verifying:      make(chan struct{}, 1),
		lag:            cfg.Lag,
		keys:           cfg.Keys,
		erase:          cfg.Erase,
		proxies:        source.NewProxies(cfg.TrustedProxies),
		mux:            http.NewServeMux(),
		waiting:        cfg.waiting,
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("api")
	s.errs = httperr.Writer{Log: s.log}
	if s.maxWait <= 0 {
		s.maxWait = DefaultMaxWait
	}
	if s.maxChangesWait <= 0 || s.maxChangesWait > DefaultMaxChangesWait {
		s.maxChangesWait = DefaultMaxChangesWait
	}
	if s.verifyTimeout <= 0 {
		s.verifyTimeout = DefaultVerifyTimeout
	}
	seen := make(map[[sha256.Size]byte]bool, len(cfg.Tokens))
	for i, t := range cfg.Tokens {
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		switch {
		case !t.Role.Valid():
			return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("token %s: role %q is not reader, auditor or admin", name, t.Role))
		case t.Secret == "":
			return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("token %s: empty secret", name))
		}
		h := tokenHash{name: name, role: t.Role, sum: sha256.Sum256([]byte(t.Secret))}
		if seen[h.sum] {
			return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("token %s: same secret as another token", name))
		}
		seen[h.sum] = true
		s.tokens = append(s.tokens, h)
	}

	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.gatherer == nil {
		if g, ok := cfg.Metrics.(prometheus.Gatherer); ok {
			s.gatherer = g
		} else {
			s.gatherer = prometheus.NewRegistry()
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, domain.E(op, domain.KindConflict, err)
	}
	s.metrics = m
	if s.refusals, err = authlog.New(authlog.Config{Logger: s.log, Metrics: reg}); err != nil {
		return nil, domain.E(op, domain.KindConflict, err)
	}
	s.refused = s.refusals.Listener(authlog.ListenerAPI)
	if s.console, err = newConsole(s, cfg.ConsoleSessionKey, cfg.ConsoleSignOuts); err != nil {
		return nil, err
	}

	s.routes()
	return s.withSeq(s.withRecover(s.mux)), nil
}

// NewHTTPServer wraps h in an http.Server with timeouts fit for the API: headers must
// arrive within 5 s, and WriteTimeout exceeds the longest hold (/v1/changes?wait=60) so a
// long poll is answered, not cut. GET /v1/verify, which may run for minutes, moves its
// own request's write deadline past its bound instead.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      DefaultMaxChangesWait + writeMargin,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// errNoToken and errBadToken are the two ways to fail authentication; both are 401.
var (
	errNoToken  = errors.New("bearer token required")
	errBadToken = errors.New("invalid bearer token")
)
