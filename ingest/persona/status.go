package persona

import (
	"net/url"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// InquiryPath is the path (no host) of Persona's "retrieve an inquiry":
// GET /api/v1/inquiries/{inquiry-id}.
func InquiryPath(id domain.ApplicantID) string {
	return "/api/v1/inquiries/" + url.PathEscape(string(id))
}

// InquiryRequestHeaders are the headers of GET /api/v1/inquiries/{inquiry-id}: the API
// key as a Bearer token, and kebab-case keys asked for explicitly, since an API key may
// be set to answer in another inflection (ParseInquiry reads all three anyway).
func InquiryRequestHeaders(apiKey string) map[string]string {
	return map[string]string{
		"Authorization":  "Bearer " + apiKey,
		"Accept":         "application/json",
		"Key-Inflection": "kebab",
	}
}

// InquiryStatus is what Persona's inquiry API says of one inquiry, read the way a webhook
// is.
type InquiryStatus struct {
	// ProviderStatus is the inquiry's status verbatim ("approved", "needs_review").
	ProviderStatus string
	// Type is the event Persona sends on entering that status (needs_review:
	// inquiry.marked-for-review): the type of the event reconciliation appends.
	Type domain.EventType
	// Status is the common status, by domain.ProviderPersona.Classify(Type, ProviderStatus).
	Status domain.Status
	// UpdatedAt is the latest of the inquiry's own times (updated-at, decisioned-at,
	// completed-at, failed-at, expired-at, started-at, created-at); zero when none parses.
	UpdatedAt time.Time
	// ExternalUserID is the inquiry's reference-id, "" when it has none.
	ExternalUserID domain.ExternalUserID
}

// statusEvents maps the inquiry statuses Persona documents to the event of each
// (https://docs.withpersona.com/docs/models-lifecycle).
func statusEvents() map[string]domain.EventType {
	return map[string]domain.EventType{
		"created":      "inquiry.created",
		"pending":      "inquiry.started",
		"completed":    "inquiry.completed",
		"failed":       "inquiry.failed",
		"expired":      "inquiry.expired",
		"needs_review": "inquiry.marked-for-review",
		"approved":     "inquiry.approved",
		"declined":     "inquiry.declined",
	}
}

// inquiryTimes are the inquiry's own times UpdatedAt is the latest of.
func inquiryTimes() []member {
	return []member{"updated-at", "decisioned-at", "completed-at", "failed-at", "expired-at", "started-at", "created-at"}
}

// ParseInquiry reads the answer of GET /api/v1/inquiries/{inquiry-id} for the inquiry
// asked about: data, whose type is inquiry and whose id is that inquiry's, and its
// attributes status, reference-id and times (in any of Persona's key inflections).
//
// Errors: KindInvalid (CodeMalformedPayload) for a body that is not one JSON object or
// repeats a member read here; KindUnprocessable (CodeInvalidPayload) for an answer about
// another inquiry or another kind of object, a status Persona does not document, or a
// member of the wrong type. Nothing of such an answer may be appended.
func ParseInquiry(want domain.ApplicantID, body []byte) (InquiryStatus, error) {
	const op = "persona.ParseInquiry"
	st, err := readInquiry(want, body)
	if err != nil {
		return InquiryStatus{}, refusal(op, err)
	}
	return st, nil
}

func readInquiry(want domain.ApplicantID, body []byte) (InquiryStatus, error) {
	top, err := split("body", body, mData)
	if err != nil {
		return InquiryStatus{}, err
	}
	data, ok, err := top.child(mData, mType, mID, mAttributes)
	if err != nil || !ok {
		return InquiryStatus{}, orMissing(err, "data")
	}
	switch typ, err := data.str(mType); {
	case err != nil:
		return InquiryStatus{}, err
	case typ != "" && typ != string(mInquiry):
		return InquiryStatus{}, fieldError{"data.type", "is not inquiry"}
	}
	switch id, err := data.str(mID); {
	case err != nil:
		return InquiryStatus{}, err
	case id != string(want):
		return InquiryStatus{}, fieldError{"data.id", "is not the inquiry asked about"}
	}
	attrs, ok, err := data.child(mAttributes, append([]member{mStatus, mReferenceID}, inquiryTimes()...)...)
	if err != nil || !ok {
		return InquiryStatus{}, orMissing(err, "data.attributes")
	}
	status, err := attrs.str(mStatus)
	if err != nil {
		return InquiryStatus{}, err
	}
	typ, ok := statusEvents()[status]
	if !ok {
		return InquiryStatus{}, fieldError{"data.attributes.status", "is missing or not a status Persona documents"}
	}
	ref, err := attrs.str(mReferenceID)
	if err == nil {
		err = checkText("data.attributes.reference-id", ref)
	}
	if err != nil {
		return InquiryStatus{}, err
	}
	st := InquiryStatus{ProviderStatus: status, Type: typ, ExternalUserID: domain.ExternalUserID(ref)}
	_, st.Status = domain.ProviderPersona.Classify(typ, status)
	for _, m := range inquiryTimes() {
		if raw, ok := attrs.get(m); ok {
			if t, ok := parseTime(raw); ok && t.After(st.UpdatedAt) {
				st.UpdatedAt = t
			}
		}
	}
	return st, nil
}
