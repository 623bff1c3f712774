package ingest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
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
)

// retryAfter is the Retry-After of every 503, in seconds. Allpass ignores it (its own
// schedule retries after 30 s); other senders and load balancers read it.
const retryAfter = "5"

// errs answers every refusal (internal/httperr: the one mapping of kinds to statuses);
// refuse logs them itself, with the app and the reason.
var errs = httperr.Writer{RetryAfter: retryAfter}

// Headers kept with a reject: what re-verifying the request needs (the signature), and
// what tells an operator who sent it. Names are lower case in domain.Reject.Headers.
var keptHeaders = [...]string{allpass.SignatureHeader, "content-type", "user-agent"}

// HandlerConfig holds the webhook handler's dependencies and limits.
type HandlerConfig struct {
	Apps    []*allpass.App
	Events  EventLog
	Logger  *zap.Logger           // nil: no logging
	Metrics prometheus.Registerer // nil: collectors are not registered
	// MaxBody bounds a request body (default 1 MiB); larger bodies are answered 413.
	MaxBody int64
	// MaxInFlight bounds the requests handled at once (default 256): bodies read, webhooks
	// opened and appends waiting for the log. It bounds memory and the size of one group
	// commit. Past it a request waits for a slot, up to QueueWait, without its body read.
	MaxInFlight int
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
	events    EventLog
	log       *zap.Logger
	m         *metrics
	maxBody   int64
	sem       chan struct{}
	queueWait time.Duration
	commit    *committer
	// closing is closed when the HTTP server shuts down (NewHTTPServer registers
	// stopQueue): requests waiting for a slot are refused at once, so the log can close
	// once the ones in flight are answered.
	closing       chan struct{}
	closeOnce     sync.Once
	appendTimeout time.Duration
	opt           allpass.Options
	now           func() time.Time
	beforeAppend  func()
}

// NewHandler returns the ingest HTTP handler:
//
//	POST /webhooks/allpass/{app}  {app} = a configured app's name or appKey
//	POST /webhooks/allpass        tries every configured app; the MAC or tag picks one
//	GET  /healthz                 alive
//	GET  /readyz                  the log is reachable (HandlerConfig.Ready) and appends
//	                              have not been failing for the last 30 s
//
// A webhook is answered 200 {"seq":N,"duplicate":false} only after the log acknowledged
// it, and 200 with "duplicate":true when the log already had it. Every refusal is a JSON
// error (internal/httperr); refusals other than 404, 405, 413 and the in-flight limit are
// kept in the rejects stream for `kycstate rejects reprocess`.
func NewHandler(cfg HandlerConfig) (http.Handler, error) {
	const op = "ingest.NewHandler"
	if len(cfg.Apps) == 0 {
		return nil, domain.E(op, domain.KindInvalid, "no apps configured")
	}
	if cfg.Events == nil {
		return nil, domain.E(op, domain.KindInvalid, "no event log")
	}
	apps, err := newAppIndex(cfg.Apps)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	h := &handler{
		apps:          apps,
		events:        cfg.Events,
		log:           cfg.Logger,
		maxBody:       cfg.MaxBody,
		appendTimeout: cfg.AppendTimeout,
		opt:           allpass.Options{KeepRaw: cfg.KeepRaw},
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

// stopQueue refuses, at once, every request waiting for an in-flight slot, and every
// one that arrives later; the requests in flight finish. Safe to call twice.
func (s *server) stopQueue() { s.h.closeOnce.Do(func() { close(s.h.closing) }) }

// routes is the whole HTTP surface of ingest.
func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/allpass/{app}", h.webhook(true))
	mux.Handle("POST /webhooks/allpass", h.webhook(false))
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
	pathApp    string // the {app} segment; only set once it named a configured app
	label      string // app label of the metrics and logs: a configured name, "unknown" or "any"
	body       []byte
	keep       bool // kept in rejects if refused
}

// webhook serves one webhook route ({app} in the path when byPath) within the in-flight
// limit, waiting up to the queue wait for a slot (acquire). A refusal is answered, counted and kept (refuse) while the request still holds
// its slot: keeping a reject is part of what a request costs.
func (h *handler) webhook(byPath bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &exchange{start: time.Now(), receivedAt: h.now().UTC(), label: appAny}
		if !h.acquire(r.Context()) {
			// The body is not read: refusing must cost less than serving.
			h.refuse(w, r, x, errBusy)
			return
		}
		defer func() { <-h.sem }()
		h.m.inflight.Inc()
		defer h.m.inflight.Dec()
		if err := h.serveWebhook(w, r, x, byPath); err != nil {
			h.refuse(w, r, x, err)
		}
	})
}

// serveWebhook answers 200 once the log has the event, or returns why not; it writes
// nothing when it returns an error.
func (h *handler) serveWebhook(w http.ResponseWriter, r *http.Request, x *exchange, byPath bool) error {
	apps := h.apps.all
	if byPath {
		pathApp := r.PathValue("app")
		var ok bool
		if apps, ok = h.apps.lookup(pathApp); !ok {
			x.label = appUnknown
			return errNoApp
		}
		x.pathApp = pathApp
	}
	if len(apps) == 1 {
		x.label = apps[0].Name
	}

	body, err := h.readBody(w, r)
	// From here on a refusal is kept in rejects (a truncated body too: it shows an
	// operator where deliveries break off), except a body over the limit: nothing a fixed
	// key could recover, and keeping it would let anyone fill the stream. A webhook that
	// opened but whose stored event is over the log's message limit is kept: it is
	// authentic, and a raised limit can recover it.
	x.body, x.keep = body, domain.KindOf(err) != domain.KindTooLarge
	if err != nil {
		return err
	}

	app, ev, msgID, err := openAny(apps, body, r.Header.Get(allpass.SignatureHeader), x.receivedAt, h.opt)
	if err != nil {
		return err
	}
	x.label = app.Name

	if h.beforeAppend != nil {
		h.beforeAppend()
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.appendTimeout)
	seq, dup, err := h.commit.append(ctx, &ev, msgID)
	cancel()
	if r.Context().Err() == nil { // a client that went away says nothing about the log
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
// MAC covers all of it, and a half-read request must not reach the log.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, errTooLarge(h.maxBody)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, errTooLarge(h.maxBody)
	case err != nil:
		return buf.Bytes(), errReadBody
	}
	return buf.Bytes(), nil
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

// keepReject appends the refused request to the rejects stream. It runs before the answer
// is flushed, so a sender that saw the refusal can count on the reject being kept, unless
// the log is down, which is logged: the answer stays the refusal.
func (h *handler) keepReject(r *http.Request, x *exchange, status int, code, msg string) {
	headers := make(map[string]string, len(keptHeaders))
	for _, k := range keptHeaders {
		if v := r.Header.Get(k); v != "" {
			headers[k] = v
		}
	}
	rej := domain.Reject{
		App:        x.pathApp,
		Reason:     code,
		Message:    msg,
		Status:     status,
		Body:       string(x.body),
		Headers:    headers,
		RemoteAddr: r.RemoteAddr,
		ReceivedAt: x.receivedAt,
	}
	// The reject outlives a client that hung up: it is what reprocessing works from.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.appendTimeout)
	defer cancel()
	if err := h.events.Reject(ctx, rej); err != nil {
		h.log.Error("reject not kept", zap.String("app", x.label), zap.String("reason", code),
			zap.String("remote", r.RemoteAddr), zap.Error(err))
	}
}
