package veriff

import (
	"crypto/sha256"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// Veriff's status API for reconciliation (DESIGN.md sections 10 and 13): GET
// /v1/sessions/{sessionId}/decision answers a session's decision in the decision webhook's
// shape. The request is signed like every GET of Veriff's API: X-AUTH-CLIENT the API key,
// X-HMAC-SIGNATURE the hex HMAC-SHA256 of the session id under the shared secret key.

// DecisionPath is the path of a session's decision: /v1/sessions/{id}/decision. A subject
// token needs no escaping in a path.
func DecisionPath(id domain.ApplicantID) string { return "/v1/sessions/" + string(id) + "/decision" }

// DecisionRequest returns the path and headers of GET /v1/sessions/{id}/decision for a,
// signed with a's current secret. Errors: KindInternal (CodeInvalidConfig) for an app that
// fails Validate; KindInvalid (webhook.CodeInvalidPayload) for an id that is not a subject token.
func (a *App) DecisionRequest(id domain.ApplicantID) (path string, headers map[string]string, err error) {
	const op = "veriff.DecisionRequest"
	if err := a.Validate(); err != nil {
		return "", nil, domain.E(op, domain.KindInternal, err)
	}
	if _, err := domain.ParseProviderID(string(id)); err != nil {
		return "", nil, domain.Public(op, domain.KindInvalid, webhook.CodeInvalidPayload, "session id is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	return DecisionPath(id), map[string]string{
		HeaderAuthClient: a.APIKey,
		HeaderSignature:  SignSessionID(a.Secrets[0], id),
	}, nil
}

// SignSessionID is the X-HMAC-SIGNATURE of a GET about session id: the lower-case hex
// HMAC-SHA256 of the id under secret.
func SignSessionID(secret []byte, id domain.ApplicantID) string {
	return webhook.SumHex(sha256.New, secret, []byte(id))
}

// Decision is what reconciliation reads of a GET /v1/sessions/{id}/decision answer.
type Decision struct {
	// Ready is false while Veriff has no decision (verification is null): there is nothing
	// to reconcile yet, and the other fields are zero.
	Ready bool
	// SessionID is verification.id, the session asked about.
	SessionID domain.ApplicantID
	// Type is the type a reconciled decision is stored with (TypeDecision).
	Type domain.EventType
	// ProviderStatus is verification.status, verbatim.
	ProviderStatus string
	// Class and Status are what the status means (domain.ProviderVeriff.Classify): a
	// status Veriff adds later is ClassUnknown with no Status.
	Class  domain.Class
	Status domain.Status
	// UpdatedAt is verification.decisionTime; zero when the answer has none.
	UpdatedAt time.Time
	// ExternalUserID is verification.vendorData.
	ExternalUserID domain.ExternalUserID
}

// ParseDecision reads Veriff's answer to GET /v1/sessions/{id}/decision for session id.
// Errors: KindInvalid, CodeMalformedPayload (not one JSON object, too deep, a member read
// twice); KindUnprocessable, CodeInvalidPayload (status not "success", verification not an
// object or null, a member missing or invalid, or the answer about another session).
func ParseDecision(id domain.ApplicantID, body []byte) (Decision, error) {
	top, err := webhook.ReadObject("veriff", "answer", body, maxDepth, memberStatus, memberVerification)
	if err != nil {
		return Decision{}, err
	}
	if st, present, err := top.String(memberStatus); err != nil || !present || st != "success" {
		return Decision{}, top.Invalid(memberStatus, `is not "success"`)
	}
	if !top.Has(memberVerification) {
		return Decision{}, top.Invalid(memberVerification, "is missing")
	}
	v, err := verificationOf(top)
	if err != nil || v == nil {
		return Decision{}, err
	}
	if v.id != id {
		return Decision{}, top.Invalid(memberVerification+"."+memberID, "is not the session asked about")
	}
	d := Decision{
		Ready: true, SessionID: v.id, Type: TypeDecision, ProviderStatus: v.status,
		UpdatedAt: v.decisionTime, ExternalUserID: v.vendorData,
	}
	d.Class, d.Status = domain.ProviderVeriff.Classify(d.Type, d.ProviderStatus)
	return d, nil
}
