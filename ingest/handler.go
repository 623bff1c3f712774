package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/httperr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// EventLog is what ingest needs from the event log; *eventlog.EventLog implements it.
type EventLog interface {
	// Append stores ev under the Nats-Msg-Id msgID and returns its sequence once the
	// stream has acknowledged it. dup reports that the stream already held msgID (seq is
	// then the original's). Errors: KindUnavailable when the write cannot be confirmed;
	// the caller must then not claim it.
	Append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error)
	// AppendBatch appends several events at once, as Append would each, and sets on each
	// Pending its sequence (and Duplicate) or its error; a sequence only ever comes from
	// the stream's acknowledgement of that message. The group commit calls it.
	AppendBatch(ctx context.Context, batch []*domain.Pending)
	// Prepare encodes (and seals) a Pending's event ahead of its write, into p.Stored;
	// it refuses what Append would refuse before publishing.
	Prepare(ctx context.Context, p *domain.Pending) error
	// Reject keeps a refused request in the size-bounded rejects stream.
	Reject(ctx context.Context, r domain.Reject) error
	// Rejects calls fn for each kept reject in order from sequence from, up to the last
	// one at the time of the call; fn's error stops it.
	Rejects(ctx context.Context, from uint64, fn func(domain.Reject) error) error
}

// Defaults of HandlerConfig.
const (
	DefaultMaxBody       = 1 << 20 // DESIGN.md section 3
	DefaultMaxInFlight   = 256
	DefaultAppendTimeout = 5 * time.Second
	DefaultQueueWait     = 2 * time.Second
	// DefaultReadTimeout bounds the read of one webhook's body (DESIGN.md section 15,
	// "Admission before work"). Allpass sends a few KiB at once; even the 1 MiB limit
	// arrives in well under a second on any link a webhook sender uses.
	DefaultReadTimeout = 5 * time.Second
)

// The minimum rate of a body: after the first minBodyGrace, a body must have arrived at
// minBodyRate bytes a second or more, counted from the start of its read, or the read is
// cut (400 body_too_slow). With the read timeout, it bounds what a slow sender costs: its
// own connection and at most minBodyRate bytes a second of buffer, never an in-flight
// slot (the body is read before one is taken). A constant, not a setting: no genuine
// webhook comes near it, and the read timeout is the knob for slow links.
const (
	minBodyRate  = 1 << 10 // bytes per second
	minBodyGrace = time.Second
	// bodyPrealloc caps what a declared Content-Length makes the read allocate before any
	// of the body has arrived: a slow sender declaring 1 MiB must not cost 1 MiB at once.
	bodyPrealloc = 32 << 10
)

// retryAfter is the Retry-After of every 503, in seconds. Allpass ignores it (its own
// schedule retries after 30 s); other senders and load balancers read it.
const retryAfter = "5"

// errs answers every refusal (internal/httperr: the one mapping of kinds to statuses);
// refuse logs them itself, with the app and the reason.
var errs = httperr.Writer{RetryAfter: retryAfter}

