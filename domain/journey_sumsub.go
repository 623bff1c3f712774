package domain

import "github.com/looplab/fsm"

// Sumsub's webhook types that move a status (DESIGN.md section 13), as Sumsub spells them
// in `type` (https://docs.sumsub.com/docs/user-verification-webhooks).
const (
	sumsubCreated  EventType = "applicantCreated"
	sumsubPending  EventType = "applicantPending"
	sumsubReviewed EventType = "applicantReviewed"
	sumsubOnHold   EventType = "applicantOnHold"
	sumsubReset    EventType = "applicantReset"
)

// sumsubAnswers maps the review answers of an applicantReviewed, as the adapter
// (ingest/sumsub) writes them into providerStatus, to the common status:
// reviewResult.reviewAnswer, and for RED its reviewRejectType after a '+'
// (https://docs.sumsub.com/docs/receive-and-interpret-results-via-api). RED+RETRY lets
// the applicant resubmit; RED+FINAL does not.
func sumsubAnswers() map[string]Status {
	return map[string]Status{
		"GREEN":     StatusApproved,
		"RED+RETRY": StatusIncomplete,
		"RED+FINAL": StatusRejected,
	}
}

// sumsubAnnotations are the documented applicant webhooks that move no status: they are
// recorded as flags. Any other type (transaction monitoring, KYT, a type Sumsub adds
// later) is unknown: stored and shown, no effect.
func sumsubAnnotations() []EventType {
	return []EventType{
		"applicantPrechecked", "applicantPersonalInfoChanged", "applicantTagsChanged",
		"applicantLevelChanged", "applicantActivated", "applicantDeactivated", "applicantDeleted",
		"applicantPersonalDataDeleted", "applicantActionPending", "applicantActionReviewed",
		"applicantActionOnHold", "applicantWorkflowCompleted", "videoIdentStatusChanged",
		"videoIdentCompositionCompleted",
	}
}

// sumsubStatuses maps the types that state a status whatever the payload says to it.
func sumsubStatuses() map[EventType]Status {
	return map[EventType]Status{
		sumsubCreated: StatusInit,
		sumsubPending: StatusInProgress,
		sumsubOnHold:  StatusOnHold,
		sumsubReset:   StatusIncomplete,
	}
}

// classifySumsub maps a Sumsub event to its class and, for a status event, the common
// status (section 13's Sumsub column). An applicantReviewed is a status event only with
// an answer the table names: a RED without a reject type, or an answer Sumsub adds later,
// says nothing the fold may act on, so it is unknown rather than guessed at.
func classifySumsub(t EventType, providerStatus string) (Class, Status) {
	if t == sumsubReviewed {
		if s, ok := sumsubAnswers()[providerStatus]; ok {
			return ClassStatus, s
		}
		return ClassUnknown, StatusNone
	}
	return classifyByName(t, sumsubStatuses(), sumsubAnnotations())
}

// journeySumsub is Sumsub's documented journey as looplab/fsm events, each named by its
// destination status. An applicant is created (init), submits (pending), may be put on
// hold, and is reviewed: GREEN, RED+RETRY (back to resubmitting) or RED+FINAL. A
// resubmission is pending again; a reset (applicantReset) or a RETRY sends a decided
// applicant back to INCOMPLETE; a compliance officer's re-review flips APPROVED and
// REJECTED; an approved applicant moved to another level is checked again (pending).
func journeySumsub() fsm.Events {
	return journey(
		step(StatusInit, StatusNone),
		step(StatusInProgress, StatusInit, StatusIncomplete, StatusApproved),
		step(StatusOnHold, StatusInProgress),
		step(StatusIncomplete, StatusInProgress, StatusOnHold, StatusApproved, StatusRejected),
		step(StatusApproved, StatusInProgress, StatusOnHold, StatusRejected),
		step(StatusRejected, StatusInProgress, StatusOnHold, StatusApproved),
	)
}
