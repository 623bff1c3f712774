package veriff

import (
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// TypeDecision is the type a decision webhook is stored with: Veriff gives it no name
// (an event webhook's type is its action).
const TypeDecision domain.EventType = "decision"

// SourceDecisionTime is the eventAtSource of a decision dated by verification.decisionTime.
const SourceDecisionTime = "payload.verification.decisionTime"

// Limits beside webhook.MaxName. The body is Veriff's, so they are loose: maxDepth bounds
// its nesting, checked before anything is decoded; maxExternalLen bounds vendorData
// (Veriff allows 1,000 characters; the read API looks up externalUserIds of at most 1,024
// bytes).
const (
	maxDepth       = 64
	maxExternalLen = 1024
)

// The members the adapter reads. Each may appear at most once at its level.
const (
	memberStatus         = "status"
	memberVerification   = "verification"
	memberID             = "id"
	memberAction         = "action"
	memberVendorData     = "vendorData"
	memberDecisionTime   = "decisionTime"
	memberAcceptanceTime = "acceptanceTime"
	memberCode           = "code"
)

// parseWebhook reads an authenticated body: a decision webhook (a `verification` object)
// or an event webhook (an `action`). The event it returns lacks the app and Raw; its event
// id is always "": Veriff's webhooks carry none, so the content id hashes the body.
func parseWebhook(body []byte, receivedAt time.Time) (domain.Event, string, error) {
	top, err := webhook.ReadObject("veriff", "body", body, maxDepth, memberStatus, memberVerification, memberID, memberAction, memberVendorData, memberCode)
	if err != nil {
		return domain.Event{}, "", err
	}
	ev := webhook.NewEvent(Provider, body, receivedAt)
	isDecision, isEvent := top.Has(memberVerification), top.Has(memberAction)
	switch {
	case isDecision && isEvent:
		return domain.Event{}, "", top.Invalid("body", "is both a decision (verification) and an event (action)")
	case isDecision:
		v, err := verificationOf(top)
		if err != nil {
			return domain.Event{}, "", err
		}
		if v == nil {
			return domain.Event{}, "", top.Invalid(memberVerification, "is null")
		}
		ev.Type = TypeDecision
		ev.ApplicantID, ev.ProviderStatus, ev.ExternalUserID = v.id, v.status, v.vendorData
		if !v.decisionTime.IsZero() {
			ev.EventAt, ev.EventAtSource = v.decisionTime, SourceDecisionTime
		}
	case isEvent:
		id, err := top.ID(memberID)
		if err != nil {
			return domain.Event{}, "", err
		}
		action, err := top.Name(memberAction)
		if err != nil {
			return domain.Event{}, "", err
		}
		ext, err := top.Text(memberVendorData, maxExternalLen)
		if err != nil {
			return domain.Event{}, "", err
		}
		ev.Type, ev.ApplicantID, ev.ProviderStatus, ev.ExternalUserID = domain.EventType(action), id, action, domain.ExternalUserID(ext)
	default:
		return domain.Event{}, "", top.Invalid("body", "is neither a decision (verification) nor an event (action) webhook")
	}
	return ev, "", nil
}

// verification is what the adapter reads of a `verification` object.
type verification struct {
	id           domain.ApplicantID
	status       string
	vendorData   domain.ExternalUserID
	decisionTime time.Time // zero when absent or not a time
}

// verificationOf reads top's `verification` member: nil when it is null (the status API's
// answer before a decision is ready). Errors are CodeMalformedPayload (a member twice) or
// CodeInvalidPayload (not an object, a member missing or invalid).
func verificationOf(top webhook.Object) (*verification, error) {
	m, ok, err := top.Object(memberVerification, memberID, memberStatus, memberVendorData, memberDecisionTime, memberAcceptanceTime, memberCode)
	if err != nil || !ok {
		return nil, err
	}
	var v verification
	if v.id, err = m.ID(memberID); err != nil {
		return nil, err
	}
	if v.status, err = m.Name(memberStatus); err != nil {
		return nil, err
	}
	ext, err := m.Text(memberVendorData, maxExternalLen)
	if err != nil {
		return nil, err
	}
	v.vendorData = domain.ExternalUserID(ext)
	v.decisionTime = m.Time(memberDecisionTime)
	return &v, nil
}
