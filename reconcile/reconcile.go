// Package reconcile compares the projection with Allpass's Open API and appends what the
// webhooks did not bring (DESIGN.md section 10).
//
// Allpass gives a webhook up after ten attempts, and real payloads carry no event time
// of their own, so a lost or late delivery can leave a stale status that nothing else
// would ever correct. The Open API is Allpass's current truth: a check reads it for one
// applicant and, when its status differs from the projection's, appends one event of
// origin openapi on the applicant's subject. The fold then decides (rule 7: reconciled,
// or stale when a newer webhook got there first), so the log stays the only source of
// truth and rebuilds re-derive every correction.
//
// Appends are idempotent: the Nats-Msg-Id is a hash of app, applicant, status and the
// Open API's updatedAt, so two checks of the same answer (two sweeps, two nodes, a
// sweep and an auditor's POST) append one event within the stream's duplicate window.
//
// The sweep (Sweep, Run) checks the applicants most likely to be stale, and every
// applicant once per FullEvery, at most Rate calls per second per app. On a cluster a
// lease (eventlog.Leases) lets one query node sweep at a time.
//
// Other providers (DESIGN.md section 13) are reconciled the same way through their status
// APIs, configured per app (ProviderApp, WithProviders): Sumsub's GET
// /resources/applicants/{id}/one signed with an App-Token (X-App-Token, X-App-Access-Ts,
// X-App-Access-Sig), Persona's GET /api/v1/inquiries/{id} with a Bearer API key, and
// Veriff's GET /v1/sessions/{id}/decision with X-AUTH-CLIENT and X-HMAC-SIGNATURE over
// the session id; Veriff signs its answer as its webhooks (X-HMAC-SIGNATURE over the
// body), and an answer whose signature does not verify is refused. The answers are read
// by the adapters' parsers (ingest/sumsub, persona, veriff), so the appended event (origin
// openapi, the provider's own status, its Nats-Msg-Id ProviderMsgID) is what a webhook of
// that status would have said. Such checks are made on request (Check, CheckKey): the
// background sweep is Allpass's alone so far. Onfido is not reconciled: section 13 names
// no status API for it, its app config holds only the webhook token (no API token), and
// ingest/onfido has no parser of its workflow run API (GET /workflow_runs/{id}).
//
// It never writes the projection and appends nothing but those events: an Open API
// answer that fails, does not parse or does not verify (the same checks a webhook gets,
// through package allpass) appends nothing and is reported, and a refused private key
// (401, 403) stops that app's sweep rather than retrying it.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of Config and OpenAPI (DESIGN.md section 10).
const (
	// DefaultEvery is the background sweep's period: a lost webhook is found within a
	// quarter of an hour of becoming stale.
	DefaultEvery = 15 * time.Minute
	// DefaultStaleAfter: Allpass's last retry comes hours after the first attempt, but an
	// applicant silent for an hour outside a final status is worth a call.
	DefaultStaleAfter = time.Hour
	// DefaultFullEvery: re-reviews flip APPROVED and REJECTED, which the stale sweep does
	// not look at, so every applicant is checked once a day.
	DefaultFullEvery = 24 * time.Hour
	// DefaultRate keeps well inside what a partner API tolerates: 18,000 calls an hour.
	DefaultRate = 5.0
	// DefaultTimeout bounds one Open API call, body included.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxBody bounds an Open API answer; an applicant record is a few KiB.
	DefaultMaxBody = 1 << 20
)

// Config is the reconcile: section of the configuration.
type Config struct {
	Every      time.Duration // background sweep period; 0 switches the sweep off
	StaleAfter time.Duration
	FullEvery  time.Duration
	Rate       float64 // Open API calls per second, at most, per app
	MaxBody    int64
	KeepRaw    bool // keep the answer's body and signature in the appended event
	// AppendTimeout bounds the wait for the log's acknowledgement of a reconciled event:
	// ingest.append_timeout, the one bound on every append. 0 leaves it to the log's own
	// request timeout.
	AppendTimeout time.Duration
}

// OpenAPI is one app's apps[].open_api.
type OpenAPI struct {
	BaseURL    string
	PrivateKey string // sent as x-private-app-key; never logged
	Timeout    time.Duration
}

