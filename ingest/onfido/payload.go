package onfido

import (
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// Where an Onfido event's time came from. Onfido's body is itself {"payload": ...}, so
// the stored payload's path and Onfido's read the same.
const (
	SourceCompletedAt = "payload.object.completed_at_iso8601"
	SourceStartedAt   = "payload.object.started_at_iso8601"
)

// ResourceWorkflowRun is the resource_type of an event whose object is the workflow run
// itself; the object of any other workflow event names its run in workflow_run_id.
const ResourceWorkflowRun = "workflow_run"

// Limits beside webhook.MaxName. The body is Onfido's, so they are loose: maxDepth bounds
// its nesting, checked before anything is decoded; maxExternalLen bounds
// customer_user_id (Onfido allows 256 characters; the read API looks up externalUserIds
// of at most 1,024 bytes).
const (
	maxDepth       = 64
	maxExternalLen = 1024
)

// The members the adapter reads. Each may appear at most once at its level.
const (
	memberPayload        = "payload"
	memberResourceType   = "resource_type"
	memberAction         = "action"
	memberObject         = "object"
	memberResource       = "resource"
	memberID             = "id"
	memberStatus         = "status"
	memberStartedAt      = "started_at_iso8601"
	memberCompletedAt    = "completed_at_iso8601"
	memberWorkflowRunID  = "workflow_run_id"
	memberApplicantID    = "applicant_id"
	memberCustomerUserID = "customer_user_id"
)

// parseWebhook reads an authenticated body. The event it returns lacks the app and Raw;
// its event id is always "": Onfido's webhooks carry none, so the content id hashes the
// body.
func parseWebhook(body []byte, receivedAt time.Time) (domain.Event, string, error) {
	top, err := webhook.ReadObject("onfido", "body", body, maxDepth, memberPayload)
	if err != nil {
		return domain.Event{}, "", err
	}
	payload, err := top.RequiredObject(memberPayload, memberResourceType, memberAction, memberObject, memberResource)
	if err != nil {
		return domain.Event{}, "", err
	}
	resourceType, err := payload.Name(memberResourceType)
	if err != nil {
		return domain.Event{}, "", err
	}
	action, err := payload.Name(memberAction)
	if err != nil {
		return domain.Event{}, "", err
	}
	obj, err := payload.RequiredObject(memberObject, memberID, memberStatus, memberStartedAt, memberCompletedAt, memberWorkflowRunID)
	if err != nil {
		return domain.Event{}, "", err
	}
	res, _, err := payload.Object(memberResource, memberID, memberStatus, memberWorkflowRunID, memberApplicantID, memberCustomerUserID)
	if err != nil {
		return domain.Event{}, "", err
	}
	run, err := runID(resourceType, obj, res)
	if err != nil {
		return domain.Event{}, "", err
	}
	// Absent or null, the event states no status; given, it is a name, never "".
	status, present, err := obj.String(memberStatus)
	if err == nil && present {
		status, err = obj.Name(memberStatus)
	}
	if err != nil {
		return domain.Event{}, "", err
	}
	ext, err := res.Text(memberCustomerUserID, maxExternalLen)
	if err != nil {
		return domain.Event{}, "", err
	}

	ev := webhook.NewEvent(Provider, body, receivedAt)
	ev.ApplicantID, ev.ExternalUserID, ev.Type, ev.ProviderStatus = run, domain.ExternalUserID(ext), domain.EventType(action), status
	if t := obj.Time(memberCompletedAt); !t.IsZero() {
		ev.EventAt, ev.EventAtSource = t, SourceCompletedAt
	} else if t := obj.Time(memberStartedAt); !t.IsZero() {
		ev.EventAt, ev.EventAtSource = t, SourceStartedAt
	}
	return ev, "", nil
}

// runID is the workflow run an event is about: the object itself for a workflow_run event,
// else the workflow_run_id that its object and resource name. Every member that names the
// run must name the same one; an event that names none is about no workflow run.
func runID(resourceType string, obj, res webhook.Object) (domain.ApplicantID, error) {
	name := memberWorkflowRunID
	if resourceType == ResourceWorkflowRun {
		name = memberID
	}
	var run domain.ApplicantID
	for _, o := range []webhook.Object{obj, res} {
		id, present, err := o.OptionalID(name)
		switch {
		case err != nil:
			return "", err
		case !present:
			continue
		case run != "" && id != run:
			return "", o.Invalid(name, "names another workflow run than the object")
		}
		run = id
	}
	if run == "" {
		if resourceType == ResourceWorkflowRun {
			return "", obj.Invalid(memberID, "is missing")
		}
		return "", webhook.Invalid("onfido", "payload", "names no workflow run (object.workflow_run_id): only workflow events are read")
	}
	return run, nil
}
