package reconcile

import "github.com/prometheus/client_golang/prometheus"

// metrics are the kycstate_reconcile_* series (DESIGN.md section 10). Dashboards and
// alert rules name them; the names and labels do not change.
type metrics struct {
	checks      *prometheus.CounterVec
	divergences *prometheus.CounterVec
	errors      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	progress    prometheus.Gauge
	lastSweep   prometheus.Gauge
	stopped     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycstate_reconcile_checks_total",
			Help: "Applicants checked against the Open API, by app and result (appended, in_sync, not_found, error).",
		}, []string{"app", "result"}),
		divergences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycstate_reconcile_divergences_total",
			Help: "Checks that found the Open API's status different from the projection's.",
		}, []string{"app"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycstate_reconcile_openapi_errors_total",
			Help: "Checks that failed, by app and reason (unauthorized, forbidden, rate_limited, server_error, timeout, transport, redirect, http_status, too_large, malformed, bad_signature, invalid, refused, append, not_configured).",
		}, []string{"app", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kycstate_reconcile_openapi_duration_seconds",
			Help:    "Time of one Open API call, from request to the whole body or the failure.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"app"}),
		progress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_reconcile_sweep_progress",
			Help: "Share of the running sweep's applicants checked, 0 to 1; 1 when no sweep runs on this node.",
		}),
		lastSweep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycstate_reconcile_last_sweep_timestamp_seconds",
			Help: "Unix time the last complete sweep ended (0: none yet), as the node holding the lease knows it.",
		}),
		stopped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kycstate_reconcile_app_stopped",
			Help: "1 when the app's sweep stopped because the Open API refused its private key (401/403).",
		}, []string{"app"}),
	}
	m.progress.Set(1)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.checks, m.divergences, m.errors, m.duration, m.progress, m.lastSweep, m.stopped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