// HandlerConfig holds the webhook handler's dependencies and limits.
type HandlerConfig struct {
	Apps []*allpass.App
	// Providers are the configured apps of the other providers (DESIGN.md section 13),
	// served at POST /webhooks/{provider}/{app}. Apps and Providers may each be empty,
	// not both.
	Providers []*ProviderApp
	Events    EventLog
	Logger    *zap.Logger           // nil: no logging
	Metrics   prometheus.Registerer // nil: collectors are not registered
	// MaxBody bounds a request body (default 1 MiB); larger bodies are answered 413.
	MaxBody int64
	// MaxInFlight bounds the requests handled at once (default 256): webhooks opened and
	// appends waiting for the log. It bounds the work in flight and the size of one group
	// commit. A request takes a slot only once its whole body is read (ReadTimeout), so a
	// slow sender never holds one; past the limit a request waits for a slot, up to
	// QueueWait.
	MaxInFlight int
	// ReadTimeout bounds the read of a request's body (default 5 s), which must also
	// arrive at the minimum rate (minBodyRate after minBodyGrace); a body not read in
	// time is answered 400 body_too_slow. ingest.read_timeout.
	ReadTimeout time.Duration
	// QueueWait is how long a request past MaxInFlight waits for a slot before it is
	// answered 503 with Retry-After (default 2 s; DESIGN.md section 3, "Under load"). A
	// burst (Allpass retrying everything after an outage) is then absorbed rather than
	// bounced: with group commit the log takes a few hundred webhooks per write, so a
	// slot frees within milliseconds, and 2 s stays well inside Allpass's request
	// timeout. A log that cannot confirm still gets 503 from the append timeout; the
	// queue only waits for a slot.
	QueueWait time.Duration
	// AppendTimeout bounds the wait for the log's acknowledgement (default 5 s); past it
	// the answer is 503 and nothing is claimed.
	AppendTimeout time.Duration
	// KeepRaw stores the original body and signature in each event (DESIGN.md section 3:
	// on unless switched off; the configuration layer sets it).
	KeepRaw bool
	// Times is the window an event's own time is trusted in (DESIGN.md section 15;
	// ingest.max_clock_skew and ingest.max_event_age, defaults DefaultMaxClockSkew and
	// DefaultMaxEventAge): outside it the event is stored with its receive time, flagged.
	Times domain.TimeBounds
	// Now is the clock of receivedAt (default time.Now).
	Now func() time.Time
	// Ready, if set, answers GET /readyz: nil when the log is reachable. A load balancer
	// uses it to route webhooks away from a node that has lost NATS.
	Ready func(ctx context.Context) error

	// beforeAppend, if set, runs once a request holds its in-flight slot and has opened
	// its webhook, just before the append: tests hold requests there to fill the slots.
	beforeAppend func()
}

// handler serves the webhook routes. It keeps no per-request state between requests
// beyond the in-flight semaphore and the metrics.
type handler struct {
	ready     func(ctx context.Context) error
	appends   appendHealth
	apps      appIndex
	providers providerIndex
	events    EventLog
	log       *zap.Logger
	m         *metrics
	maxBody   int64
	readTime  time.Duration
	sem       chan struct{}
	queueWait time.Duration
	commit    *committer
	samples   *sampler
	// closing is closed when the HTTP server shuts down (NewHTTPServer registers
	// stopQueue): requests waiting for a slot are refused at once, so the log can close
	// once the ones in flight are answered.
	closing       chan struct{}
	closeOnce     sync.Once
	appendTimeout time.Duration
	opt           allpass.Options
	times         domain.TimeBounds
	now           func() time.Time
	beforeAppend  func()
}