// App is an Allpass app with its Open API settings.
type App struct {
	App     *allpass.App
	OpenAPI OpenAPI
}

// Projection is what a check reads: *projection.Projection.
type Projection interface {
	State(id domain.ApplicantID) (domain.State, bool, error)
	StateOf(key domain.ApplicantKey) (domain.State, bool, error)
	ByStatus(s domain.Status, cursor domain.ApplicantKey, limit int) ([]domain.State, domain.ApplicantKey, error)
	ApplicantsByID(id domain.ApplicantID) ([]domain.State, error)
	Digests(fn func(domain.ApplicantKey, domain.Digest) error) error
}

// EventLog is where a check appends: *eventlog.EventLog.
type EventLog interface {
	Append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error)
}

// Action is what a check did.
type Action string

const (
	ActionAppended Action = "appended" // statuses differed: one event appended (or, dry run, would be)
	ActionInSync   Action = "in_sync"  // statuses equal: nothing appended
	ActionNotFound Action = "not_found"
	ActionError    Action = "error" // the Open API or the log failed; nothing appended
)

// Report is the answer of one check, as POST /v1/applicants/{id}/reconcile and
// kycstate reconcile give it (the API's wire form is api/client.Reconcile).
type Report struct {
	ApplicantID domain.ApplicantID
	AppKey      domain.AppKey
	// Provider is the applicant's provider; for another than Allpass, "Open API" below
	// means its status API.
	Provider domain.Provider
	Action   Action
	// The projection's status as the check read it (StatusNone: none yet).
	ProjectionStatus   domain.Status
	ProjectionStatusAt time.Time
	// The Open API's status and updatedAt (StatusNone: it gave none).
	OpenAPIStatus    domain.Status
	OpenAPIUpdatedAt time.Time
	// Seq is the appended event's sequence (the original's, when the log already had
	// it); 0 when nothing was appended.
	Seq uint64
	// Error says what failed, without a key or the answer's content; "" on success.
	Error string
	// DryRun marks a check that appended nothing on purpose; Action says what it found.
	DryRun bool
	// Reason is the error's label in the metrics.
	Reason string
}

func (r *Report) fail(reason, msg string) {
	r.Action, r.Reason, r.Error = ActionError, reason, msg
}

// Reconciler checks applicants of the configured apps. Its methods are safe for
// concurrent use.
type Reconciler struct {
	cfg    Config
	proj   Projection
	events EventLog
	log    *zap.Logger
	m      *metrics
	apps   map[domain.AppKey]*appState
	order  []*appState // in configuration order
	// papps are the apps of other providers (WithProviders), by providerKey.
	papps map[string]*appState
	now   func() time.Time
	// lastEnd is when the last complete sweep ended (Unix nanoseconds; 0: none known),
	// for the console's ops page; the metric says the same to Prometheus.
	lastEnd atomic.Int64
}

// LastSweep returns when the last complete sweep ended, as this node knows it (its own
// sweeps, or the progress saved with the lease it took over); zero if none.
func (r *Reconciler) LastSweep() time.Time {
	if n := r.lastEnd.Load(); n != 0 {
		return time.Unix(0, n).UTC()
	}
	return time.Time{}
}

func (r *Reconciler) setLastSweep(t time.Time) {
	r.lastEnd.Store(t.UnixNano())
	r.m.lastSweep.Set(float64(t.Unix()))
}

// appState is one app's client, rate limiter and back-off.
type appState struct {
	App
	name   string
	client *client
	// provider and parse are set for another provider's app: its answers' parser.
	provider domain.Provider
	parse    func(domain.ApplicantID, fetched) (providerAnswer, error)

	mu       sync.Mutex
	next     time.Time // earliest time of the next call (rate)
	paused   time.Time // no sweep call before this (429, 5xx, time-outs)
	failures int       // consecutive transient failures
	stopped  string    // non-empty: why the app's sweep stopped (401/403)
}

