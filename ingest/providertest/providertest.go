// Package providertest makes webhooks of the providers other than Allpass (DESIGN.md
// section 13) as each provider sends them, signed with each adapter's Sign: for the
// handler's tests and the end-to-end tests of the binary. The adapters' own vectors are
// not made with it.
package providertest

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/onfido"
	"github.com/kycstate/kycstate/ingest/persona"
	"github.com/kycstate/kycstate/ingest/sumsub"
	"github.com/kycstate/kycstate/ingest/veriff"
)

// Event is one webhook of a provider, in the terms of section 13's table.
type Event struct {
	// ID is the provider's applicant id: Sumsub's applicantId, Persona's inquiry id
	// (inq_...), Veriff's session id, Onfido's workflow run id.
	ID string
	// External is the externalUserId (Sumsub externalUserId, Persona reference-id,
	// Veriff vendorData, Onfido customer_user_id); "" for none.
	External string
	// Type is the provider's event name (Sumsub type, Persona data.attributes.name,
	// Veriff's action or "decision", Onfido's action).
	Type string
	// Status is the provider's own status: Sumsub's reviewStatus, or its review answer
	// (GREEN, RED+RETRY, RED+FINAL); Persona's inquiry status; Veriff's action or
	// verification.status; Onfido's workflow run status.
	Status string
	// EventID is the provider's event id where it has one (Sumsub correlationId,
	// Persona's evt_ id); "" for none.
	EventID string
	// At is the provider's own time of the event; zero for none (Veriff's event
	// webhooks carry none).
	At time.Time
}