// NewHandler returns the ingest HTTP handler:
//
//	POST /webhooks/allpass/{app}  {app} = a configured app's name or appKey
//	POST /webhooks/allpass        tries every configured app; the MAC or tag picks one
//	POST /webhooks/{provider}/{app}  {app} = the name of a configured app of that
//	                              provider (sumsub, persona, veriff, onfido), opened by
//	                              its adapter (ProviderApp)
//	GET  /healthz                 alive
//	GET  /readyz                  the log is reachable (HandlerConfig.Ready) and appends
//	                              have not been failing for the last 30 s
//
// A webhook is answered 200 {"seq":N,"duplicate":false} only after the log acknowledged
// it, and 200 with "duplicate":true when the log already had it. Every refusal is a JSON
// error (internal/httperr); refusals other than 404, 405, 413 and the in-flight limit are
// kept in the rejects stream for `kycstate rejects reprocess`: whole when a key verified
// the webhook, as a rate-limited sample when none did (keepReject).
func NewHandler(cfg HandlerConfig) (http.Handler, error) {
	const op = "ingest.NewHandler"
	if len(cfg.Apps) == 0 && len(cfg.Providers) == 0 {
		return nil, domain.E(op, domain.KindInvalid, "no apps configured")
	}
	if cfg.Events == nil {
		return nil, domain.E(op, domain.KindInvalid, "no event log")
	}
	apps, err := newAppIndex(cfg.Apps)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	providers, err := newProviderIndex(cfg.Providers)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	h := &handler{
		apps:          apps,
		providers:     providers,
		events:        cfg.Events,
		log:           cfg.Logger,
		maxBody:       cfg.MaxBody,
		readTime:      cfg.ReadTimeout,
		appendTimeout: cfg.AppendTimeout,
		opt:           allpass.Options{KeepRaw: cfg.KeepRaw},
		times:         timeBounds(cfg.Times),
		now:           cfg.Now,
		beforeAppend:  cfg.beforeAppend,
		ready:         cfg.Ready,
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	h.log = h.log.Named("ingest")
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	if h.readTime <= 0 {
		h.readTime = DefaultReadTimeout
	}
	inflight := cfg.MaxInFlight
	if inflight <= 0 {
		inflight = DefaultMaxInFlight
	}
	h.sem = make(chan struct{}, inflight)
	h.queueWait = cfg.QueueWait
	if h.queueWait <= 0 {
		h.queueWait = DefaultQueueWait
	}
	h.closing = make(chan struct{})
	if h.appendTimeout <= 0 {
		h.appendTimeout = DefaultAppendTimeout
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.samples = newSampler()
	if h.m, err = newMetrics(cfg.Metrics); err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	// One write can carry every request in flight; the log splits what is over its own
	// batch limits.
	h.commit = newCommitter(h.events, inflight, func(n int) { h.m.batch.Observe(float64(n)) })
	return &server{mux: h.routes(), h: h}, nil
}

// server is the handler NewHandler returns: its routes, and the hook by which
// NewHTTPServer refuses queued requests on shutdown.
type server struct {
	mux http.Handler
	h   *handler
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// readTimeout is the handler's body read bound; NewHTTPServer sets the server's own
// ReadTimeout from it.
func (s *server) readTimeout() time.Duration { return s.h.readTime }

// stopQueue refuses, at once, every request waiting for an in-flight slot, and every
// one that arrives later; the requests in flight finish. Safe to call twice.
func (s *server) stopQueue() { s.h.closeOnce.Do(func() { close(s.h.closing) }) }

// routes is the whole HTTP surface of ingest.
func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/allpass/{app}", h.webhook(true))
	mux.Handle("POST /webhooks/allpass", h.webhook(false))
	// Every other provider's path: registered without a method, since a pattern with one
	// would overlap the method-less Allpass patterns below with neither more specific
	// than the other; the handler answers a method other than POST 405 itself.
	mux.Handle("/webhooks/{provider}/{app}", h.providerWebhook())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httperr.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !h.isReady(r.Context()) {
			w.Header().Set("Retry-After", retryAfter)
			httperr.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
		httperr.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// The mux's own 404 and 405 answers are plain text; these keep every answer JSON.
	methodNotAllowed := func(allow string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			h.refuse(w, r, &exchange{label: appAny, start: time.Now()}, errMethod)
		}
	}
	mux.Handle("/webhooks/allpass/{app}", methodNotAllowed(http.MethodPost))
	mux.Handle("/webhooks/allpass", methodNotAllowed(http.MethodPost))
	mux.Handle("/healthz", methodNotAllowed(http.MethodGet+", "+http.MethodHead))
	mux.Handle("/readyz", methodNotAllowed(http.MethodGet+", "+http.MethodHead))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.refuse(w, r, &exchange{label: appUnknown, start: time.Now()}, errNoRoute)
	})
	return mux
}

// exchange is what one request has gathered by the time it is answered.
type exchange struct {
	start      time.Time // monotonic, for the duration histogram
	receivedAt time.Time
	pathApp    string         // the {app} segment; only set once it named a configured app
	label      string         // app label of the metrics and logs: a configured name, "unknown" or "any"
	apps       []*allpass.App // the apps the request may be for
	papp       *ProviderApp   // or the provider app it is for (POST /webhooks/{provider}/{app})
	body       []byte
	keep       bool // kept in rejects if refused
	// authApp is set once a key verified the webhook (the app's appKey), with the
	// applicant its payload names (when valid): its refusal is kept whole under them.
	authApp       domain.AppKey
	authApplicant domain.ApplicantID
}