// New returns a Reconciler of the apps that have an Open API configured (others are
// skipped; a check of their applicants reports so). reg may be nil.
// Errors: KindInvalid for a bad Open API setting, KindConflict when the metrics cannot
// be registered.
func New(cfg Config, proj Projection, events EventLog, apps []App, log *zap.Logger, reg prometheus.Registerer) (*Reconciler, error) {
	const op = "reconcile.New"
	if proj == nil || events == nil {
		return nil, domain.E(op, domain.KindInvalid, "a reconciler needs a projection and the event log")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, domain.E(op, domain.KindConflict, err)
	}
	r := &Reconciler{cfg: cfg, proj: proj, events: events, log: log.Named("reconcile"), m: m,
		apps: map[domain.AppKey]*appState{}, papps: map[string]*appState{}, now: time.Now}
	for _, a := range apps {
		if a.App == nil || a.OpenAPI.BaseURL == "" {
			continue
		}
		c, err := newClient(a.App, a.OpenAPI, cfg.MaxBody)
		if err != nil {
			r.Close()
			return nil, err
		}
		st := &appState{App: a, name: a.App.Name, client: c}
		if st.name == "" {
			st.name = string(a.App.AppKey)
		}
		r.apps[a.App.AppKey] = st
		r.order = append(r.order, st)
		m.stopped.WithLabelValues(st.name).Set(0)
	}
	return r, nil
}

