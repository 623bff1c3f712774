package sumsub

import "github.com/kycstate/kycstate/domain"

// Stable error codes: every refusal this package returns is a domain.Error with one of
// them (domain.CodeOf) and a message safe to show the caller, which never holds a secret,
// a digest or any of the body's text. The HTTP layer puts the code in
// {"error":{"code":...}} and the rejects stream records it. They never change meaning; a
// new failure gets a new code. Every provider adapter uses the same four.
const (
	// CodeBadSignature: X-Payload-Digest is missing, names an algorithm Sumsub does not
	// use, or matches no configured secret. One code for all, so a caller learns nothing
	// about which check failed. 401.
	CodeBadSignature = "bad_signature"
	// CodeMalformedPayload: the verified body is not one UTF-8 JSON object, nests too
	// deep, or repeats a field this adapter reads. 400.
	CodeMalformedPayload = "malformed_payload"
	// CodeInvalidPayload: the body is JSON but a field this adapter reads is missing or
	// invalid (applicantId not subject-safe, type not printable ASCII, ...). 422.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidConfig: an App that cannot open webhooks (App.Validate). Configuration,
	// never a request's fault: Open on such an app is KindInternal (500).
	CodeInvalidConfig = "invalid_config"
)

// fail builds the refusal of kind with code and a caller-safe message.
func fail(op string, kind domain.ErrorKind, code, msg string) error {
	return domain.Public(op, kind, code, msg)
}
