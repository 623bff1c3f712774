package api

import (
	"net/http"

	"github.com/kycstate/kycstate/domain"
)

// routes is the API's whole surface (DESIGN.md section 7; openapi.yaml documents each).
// GET patterns also answer HEAD.
func (s *server) routes() {
	s.handle("GET /v1/applicants/{id}", s.require(domain.RoleReader, s.handleState())) // ?at, ?seq: auditor, checked inside
	s.handle("GET /v1/applicants/{id}/history", s.require(domain.RoleAuditor, s.handleHistory()))
	s.handle("GET /v1/applicants", s.require(domain.RoleReader, s.handleApplicants()))
	s.handle("GET /v1/anomalies", s.require(domain.RoleAuditor, s.handleAnomalies()))
	s.handle("GET /v1/changes", s.require(domain.RoleReader, s.handleChanges()))
	s.handle("GET /v1/verify", s.require(domain.RoleAuditor, s.handleVerify()))                        // 404 inside when cfg.Verify is nil
	s.handle("POST /v1/applicants/{id}/reconcile", s.require(domain.RoleAuditor, s.handleReconcile())) // 404 inside when cfg.Reconcile is nil
	s.handle("POST /v1/applicants/{id}/erase", s.require(domain.RoleAdmin, s.handleErase()))           // 404 inside when cfg.Erase is nil

	// The auditor console (api/console): pages behind a session cookie rather than a
	// bearer token, reading through consoleBackend, so it shows what these routes show.
	s.handle("/console/", s.console)

	// Health and metrics are unauthenticated, as probes and Prometheus scrapers expect;
	// they reveal no applicant data. Bind the API to a private address.
	s.handle("GET /healthz", s.handleHealthz())
	s.handle("GET /readyz", s.handleReadyz())
	s.handle("GET /metrics", s.handleMetrics())

	s.handle("/", s.handleNotFound())
}

// handle registers h under pattern, counted and timed under the pattern's name.
func (s *server) handle(pattern string, h http.Handler) {
	route := pattern
	if pattern == "/" {
		route = "unmatched"
	}
	s.mux.Handle(pattern, s.metrics.instrument(route, h))
}
