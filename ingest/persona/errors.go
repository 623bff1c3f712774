package persona

import "github.com/kycstate/kycstate/domain"

// Stable error codes: every refusal this package returns is a domain.Error with one of
// them (domain.CodeOf) and a message safe to show the caller, which never holds a secret,
// a signature or any of the body's text. The HTTP layer puts the code in
// {"error":{"code":...}} and the rejects stream records it. They never change meaning; a
// new failure gets a new code. Every provider adapter uses the same four.
const (
	// CodeBadSignature: Persona-Signature is missing, holds no well-formed t=,v1= set, or
	// no set matches a configured secret. One code for all, so a caller learns nothing
	// about which check failed. 401.
	CodeBadSignature = "bad_signature"
	// CodeMalformedPayload: the verified body is not one UTF-8 JSON object, nests too
	// deep, or repeats a member this adapter reads. 400.
	CodeMalformedPayload = "malformed_payload"
	// CodeInvalidPayload: the body is JSON but a member this adapter reads is missing or
	// invalid (no inquiry id, an id not subject-safe, a name not printable ASCII, ...).
	// 422.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidConfig: an App that cannot open webhooks (App.Validate). Configuration,
	// never a request's fault: Open on such an app is KindInternal (500).
	CodeInvalidConfig = "invalid_config"
)

// fail builds the refusal of kind with code and a caller-safe message.
func fail(op string, kind domain.ErrorKind, code, msg string) error {
	return domain.Public(op, kind, code, msg)
}