// webhook serves one webhook route ({app} in the path when byPath). Admission comes
// after the work the sender must do: the whole body is read first (admit), under the
// read timeout and the minimum rate, and only then does the request wait, up to the
// queue wait, for an in-flight slot (acquire), in which it is opened and appended. A
// slow sender costs its own connection, never a slot of a genuine webhook. A refusal is
// answered, counted and kept (refuse) while the request still holds its slot, if it took
// one: keeping a reject is part of what a request costs.
func (h *handler) webhook(byPath bool) http.Handler {
	return h.serve(appAny, func(w http.ResponseWriter, r *http.Request, x *exchange) error {
		return h.admit(w, r, x, byPath)
	})
}

// serve is a webhook route whose admit finds what the request is for and reads its body
// (see webhook); label is the metrics' app label until an app is known.
func (h *handler) serve(label string, admit func(http.ResponseWriter, *http.Request, *exchange) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &exchange{start: time.Now(), receivedAt: h.now().UTC(), label: label}
		err := admit(w, r, x)
		if err == nil {
			if h.acquire(r.Context()) {
				defer func() { <-h.sem }()
				h.m.inflight.Inc()
				defer h.m.inflight.Dec()
				err = h.serveWebhook(w, r, x)
			} else {
				// Refusing must cost less than serving: a busy refusal is not kept.
				err, x.keep = errBusy, false
			}
		}
		if err != nil {
			h.refuse(w, r, x, err)
		}
	})
}

// admit finds the apps the request may be for and reads its body, before the request
// takes a slot. It writes nothing.
func (h *handler) admit(w http.ResponseWriter, r *http.Request, x *exchange, byPath bool) error {
	x.apps = h.apps.all
	if byPath {
		pathApp := r.PathValue("app")
		apps, ok := h.apps.lookup(pathApp)
		if !ok {
			x.label = appUnknown
			return errNoApp
		}
		x.apps, x.pathApp = apps, pathApp
	}
	if len(x.apps) == 0 {
		x.label = appUnknown
		return errNoApp // no Allpass app is configured, only other providers'
	}
	if len(x.apps) == 1 {
		x.label = x.apps[0].Name
	}
	return h.readInto(w, r, x)
}

// readInto reads the request's body into x, and says whether a refusal is kept.
func (h *handler) readInto(w http.ResponseWriter, r *http.Request, x *exchange) error {
	body, err := h.readBody(w, r)
	// From here on a refusal is kept in rejects (a truncated body too: it shows an
	// operator where deliveries break off), except a body over the limit: nothing a fixed
	// key could recover, and keeping it would let anyone fill the stream. A webhook that
	// opened but whose stored event is over the log's message limit is kept: it is
	// authentic, and a raised limit can recover it.
	x.body, x.keep = body, domain.KindOf(err) != domain.KindTooLarge
	return err
}

