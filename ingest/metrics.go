package ingest

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of kycstate_ingest_requests_total{app} that are not configured app names.
// The label never carries raw path input, so a scan of random app names cannot grow the
// series count.
const (
	appUnknown = "unknown" // the {app} segment named no configured app
	appAny     = "any"     // the generic path, when no app opened the webhook
)

// Values of kycstate_ingest_requests_total{outcome}.
const (
	outcomeAppended    = "appended"    // 200, a new event in the log
	outcomeDuplicate   = "duplicate"   // 200, the log already had it
	outcomeRefused     = "refused"     // 4xx: the request itself is wrong
	outcomeUnavailable = "unavailable" // 503: the log could not confirm, or too busy
	outcomeError       = "error"       // 500: a bug
)

// metrics are the ingest handler's Prometheus collectors.
type metrics struct {
	requests   *prometheus.CounterVec
	duration   prometheus.Histogram
	appends    prometheus.Counter
	duplicates prometheus.Counter
	rejects    *prometheus.CounterVec
	// samplesDropped counts unauthenticated refusals not kept: over their sample budget.
	samplesDropped prometheus.Counter
	inflight       prometheus.Gauge
	queued         prometheus.Gauge
	batch          prometheus.Histogram
}

// newMetrics builds the collectors and registers them on reg; a nil reg keeps them
// unregistered (they still count, which tests of a bare handler rely on).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycstate_ingest_requests_total",
			Help: "Webhook requests answered, by configured app and outcome (appended, duplicate, refused, unavailable, error).",
		}, []string{"app", "outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kycstate_ingest_request_duration_seconds",
			Help: "Time from receiving a webhook request to answering it, including the wait for the log's acknowledgement.",
			// Appends fsync on every write: most answers take milliseconds; the top
			// buckets catch requests that waited for the append timeout.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_ingest_appends_total",
			Help: "Webhooks appended to the event log as new events (acknowledged by the stream).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_ingest_duplicates_total",
			Help: "Webhooks the event log recognised as already stored (a retried delivery).",
		}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycstate_ingest_rejects_total",
			Help: "Webhook requests refused, by reason code (the error code answered).",
		}, []string{"reason"}),
		samplesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kycstate_ingest_reject_samples_dropped_total",
			Help: "Refusals that no key authenticated and that were not kept in KYC_REJECTS: over their source's or the node's sample budget, or the stream nearly full.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_ingest_inflight",
			Help: "Webhook requests being handled now (bounded by the in-flight limit).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_ingest_queued",
			Help: "Webhook requests waiting for an in-flight slot (at most ingest.queue_wait each).",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kycstate_ingest_commit_batch_size",
			Help:    "Webhooks written to the log by one group-commit write.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.appends, m.duplicates, m.rejects, m.samplesDropped, m.inflight, m.queued, m.batch} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// outcomeOf names the outcome label of an answered status.
func outcomeOf(status int, dup bool) string {
	switch {
	case status == 200 && dup:
		return outcomeDuplicate
	case status == 200:
		return outcomeAppended
	case status == 503:
		return outcomeUnavailable
	case status >= 500:
		return outcomeError
	}
	return outcomeRefused
}
