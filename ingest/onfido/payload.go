package onfido

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jsonscan"
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

// Limits. The body is Onfido's, so they are loose; they keep what becomes a NATS header,
// an index key or a log field printable and bounded.
const (
	maxDepth = 64 // nesting of the body, checked before anything is decoded
	// maxNameLen bounds the event type, the resource type and the provider's status,
	// which travel in message headers and history.
	maxNameLen = 128
	// maxExternalLen bounds customer_user_id: Onfido allows 256 characters; the read API
	// looks up externalUserIds of at most 1,024 bytes.
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

// parseWebhook reads an authenticated body. The event it returns lacks the app and Raw.
func parseWebhook(body []byte, receivedAt time.Time) (domain.Event, error) {
	top, err := jsonscan.Object(body, maxDepth, memberPayload)
	if err != nil {
		return domain.Event{}, domain.Public("onfido", domain.KindInvalid, CodeMalformedPayload, "body "+err.Error())
	}
	payload, err := object(top, memberPayload, true, memberResourceType, memberAction, memberObject, memberResource)
	if err != nil {
		return domain.Event{}, err
	}
	resourceType, err := nameMember(payload, "payload.resource_type")
	if err != nil {
		return domain.Event{}, err
	}
	action, err := nameMember(payload, "payload.action")
	if err != nil {
		return domain.Event{}, err
	}
	obj, err := object(payload, "payload.object", true, memberID, memberStatus, memberStartedAt, memberCompletedAt, memberWorkflowRunID)
	if err != nil {
		return domain.Event{}, err
	}
	res, err := object(payload, "payload.resource", false, memberID, memberStatus, memberWorkflowRunID, memberApplicantID, memberCustomerUserID)
	if err != nil {
		return domain.Event{}, err
	}
	run, err := runID(resourceType, obj, res)
	if err != nil {
		return domain.Event{}, err
	}
	status, present, err := stringMember(obj, memberStatus)
	switch {
	case err != nil:
		return domain.Event{}, invalid("payload.object.status", err.Error())
	case present && !printable(status, maxNameLen):
		return domain.Event{}, invalid("payload.object.status", fmt.Sprintf("is not 1 to %d printable ASCII characters", maxNameLen))
	}
	ext, err := externalMember(res, "payload.resource.customer_user_id")
	if err != nil {
		return domain.Event{}, err
	}

	ev := domain.Event{
		V: domain.StoredVersion, Provider: Provider, Origin: domain.OriginWebhook,
		ApplicantID: run, ExternalUserID: ext, Type: domain.EventType(action), ProviderStatus: status,
		ReceivedAt: receivedAt.UTC(), EventAt: receivedAt.UTC(), EventAtSource: domain.SourceReceived,
		Payload: json.RawMessage(bytes.Clone(body)),
	}
	if t := timeMember(obj, memberCompletedAt); !t.IsZero() {
		ev.EventAt, ev.EventAtSource = t, SourceCompletedAt
	} else if t := timeMember(obj, memberStartedAt); !t.IsZero() {
		ev.EventAt, ev.EventAtSource = t, SourceStartedAt
	}
	return ev, nil
}

// runID is the workflow run an event is about: the object itself for a workflow_run event,
// else the workflow_run_id that its object and resource name. Every member that names the
// run must name the same one; an event that names none is about no workflow run.
func runID(resourceType string, obj, res map[string]json.RawMessage) (domain.ApplicantID, error) {
	type namer struct {
		m    map[string]json.RawMessage
		path string
	}
	namers := []namer{{obj, "payload.object.workflow_run_id"}, {res, "payload.resource.workflow_run_id"}}
	if resourceType == ResourceWorkflowRun {
		namers = []namer{{obj, "payload.object.id"}, {res, "payload.resource.id"}}
	}
	var run domain.ApplicantID
	for _, n := range namers {
		if n.m == nil {
			continue
		}
		s, present, err := stringMember(n.m, lastName(n.path))
		switch {
		case err != nil:
			return "", invalid(n.path, err.Error())
		case !present:
			continue
		}
		id, err := domain.ParseProviderID(s)
		switch {
		case err != nil:
			return "", invalid(n.path, "is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
		case run != "" && id != run:
			return "", invalid(n.path, "names another workflow run than the object")
		}
		run = id
	}
	if run == "" {
		if resourceType == ResourceWorkflowRun {
			return "", invalid("payload.object.id", "is missing")
		}
		return "", invalid("payload", "names no workflow run (object.workflow_run_id): only workflow events are read")
	}
	return run, nil
}

// Each reader below takes the member's path in the body, for its messages, and reads the
// member of m named by the path's last element.

// lastName is the last element of a member's path: "payload.object.id" -> "id".
func lastName(path string) string { return path[strings.LastIndexByte(path, '.')+1:] }

// object reads the object member at path of m (nil when it is absent or null and not
// required), splitting it with known members read at most once.
func object(m map[string]json.RawMessage, path string, required bool, known ...string) (map[string]json.RawMessage, error) {
	raw, ok := m[lastName(path)]
	if !ok || jsonscan.IsNull(raw) {
		if required {
			return nil, invalid(path, "is missing")
		}
		return nil, nil
	}
	o, err := jsonscan.Object(raw, maxDepth, known...)
	switch {
	case errors.Is(err, jsonscan.ErrNotObject):
		return nil, invalid(path, "is not an object")
	case err != nil:
		return nil, domain.Public("onfido", domain.KindInvalid, CodeMalformedPayload, path+" "+err.Error())
	}
	return o, nil
}

// nameMember reads a required name: 1 to maxNameLen printable ASCII characters.
func nameMember(m map[string]json.RawMessage, path string) (string, error) {
	s, present, err := stringMember(m, lastName(path))
	switch {
	case err != nil:
		return "", invalid(path, err.Error())
	case !present || s == "":
		return "", invalid(path, "is missing")
	case !printable(s, maxNameLen):
		return "", invalid(path, fmt.Sprintf("is not 1 to %d printable ASCII characters", maxNameLen))
	}
	return s, nil
}

// externalMember reads an optional externalUserId of m (which may be nil): at most
// maxExternalLen bytes, no control characters (it is an index key and a log field). Null
// and "" are absent.
func externalMember(m map[string]json.RawMessage, path string) (domain.ExternalUserID, error) {
	s, _, err := stringMember(m, lastName(path))
	switch {
	case err != nil:
		return "", invalid(path, err.Error())
	case len(s) > maxExternalLen:
		return "", invalid(path, fmt.Sprintf("is longer than %d bytes", maxExternalLen))
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", invalid(path, "contains control characters")
	}
	return domain.ExternalUserID(s), nil
}

// timeMember reads an optional RFC 3339 time. A value that is absent, null or not such a
// time reads as zero: the event is worth more than its timestamp, and the source stored
// beside the time says where it came from.
func timeMember(m map[string]json.RawMessage, name string) time.Time {
	s, present, err := stringMember(m, name)
	if err != nil || !present {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}
	}
	return t.UTC()
}

// stringMember reads an optional string member of m (which may be nil); null counts as
// absent.
func stringMember(m map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := m[name]
	if !ok || jsonscan.IsNull(raw) {
		return "", false, nil
	}
	s, ok := jsonscan.String(raw)
	if !ok {
		return "", false, errors.New("must be a string")
	}
	return s, true, nil
}

// printable reports whether s is 1 to max bytes of printable ASCII (space to '~').
func printable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// invalid is a CodeInvalidPayload refusal naming the member and the problem.
func invalid(member, problem string) error {
	return domain.Public("onfido", domain.KindUnprocessable, CodeInvalidPayload, member+" "+problem)
}
