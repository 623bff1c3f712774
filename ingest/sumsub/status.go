package sumsub

import (
	"crypto/sha256"
	"net/url"
	"strconv"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// The headers of Sumsub's App-Token authentication.
const (
	AppTokenHeader  = "X-App-Token"
	AccessTsHeader  = "X-App-Access-Ts"
	AccessSigHeader = "X-App-Access-Sig"
)

// ApplicantPath is the path (no host) of Sumsub's "get applicant data" for an applicant:
// GET /resources/applicants/{applicantId}/one.
func ApplicantPath(applicantID domain.ApplicantID) string {
	return "/resources/applicants/" + url.PathEscape(string(applicantID)) + "/one"
}

// SignRequest returns the App-Token headers of one request to Sumsub's API: the app
// token, the time in Unix seconds, and the hex HMAC-SHA256, under the token's secret key,
// of the time, the upper-case method, the path with its query and the body, joined with
// nothing between them. pathAndQuery starts with '/'; body is the exact bytes sent (nil
// for a GET). Sumsub refuses a time more than a minute off its clock, so ts is the time
// the request is sent.
func SignRequest(appToken string, secret []byte, ts time.Time, method, pathAndQuery string, body []byte) map[string]string {
	sec := strconv.FormatInt(ts.Unix(), 10)
	return map[string]string{
		AppTokenHeader:  appToken,
		AccessTsHeader:  sec,
		AccessSigHeader: webhook.SumHex(sha256.New, secret, []byte(sec), []byte(method), []byte(pathAndQuery), body),
	}
}

// ApplicantStatus is what Sumsub's applicant API says of one applicant, read the way a
// webhook is.
type ApplicantStatus struct {
	// ProviderStatus is as a webhook's: the review answer of a completed review ("GREEN",
	// "RED+RETRY", "RED+FINAL"), else review.reviewStatus verbatim.
	ProviderStatus string
	// Type is the webhook type that states this status (applicantPending for pending,
	// queued and prechecked, ...): the type of the event reconciliation appends.
	Type domain.EventType
	// Status is the common status, by domain.ProviderSumsub.Classify(Type, ProviderStatus).
	Status domain.Status
	// UpdatedAt is the latest time the review states (reviewDate, else startDate, else
	// createDate), else the applicant's createdAt; zero when none parses.
	UpdatedAt time.Time
	// ExternalUserID is the applicant's externalUserId, "" when it has none.
	ExternalUserID domain.ExternalUserID
}

// reviewTypes maps the review statuses Sumsub documents to the webhook type that states
// each. init is applicantCreated: after a reset Sumsub says init too, and the API cannot
// tell the two apart, so a reconciled reset reads INIT, not INCOMPLETE.
func reviewTypes() map[string]domain.EventType {
	return map[string]domain.EventType{
		"init":       "applicantCreated",
		"pending":    "applicantPending",
		"queued":     "applicantPending",
		"prechecked": "applicantPending",
		"onHold":     "applicantOnHold",
		"completed":  "applicantReviewed",
	}
}

// ParseApplicant reads the answer of GET /resources/applicants/{applicantId}/one for the
// applicant asked about: the applicant object, whose id must be that applicant's, and
// its review (reviewStatus, reviewResult, reviewDate, startDate, createDate).
//
// Errors: KindInvalid (CodeMalformedPayload) for a body that is not one JSON object or
// repeats a field read here; KindUnprocessable (CodeInvalidPayload) for an id that is not
// the one asked about, a review status Sumsub does not document, a completed review
// without an answer the status table names, or a field of the wrong type. Nothing of
// such an answer may be appended.
func ParseApplicant(want domain.ApplicantID, body []byte) (ApplicantStatus, error) {
	const op = "sumsub.ParseApplicant"
	top, err := webhook.ReadObject(op, "body", body, maxDepth, "id", fieldExternalUserID, fieldCreatedAt, "review")
	if err != nil {
		return ApplicantStatus{}, err
	}
	id, _, err := top.String("id")
	switch {
	case err != nil:
		return ApplicantStatus{}, err
	case id != string(want):
		return ApplicantStatus{}, top.Invalid("id", "is not the applicant asked about")
	}
	ext, err := top.Text(fieldExternalUserID, maxTextLen)
	if err != nil {
		return ApplicantStatus{}, err
	}
	review, err := top.RequiredObject("review", fieldReviewStatus, fieldReviewResult, "reviewDate", "startDate", "createDate")
	if err != nil {
		return ApplicantStatus{}, err
	}
	result, _, err := review.Object(fieldReviewResult, fieldReviewAnswer, fieldReviewRejectType)
	if err != nil {
		return ApplicantStatus{}, err
	}
	rs, _, err := review.String(fieldReviewStatus)
	if err != nil {
		return ApplicantStatus{}, err
	}
	typ, ok := reviewTypes()[rs]
	if !ok {
		return ApplicantStatus{}, review.Invalid(fieldReviewStatus, "is missing or not a status Sumsub documents")
	}
	st := ApplicantStatus{Type: typ, ProviderStatus: rs, ExternalUserID: domain.ExternalUserID(ext)}
	if rs == "completed" {
		// The answer alone: reviewStatus is "completed" whatever the answer was.
		if st.ProviderStatus, err = providerStatus(webhook.Object{}, result); err != nil {
			return ApplicantStatus{}, err
		}
	}
	class, status := domain.ProviderSumsub.Classify(st.Type, st.ProviderStatus)
	if class != domain.ClassStatus {
		return ApplicantStatus{}, review.Invalid(fieldReviewResult, "has no answer the status table names")
	}
	st.Status = status
	for _, f := range []struct {
		o    webhook.Object
		name string
	}{{review, "reviewDate"}, {review, "startDate"}, {review, "createDate"}, {top, fieldCreatedAt}} {
		if raw, ok := f.o.Raw(f.name); ok {
			if t, ok := parseTimeValue(raw); ok {
				st.UpdatedAt = t
				break
			}
		}
	}
	return st, nil
}