// serveWebhook opens the webhook read by admit and answers 200 once the log has the
// event, or returns why not; it writes nothing when it returns an error. The request
// holds an in-flight slot.
func (h *handler) serveWebhook(w http.ResponseWriter, r *http.Request, x *exchange) error {
	var (
		ev    domain.Event
		msgID string
		err   error
	)
	if x.papp != nil {
		ev, msgID, err = x.papp.Open(x.body, r.Header, x.receivedAt, h.opt.KeepRaw)
		switch k := domain.KindOf(err); {
		case err == nil: // opened: refused from here on (the log refusing the write), it is kept whole
			x.authApp, x.authApplicant = ev.AppKey, ev.ApplicantID
		case k == domain.KindInvalid || k == domain.KindUnprocessable:
			// Past the signature (the adapter verifies it before it parses): the body is
			// the provider's, kept whole under the app. Which applicant it names, the
			// adapter does not say of a body it refuses.
			x.authApp = domain.AppKey(x.papp.name)
		}
	} else {
		var app *allpass.App
		app, ev, msgID, err = openAny(x.apps, x.body, r.Header.Get(allpass.SignatureHeader), x.receivedAt, h.opt)
		if ae := (*allpass.AuthenticatedError)(nil); errors.As(err, &ae) {
			x.authApp, x.authApplicant = canonicalApp(ae.AppKey), ae.ApplicantID
		}
		if err == nil {
			x.label = app.Name
			// Refused from here on (the log refusing the write), it is kept whole.
			x.authApp, x.authApplicant = canonicalApp(ev.AppKey), ev.ApplicantID
		}
	}
	if err != nil {
		return err
	}
	trustTime(&ev, h.times)

	if h.beforeAppend != nil {
		h.beforeAppend()
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.appendTimeout)
	seq, dup, err := h.commit.append(ctx, &ev, msgID)
	cancel()
	// A client that went away says nothing about the log, and neither does a refusal of
	// the request's own making (an event too large once sealed for the server's maximum
	// payload): readiness follows the log's own failures only (DESIGN.md section 3).
	if r.Context().Err() == nil && !ownFault(err) {
		h.appends.record(err == nil, h.now())
	}
	if err != nil {
		return errAppend(err)
	}

	if dup {
		h.m.duplicates.Inc()
	} else {
		h.m.appends.Inc()
	}
	httperr.WriteJSON(w, http.StatusOK, appendResult{Seq: seq, Duplicate: dup})
	h.m.requests.WithLabelValues(x.label, outcomeOf(http.StatusOK, dup)).Inc()
	h.m.duration.Observe(time.Since(x.start).Seconds())
	h.log.Debug("webhook appended", zap.String("app", x.label), zap.Uint64("seq", seq),
		zap.Bool("duplicate", dup), zap.String("remote", r.RemoteAddr))
	return nil
}

// ownFault reports whether a failed append failed because of the request, not the log:
// its stored event is over the server's maximum payload, which a healthy log refuses as
// surely as a failing one. It is answered 413 for that request alone and counts neither
// against readiness nor as the log's failure. (An event the log finds invalid after Open
// accepted it is a broken invariant, errAppend's 500, and stays counted.)
func ownFault(err error) bool { return domain.KindOf(err) == domain.KindTooLarge }

// acquire takes an in-flight slot, waiting for one up to the queue wait. It gives up
// when the wait is over, the client has gone, or the server is shutting down.
func (h *handler) acquire(ctx context.Context) bool {
	select {
	case <-h.closing:
		return false
	default:
	}
	select {
	case h.sem <- struct{}{}:
		return true
	default:
	}
	h.m.queued.Inc()
	defer h.m.queued.Dec()
	t := time.NewTimer(h.queueWait)
	defer t.Stop()
	select {
	case h.sem <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-h.closing:
	}
	return false
}

// isReady: no append failed recently without a good one since, and the log answers.
func (h *handler) isReady(ctx context.Context) bool {
	if h.appends.failing(h.now()) {
		return false
	}
	if h.ready == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return h.ready(ctx) == nil
}

// appendHealth remembers how the last appends went, for /readyz: a log that can be read
// but not written (its disk full, say: nats-server then refuses every write until it
// restarts) must take the node out of a load balancer's rotation too.
type appendHealth struct {
	mu         sync.Mutex
	lastFailed bool      // the last append to finish failed
	failedAt   time.Time // when
}

// appendFailWindow is how long a failed append, not followed by a good one, makes the node
// unready. It ends by itself so that a node taken out of rotation is tried again.
const appendFailWindow = 30 * time.Second

func (a *appendHealth) record(ok bool, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastFailed = !ok
	if !ok {
		a.failedAt = now
	}
}

func (a *appendHealth) failing(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastFailed && now.Sub(a.failedAt) < appendFailWindow
}

