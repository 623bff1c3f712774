package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/kycstate/kycstate/api/client"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/httperr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// SeqHeader carries the last stream sequence the projection had applied when the response
// was read: the response reflects every event up to it.
const SeqHeader = client.SeqHeader

// setSeq records how far the projection had got before the data of a response was read.
func setSeq(w http.ResponseWriter, seq uint64) {
	w.Header().Set(SeqHeader, strconv.FormatUint(seq, 10))
}

// withSeq puts X-Kycstate-Seq on every response, errors included. Handlers that wait for
// the projection overwrite it with the checkpoint they read after waiting.
func (s *server) withSeq(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSeq(w, s.proj.Checkpoint())
		h.ServeHTTP(w, r)
	})
}

// withRecover turns a handler's panic into a logged 500, so one bad request cannot take
// the process down. http.ErrAbortHandler keeps its meaning.
func (s *server) withRecover(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panicked", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Any("panic", v), zap.Stack("stack"))
				httperr.Writer{}.Write(w, r, domain.E("api", domain.KindInternal, "panic")) // logged above, with the stack
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// metrics are the API's request counters and latencies, labelled by route pattern (never
// by raw path, which would let callers mint label values).
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycstate_api_requests_total",
			Help: "Read API requests by route pattern and HTTP status code (499: the client went away first).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kycstate_api_request_duration_seconds",
			Help:    "Read API request latency by route pattern, waits included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// instrument counts and times h under route.
func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	obs := m.duration.WithLabelValues(route)
	// The usual codes are resolved once: no label hashing per request, and the series
	// exist (at 0) from the start, so rate() over them works from the first scrape.
	common := map[int]prometheus.Counter{}
	for _, code := range []int{200, 400, 401, 403, 404} {
		common[code] = m.requests.WithLabelValues(route, strconv.Itoa(code))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := sw.status
		if code == 0 {
			code = http.StatusOK
			if r.Context().Err() != nil {
				code = 499
			}
		}
		c, ok := common[code]
		if !ok {
			c = m.requests.WithLabelValues(route, strconv.Itoa(code))
		}
		c.Inc()
		obs.Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