func (c Config) withDefaults() Config {
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.FullEvery <= 0 {
		c.FullEvery = DefaultFullEvery
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Every < 0 {
		c.Every = 0
	}
	return c
}

// Close releases the clients' idle connections. Safe to call twice.
func (r *Reconciler) Close() {
	for _, a := range r.order {
		a.client.close()
	}
	for _, a := range r.papps {
		a.client.close()
	}
}

// Every is the configured background sweep period (0: off).
func (r *Reconciler) Every() time.Duration { return r.cfg.Every }

// CheckOptions change one check.
type CheckOptions struct {
	DryRun bool // compare and report, append nothing
}

// Check compares one applicant's projected status with the Open API's and appends the
// Open API's status when they differ. It waits for the app's rate limit, also when the
// app's sweep is backed off or stopped (an auditor asked for this one). Every outcome of
// the call, failures included, is in the report and the metrics.
// Errors: KindNotFound for an applicant the projection never saw; the projection's error
// when it cannot be read; ctx's error when ctx ends before the call.
func (r *Reconciler) Check(ctx context.Context, id domain.ApplicantID, opt CheckOptions) (Report, error) {
	const op = "reconcile.Reconciler.Check"
	st, found, err := r.proj.State(id)
	if err != nil {
		return Report{}, domain.E(op, domain.KindOther, err)
	}
	if !found {
		// Not Allpass's: the one applicant of another provider with this id.
		all, err := r.proj.ApplicantsByID(id)
		if err != nil {
			return Report{}, domain.E(op, domain.KindOther, err)
		}
		switch len(all) {
		case 0:
			return Report{}, domain.E(op, domain.KindNotFound, "kycstate has no events of this applicant")
		case 1:
			return r.CheckKey(ctx, all[0].Key(), opt)
		}
		return Report{}, domain.E(op, domain.KindConflict, "applicants of several providers or apps have this id; name the provider")
	}
	return r.checkState(ctx, st, opt)
}

// CheckKey is Check of the applicant with key k (domain.KeyOf): Allpass's or another
// provider's. Errors as Check's.
func (r *Reconciler) CheckKey(ctx context.Context, k domain.ApplicantKey, opt CheckOptions) (Report, error) {
	const op = "reconcile.Reconciler.CheckKey"
	st, found, err := r.proj.StateOf(k)
	if err != nil {
		return Report{}, domain.E(op, domain.KindOther, err)
	}
	if !found {
		return Report{}, domain.E(op, domain.KindNotFound, "kycstate has no events of this applicant")
	}
	return r.checkState(ctx, st, opt)
}

func (r *Reconciler) checkState(ctx context.Context, st domain.State, opt CheckOptions) (Report, error) {
	if p := domain.ProviderOf(string(st.Provider)); p != domain.ProviderAllpass {
		a := r.papps[providerKey(p, st.AppKey)]
		if a == nil {
			rep := newReport(st)
			rep.fail(ReasonNoOpenAPI, "the applicant's app has no status API configured (apps[].api)")
			return rep, nil
		}
		if err := a.wait(ctx, r.cfg.Rate, time.Time{}); err != nil {
			return Report{}, err
		}
		return r.checkProvider(ctx, a, st, opt), nil
	}
	a := r.apps[st.AppKey]
	if a == nil {
		rep := newReport(st)
		rep.fail(ReasonNoOpenAPI, "the applicant's app has no open_api configured")
		return rep, nil
	}
	if err := a.wait(ctx, r.cfg.Rate, time.Time{}); err != nil {
		return Report{}, err
	}
	return r.check(ctx, a, st, opt), nil
}

func newReport(st domain.State) Report {
	rep := Report{ApplicantID: st.ApplicantID, AppKey: st.AppKey, Provider: domain.ProviderOf(string(st.Provider)), ProjectionStatus: st.Status}
	if st.Status != domain.StatusNone {
		rep.ProjectionStatusAt = st.StatusAt.UTC()
	}
	return rep
}

// call fetches st's answer from a's API, timed. When there is nothing to act on (not
// found, a failed call, ctx ended) it says so in rep, with the failure's message in
// words, and returns false.
func (r *Reconciler) call(ctx context.Context, a *appState, st domain.State, rep *Report, words func(string) string) (fetched, bool) {
	start := r.now()
	f, err := a.client.fetch(ctx, st.ApplicantID)
	r.m.duration.WithLabelValues(a.name).Observe(time.Since(start).Seconds())
	var ce *callError
	switch {
	case errors.Is(err, errNotFound):
		a.succeeded()
		rep.Action = ActionNotFound
		return f, false
	case errors.As(err, &ce):
		rep.fail(ce.reason, words(ce.msg))
		r.backOff(a, ce)
		return f, false
	case err != nil: // ctx ended
		rep.fail("canceled", "the check was cancelled")
		return f, false
	}
	return f, true
}

// check makes the call for st (the rate limit already waited for) and acts on it.
func (r *Reconciler) check(ctx context.Context, a *appState, st domain.State, opt CheckOptions) Report {
	rep := newReport(st)
	rep.DryRun = opt.DryRun
	defer func() { r.count(a, &rep) }()

	f, ok := r.call(ctx, a, st, &rep, func(msg string) string { return msg })
	if !ok {
		return rep
	}
	resp, err := a.App.App.ParseOpenAPIResponse(f.body, f.signature, st.ApplicantID)
	if err != nil {
		if domain.KindOf(err) == domain.KindNotFound {
			a.succeeded()
			rep.Action = ActionNotFound
			return rep
		}
		// The report says which check failed, in the wire format's caller-safe words; the
		// error itself, with the parser's operation, goes to the log.
		reason := parseReason(err)
		r.log.Warn("Open API answer refused", zap.String("app", a.name),
			zap.String("applicantId", string(st.ApplicantID)), zap.String("reason", reason), zap.Error(err))
		msg := "the Open API answer was refused"
		if m := domain.MessageOf(err); m != "" {
			msg += ": " + m
		}
		rep.fail(reason, msg)
		if reason == ReasonRefused {
			r.backOff(a, &callError{reason: reason})
		}
		return rep
	}
	a.succeeded()
	rep.OpenAPIStatus, rep.OpenAPIUpdatedAt = resp.Status, resp.UpdatedAt.UTC()
	if resp.Status == st.Status {
		rep.Action = ActionInSync
		return rep
	}
	r.m.divergences.WithLabelValues(a.name).Inc()
	rep.Action = ActionAppended
	if opt.DryRun {
		return rep
	}
	ev, msgID := resp.ReconciledEvent(st.AppKey, f.body, f.signature, f.at, r.cfg.KeepRaw)
	actx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.AppendTimeout > 0 {
		actx, cancel = context.WithTimeout(ctx, r.cfg.AppendTimeout)
	}
	defer cancel()
	seq, dup, err := r.events.Append(actx, &ev, msgID)
	if err != nil {
		// The log's error text stays in the log: a report is answered to API callers.
		r.log.Warn("reconciled event not appended", zap.String("app", a.name),
			zap.String("applicantId", string(st.ApplicantID)), zap.Error(err))
		rep.fail(ReasonAppend, "the event log did not confirm the append")
		return rep
	}
	rep.Seq = seq
	r.log.Info("status reconciled from the Open API", zap.String("app", a.name),
		zap.String("applicantId", string(st.ApplicantID)), zap.String("from", string(st.Status)),
		zap.String("to", string(resp.Status)), zap.Uint64("seq", seq), zap.Bool("duplicate", dup))
	return rep
}

// parseReason maps a refused answer to its metric reason.
func parseReason(err error) string {
	switch domain.CodeOf(err) {
	case allpass.CodeBadSignature:
		return ReasonBadSignature
	case allpass.CodeInvalidResponse:
		return ReasonInvalid
	case allpass.CodeOpenAPIRefused:
		return ReasonRefused
	}
	return ReasonMalformed
}

// count adds one check to the metrics.
func (r *Reconciler) count(a *appState, rep *Report) {
	if rep.Reason == "canceled" {
		return
	}
	if rep.Action == ActionError {
		r.m.errors.WithLabelValues(a.name, rep.Reason).Inc()
	}
	if rep.DryRun && rep.Action == ActionAppended {
		return // nothing was appended; the divergence is counted
	}
	r.m.checks.WithLabelValues(a.name, string(rep.Action)).Inc()
}

// backOff records a failed call: 401/403 stop the app's sweep, the rest pause it.
func (r *Reconciler) backOff(a *appState, ce *callError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := r.now()
	switch ce.reason {
	case ReasonUnauthorized, ReasonForbidden:
		if a.stopped == "" {
			a.stopped = ce.msg
			r.m.stopped.WithLabelValues(a.name).Set(1)
			r.log.Error("Open API refused the private key; this app's sweep stops until the key is fixed and the node restarted",
				zap.String("app", a.name), zap.String("reason", ce.reason))
		}
	case ReasonRateLimited, ReasonServerError, ReasonTimeout, ReasonTransport, ReasonRefused:
		a.failures++
		d := min(time.Duration(1<<min(a.failures-1, 8))*time.Second, 5*time.Minute)
		if ce.retryAfter > d {
			d = min(ce.retryAfter, time.Hour)
		}
		a.paused = now.Add(d)
		r.log.Warn("Open API call failed; backing off", zap.String("app", a.name),
			zap.String("reason", ce.reason), zap.Duration("for", d), zap.NamedError("cause", ce.err))
	}
}

func (a *appState) succeeded() {
	a.mu.Lock()
	a.failures = 0
	a.paused = time.Time{}
	a.mu.Unlock()
}

// wait blocks until the app's next call may go at rate per second, and books it.
// A call booked before notBefore (a back-off) is moved to it.
func (a *appState) wait(ctx context.Context, rate float64, notBefore time.Time) error {
	a.mu.Lock()
	now := time.Now()
	at := a.next
	if at.Before(now) {
		at = now
	}
	if at.Before(notBefore) {
		at = notBefore
	}
	a.next = at.Add(time.Duration(float64(time.Second) / rate))
	a.mu.Unlock()
	return clock.Sleep(ctx, time.Until(at))
}

// status returns why the app's sweep is stopped ("" if it is not) and until when it is
// backed off.
func (a *appState) status() (stopped string, paused time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped, a.paused
}

// String of a report, for logs and the command line: one line, no content of the answer.
func (r Report) String() string {
	s := fmt.Sprintf("applicant %s: %s", r.ApplicantID, r.Action)
	if r.DryRun && r.Action == ActionAppended {
		s += " (dry run: would append)"
	}
	st := func(s domain.Status) string {
		if s == domain.StatusNone {
			return "none"
		}
		return string(s)
	}
	api := "Open API"
	if r.Provider != "" && r.Provider != domain.ProviderAllpass {
		api = string(r.Provider) + " API"
	}
	s += fmt.Sprintf(" (projection %s, %s %s)", st(r.ProjectionStatus), api, st(r.OpenAPIStatus))
	if r.Seq != 0 {
		s += fmt.Sprintf(" seq %d", r.Seq)
	}
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}
