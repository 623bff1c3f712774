package domain

import "github.com/looplab/fsm"

// Veriff's event names as the adapter (ingest/veriff) stores them. Veriff posts two kinds
// of webhook (https://devdocs.veriff.com/docs/webhooks-guide): the event webhook, named by
// its `action` ("started", "submitted"), and the decision webhook, which carries no name
// of its own and is stored as "decision". The session status is the `action` of an event
// webhook and `verification.status` of a decision webhook (and of GET
// /v1/sessions/{id}/decision).
const (
	veriffDecision  EventType = "decision"
	veriffStarted   EventType = "started"
	veriffSubmitted EventType = "submitted"
)

// veriffStatuses maps Veriff's session statuses to the common status: DESIGN.md section
// 13's column, which is Veriff's whole list of notified statuses
// (https://devdocs.veriff.com/docs/verification-session-status-codes-table); Veriff never
// notifies `created`. A status Veriff adds later is unknown until it is catalogued here.
func veriffStatuses() map[string]Status {
	return map[string]Status{
		"started":                StatusIncomplete,
		"resubmission_requested": StatusIncomplete,
		"expired":                StatusIncomplete,
		"abandoned":              StatusIncomplete,
		"submitted":              StatusInProgress,
		"review":                 StatusInReview,
		"approved":               StatusApproved,
		"declined":               StatusRejected,
	}
}

// classifyVeriff maps an event of Veriff to its class and, for a status event, the common
// status. Every webhook Veriff documents states the session's status, so a known event
// with a known status is a status event; anything else (a new action, a new decision
// status) is unknown: stored and shown, no effect.
func classifyVeriff(t EventType, providerStatus string) (Class, Status) {
	switch t {
	case veriffDecision, veriffStarted, veriffSubmitted:
		if s, ok := veriffStatuses()[providerStatus]; ok {
			return ClassStatus, s
		}
	}
	return ClassUnknown, StatusNone
}

// journeyVeriff is Veriff's documented session journey as looplab/fsm events, each named by
// its destination status. A session is created unseen (Veriff never notifies `created`)
// and the event webhook is optional, so whatever comes first is regular: every event lists
// "no status yet". Then: started -> submitted -> a decision; review -> approved, declined
// or resubmission_requested; resubmission_requested -> started again, or straight to the
// next decision when no event webhook is configured; approved and declined are final (a
// new attempt is a new session, https://devdocs.veriff.com/docs/verification-session-decisions).
// expired and abandoned end a session that was created or started but not submitted: they
// share INCOMPLETE with started, so they need no transition of their own.
func journeyVeriff() fsm.Events {
	return journey(
		step(StatusIncomplete, StatusNone, StatusInProgress, StatusInReview),
		step(StatusInProgress, StatusNone, StatusIncomplete),
		step(StatusInReview, StatusNone, StatusIncomplete, StatusInProgress),
		step(StatusApproved, StatusNone, StatusIncomplete, StatusInProgress, StatusInReview),
		step(StatusRejected, StatusNone, StatusIncomplete, StatusInProgress, StatusInReview),
	)
}