// Body is e as provider p posts it.
func Body(p domain.Provider, e Event) []byte {
	var v any
	switch p {
	case domain.ProviderSumsub:
		m := map[string]any{"applicantId": e.ID, "type": e.Type, "levelName": "basic-kyc-level", "sandboxMode": false}
		if e.External != "" {
			m["externalUserId"] = e.External
		}
		if e.EventID != "" {
			m["correlationId"] = e.EventID
		}
		if !e.At.IsZero() {
			m["createdAtMs"] = e.At.UTC().Format("2006-01-02 15:04:05.000")
		}
		switch answer, reject, _ := strings.Cut(e.Status, "+"); answer {
		case "GREEN", "RED":
			m["reviewStatus"] = "completed"
			r := map[string]any{"reviewAnswer": answer}
			if reject != "" {
				r["reviewRejectType"] = reject
			}
			m["reviewResult"] = r
		default:
			if e.Status != "" {
				m["reviewStatus"] = e.Status
			}
		}
		v = m
	case domain.ProviderPersona:
		attrs := map[string]any{"status": e.Status, "tags": []string{}}
		if e.External != "" {
			attrs["reference-id"] = e.External
		}
		ev := map[string]any{"name": e.Type, "payload": map[string]any{"data": map[string]any{
			"type": "inquiry", "id": e.ID, "attributes": attrs}, "included": []any{}}}
		if !e.At.IsZero() {
			ev["created-at"] = e.At.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		v = map[string]any{"data": map[string]any{"type": "event", "id": e.EventID, "attributes": ev}}
	case domain.ProviderVeriff:
		if e.Type != string(veriff.TypeDecision) {
			m := map[string]any{"id": e.ID, "attemptId": "e30122d1-740b-4764-853f-470374a7abf4", "feature": "selfid",
				"code": 7002, "action": e.Type}
			if e.External != "" {
				m["vendorData"] = e.External
			}
			v = m
			break
		}
		ver := map[string]any{"id": e.ID, "status": e.Status, "code": 9001, "reason": nil}
		if e.External != "" {
			ver["vendorData"] = e.External
		}
		if !e.At.IsZero() {
			ver["decisionTime"] = e.At.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		v = map[string]any{"status": "success", "verification": ver}
	case domain.ProviderOnfido:
		if strings.HasPrefix(e.Type, "workflow_task.") {
			obj := map[string]any{"id": "profile_data", "workflow_run_id": e.ID}
			if !e.At.IsZero() {
				obj["started_at_iso8601"] = e.At.UTC().Format(time.RFC3339)
			}
			v = map[string]any{"payload": map[string]any{"resource_type": "workflow_task", "action": e.Type, "object": obj}}
			break
		}
		obj := map[string]any{"id": e.ID, "status": e.Status, "href": "https://api.eu.onfido.com/v3.6/workflow_runs/" + e.ID}
		if !e.At.IsZero() {
			// A run that has ended is dated by its completion, one still going by its start.
			field := "started_at_iso8601"
			switch e.Status {
			case "approved", "declined", "review", "abandoned":
				field = "completed_at_iso8601"
			}
			obj[field] = e.At.UTC().Format(time.RFC3339)
		}
		res := map[string]any{"id": e.ID, "status": e.Status, "applicant_id": "36a56899-d617-4988-85bf-b76640861bf5"}
		if e.External != "" {
			res["customer_user_id"] = e.External
		}
		v = map[string]any{"payload": map[string]any{"resource_type": "workflow_run", "action": e.Type,
			"object": obj, "resource": res}}
	default:
		panic("providertest: no provider " + string(p))
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// Sign returns the headers provider p signs body with under secret: Persona's with the
// time t, Veriff's with its API key apiKey in X-AUTH-CLIENT.
func Sign(p domain.Provider, secret []byte, apiKey string, body []byte, t time.Time) http.Header {
	var m map[string]string
	switch p {
	case domain.ProviderSumsub:
		m = sumsub.Sign(secret, body)
	case domain.ProviderPersona:
		m = persona.Sign(secret, body, t)
	case domain.ProviderVeriff:
		m = veriff.Sign(secret, body)
		m[veriff.HeaderAuthClient] = apiKey
	case domain.ProviderOnfido:
		m = onfido.Sign(secret, body)
	default:
		panic("providertest: no provider " + string(p))
	}
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	return h
}

// Providers are the providers this package makes webhooks of.
func Providers() []domain.Provider {
	return []domain.Provider{domain.ProviderSumsub, domain.ProviderPersona, domain.ProviderVeriff, domain.ProviderOnfido}
}

// Journey is a regular journey of applicant id of provider p, ending approved, one event
// a minute from start: the events and the common status each leads to.
func Journey(p domain.Provider, id, external string, start time.Time) ([]Event, []domain.Status) {
	at := func(i int) time.Time { return start.Add(time.Duration(i) * time.Minute) }
	var evs []Event
	var want []domain.Status
	add := func(typ, status, eventID string, t time.Time, s domain.Status) {
		evs = append(evs, Event{ID: id, External: external, Type: typ, Status: status, EventID: eventID, At: t})
		want = append(want, s)
	}
	switch p {
	case domain.ProviderSumsub:
		add("applicantCreated", "init", "req-"+id+"-1", at(0), domain.StatusInit)
		add("applicantPending", "pending", "req-"+id+"-2", at(1), domain.StatusInProgress)
		add("applicantReviewed", "GREEN", "req-"+id+"-3", at(2), domain.StatusApproved)
	case domain.ProviderPersona:
		add("inquiry.created", "created", "evt_"+id+"1", at(0), domain.StatusInit)
		add("inquiry.started", "pending", "evt_"+id+"2", at(1), domain.StatusIncomplete)
		add("inquiry.completed", "completed", "evt_"+id+"3", at(2), domain.StatusCompleted)
		add("inquiry.approved", "approved", "evt_"+id+"4", at(3), domain.StatusApproved)
	case domain.ProviderVeriff:
		add("submitted", "submitted", "", time.Time{}, domain.StatusInProgress)
		add(string(veriff.TypeDecision), "approved", "", at(2), domain.StatusApproved)
	case domain.ProviderOnfido:
		add("workflow_run.completed", "processing", "", at(0), domain.StatusInProgress)
		add("workflow_task.completed", "", "", at(1), domain.StatusInProgress)
		add("workflow_run.completed", "approved", "", at(2), domain.StatusApproved)
	default:
		panic("providertest: no provider " + string(p))
	}
	return evs, want
}
