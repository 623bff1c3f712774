package domain

import "github.com/looplab/fsm"

// Persona's inquiry events that move a status (DESIGN.md section 13), as Persona spells
// them in data.attributes.name: one per inquiry status, created, pending, completed,
// failed, expired, needs_review, approved, declined
// (https://docs.withpersona.com/docs/models-lifecycle).
const (
	personaCreated         EventType = "inquiry.created"
	personaStarted         EventType = "inquiry.started"
	personaExpired         EventType = "inquiry.expired"
	personaCompleted       EventType = "inquiry.completed"
	personaFailed          EventType = "inquiry.failed"
	personaMarkedForReview EventType = "inquiry.marked-for-review"
	personaApproved        EventType = "inquiry.approved"
	personaDeclined        EventType = "inquiry.declined"
)

// personaAnnotations are the documented inquiry events that move no status: they are
// recorded as flags. Every other name (account, verification, report, case and
// transaction events, a name Persona adds later) is unknown: stored and shown, no effect.
func personaAnnotations() []EventType {
	return []EventType{
		"inquiry.transitioned", "inquiry.redacted", "inquiry.updated-tags",
		"inquiry.reusable-persona-created",
	}
}

// personaStatuses maps each status event to its common status.
func personaStatuses() map[EventType]Status {
	return map[EventType]Status{
		personaCreated:         StatusInit,
		personaStarted:         StatusIncomplete,
		personaExpired:         StatusIncomplete,
		personaCompleted:       StatusCompleted,
		personaMarkedForReview: StatusInReview,
		personaApproved:        StatusApproved,
		personaFailed:          StatusRejected,
		personaDeclined:        StatusRejected,
	}
}

// classifyPersona maps a Persona event to its class and, for a status event, the common
// status: section 13's Persona column, and inquiry.failed, which Persona documents beside
// inquiry.completed (the end user failed a required check) and the section leaves out.
// It is REJECTED, the nearest of the eight; a workflow or a reviewer may still approve
// the inquiry, and that is a regular step. The event's name decides: the inquiry status
// it carries (providerStatus) is kept for the record and is the same fact.
func classifyPersona(t EventType, providerStatus string) (Class, Status) {
	return classifyByName(t, personaStatuses(), personaAnnotations())
}

// journeyPersona is Persona's inquiry lifecycle as looplab/fsm events, each named by its
// destination status. Created, then pending (INCOMPLETE) once the end user starts; the
// user is done when the inquiry is completed, failed (REJECTED) or expired (INCOMPLETE,
// from created or pending, so no step of its own); after that come the optional
// post-inquiry decisions of workflows and reviewers, needs_review, approved, declined,
// which may follow each other and may overrule a failure. A workflow may decline an
// expired inquiry.
func journeyPersona() fsm.Events {
	return journey(
		step(StatusInit, StatusNone),
		step(StatusIncomplete, StatusInit),
		step(StatusCompleted, StatusIncomplete),
		step(StatusInReview, StatusCompleted, StatusRejected),
		step(StatusApproved, StatusCompleted, StatusInReview, StatusRejected),
		step(StatusRejected, StatusIncomplete, StatusCompleted, StatusInReview, StatusApproved),
	)
}