// appendResult is the body of a 200.
type appendResult struct {
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// readBody reads the whole body, at most maxBody bytes, before anything acts on it: the
// MAC covers all of it, and a half-read request must not reach the log. The read is
// bounded by the read timeout and the minimum rate (bodyClock), through the
// connection's read deadline; once the body is in, the deadline is lifted, so that the
// server's watch for a client hanging up does not take a webhook waiting for the log
// for one. A body not read whole closes the connection after the answer. Memory: what
// has arrived, at most maxBody, per connection.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, errTooLarge(h.maxBody)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, bodyPrealloc)))
	}
	rc := http.NewResponseController(w)
	clock := bodyClock{start: time.Now(), timeout: h.readTime}
	// A writer that cannot set deadlines (a test's recorder) reads unbounded, as before.
	bounded := rc.SetReadDeadline(clock.deadline(0)) == nil
	body := io.Reader(http.MaxBytesReader(w, r.Body, h.maxBody))
	if bounded {
		body = &deadlineReader{r: body, rc: rc, clock: clock}
	}
	_, err := buf.ReadFrom(body)
	if err != nil {
		// The rest of the body is not wanted: closing after the answer keeps net/http
		// from draining it (a slow sender would hold the connection on).
		w.Header().Set("Connection", "close")
	} else if bounded {
		_ = rc.SetReadDeadline(time.Time{})
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, errTooLarge(h.maxBody)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return buf.Bytes(), errTooSlow
	case err != nil:
		return buf.Bytes(), errReadBody
	}
	return buf.Bytes(), nil
}

// bodyClock is the schedule a body must keep: all of it within timeout of start, and
// after minBodyGrace at least minBodyRate bytes a second since start.
type bodyClock struct {
	start   time.Time
	timeout time.Duration
}

// deadline is when the read fails if no byte past the first n arrives: the rate is
// broken once minBodyRate x (t - start - minBodyGrace) exceeds n.
func (c bodyClock) deadline(n int64) time.Time {
	d := c.start.Add(c.timeout)
	if rate := c.start.Add(minBodyGrace + time.Duration(n)*time.Second/minBodyRate); rate.Before(d) {
		d = rate
	}
	return d
}

// deadlineReader moves the connection's read deadline along the body clock as the
// body arrives.
type deadlineReader struct {
	r     io.Reader
	rc    *http.ResponseController
	clock bodyClock
	n     int64
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if n > 0 {
		d.n += int64(n)
		if derr := d.rc.SetReadDeadline(d.clock.deadline(d.n)); derr != nil && err == nil {
			err = derr
		}
	}
	return n, err
}

// refuse answers err, counts and logs the refusal, and keeps the request in the rejects
// stream when x says so.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, x *exchange, err error) {
	var status int
	var code, msg string
	if errors.Is(err, errMethod) {
		msg = domain.MessageOf(errMethod)
		httperr.MethodNotAllowed(w, w.Header().Get("Allow"), msg)
		status, code = http.StatusMethodNotAllowed, CodeMethodNotAllowed
	} else {
		status, code, msg = errs.Write(w, r, err)
	}
	h.m.requests.WithLabelValues(x.label, outcomeOf(status, false)).Inc()
	h.m.rejects.WithLabelValues(code).Inc()

	fields := []zap.Field{zap.String("app", x.label), zap.String("reason", code),
		zap.Int("status", status), zap.String("remote", r.RemoteAddr)}
	if status >= 500 {
		// The cause of a 5xx is the log's or a bug's, never the request's content.
		fields = append(fields, zap.Error(err))
	}
	if status == http.StatusUnauthorized || status >= 500 {
		// A run of 401s is what a misconfigured key looks like; 5xx need an operator.
		h.log.Warn("webhook refused", fields...)
	} else {
		h.log.Info("webhook refused", fields...)
	}

	// Requests refused before their body was read (unknown app, method, in-flight
	// limit) or over the body limit are not kept (see serveWebhook).
	if x.keep {
		h.keepReject(r, x, status, code, msg)
	}
	h.m.duration.Observe(time.Since(x.start).Seconds())
}
