package domain

import "github.com/looplab/fsm"

// Onfido's event names (its webhook `payload.action`, stored verbatim by ingest/onfido) that
// the fold knows. Onfido's webhook event types are listed in its API specification
// (https://github.com/onfido/onfido-openapi-spec, schemas/webhooks/definitions.yaml,
// webhook_event_type); an applicant here is a workflow run, so only the workflow events
// concern it.
const (
	onfidoRunCompleted            EventType = "workflow_run.completed"
	onfidoTaskStarted             EventType = "workflow_task.started"
	onfidoTaskCompleted           EventType = "workflow_task.completed"
	onfidoTimelineFileCreated     EventType = "workflow_timeline_file.created"
	onfidoEvidenceFolderCreated   EventType = "workflow_run_evidence_folder.created"
	onfidoRunStatusError          string    = "error"
	onfidoRunStatusAwaitingClient string    = "awaiting_client_input"
)

// onfidoRunStatuses maps a workflow run's status (workflow_run_status in Onfido's
// specification) to the common status: DESIGN.md section 13's column, and
// awaiting_client_input (the run waits for the customer, not the applicant, e.g. a
// manual task), which section 13 does not list, as ON_HOLD. The run's `error` status is
// not a verification outcome: classifyOnfido makes it an annotation.
func onfidoRunStatuses() map[string]Status {
	return map[string]Status{
		"awaiting_input":              StatusIncomplete,
		"abandoned":                   StatusIncomplete,
		"processing":                  StatusInProgress,
		onfidoRunStatusAwaitingClient: StatusOnHold,
		"review":                      StatusInReview,
		"approved":                    StatusApproved,
		"declined":                    StatusRejected,
	}
}

// classifyOnfido maps an event of Onfido to its class and, for a status event, the common
// status. A completed workflow run states the run's status; its tasks, timeline file and
// evidence folder are steps of the run (annotations), as is a run that ended in `error`.
// Anything else, a run status Onfido adds later included, is unknown: stored and shown,
// no effect.
func classifyOnfido(t EventType, providerStatus string) (Class, Status) {
	switch t {
	case onfidoRunCompleted:
		if s, ok := onfidoRunStatuses()[providerStatus]; ok {
			return ClassStatus, s
		}
		if providerStatus == onfidoRunStatusError {
			return ClassAnnotation, StatusNone
		}
	case onfidoTaskStarted, onfidoTaskCompleted, onfidoTimelineFileCreated, onfidoEvidenceFolderCreated:
		return ClassAnnotation, StatusNone
	}
	return ClassUnknown, StatusNone
}

// journeyOnfido is a workflow run's documented journey as looplab/fsm events, each named by
// its destination status. Onfido notifies no run's creation and only the completion of a
// run (workflow_run.completed), so whatever comes first is regular: every event lists "no
// status yet". Then a run is processing, waits for the applicant (awaiting_input) or the
// customer (awaiting_client_input) and goes back to processing, and ends approved,
// declined, review or abandoned; a run in review is decided by a person (approved or
// declined); approved and declined are final. abandoned shares INCOMPLETE with
// awaiting_input, the only status a run is abandoned from.
func journeyOnfido() fsm.Events {
	return journey(
		step(StatusIncomplete, StatusNone, StatusInProgress),
		step(StatusInProgress, StatusNone, StatusIncomplete, StatusOnHold),
		step(StatusOnHold, StatusNone, StatusInProgress),
		step(StatusInReview, StatusNone, StatusInProgress, StatusOnHold),
		step(StatusApproved, StatusNone, StatusInProgress, StatusOnHold, StatusInReview),
		step(StatusRejected, StatusNone, StatusInProgress, StatusOnHold, StatusInReview),
	)
}
