package onfido

// Stable error codes: every refusal this package returns is a domain.Error with one of them
// (domain.CodeOf) and a message safe to show the caller, which never holds a secret, a
// signature or any of the body's text. The HTTP layer puts the code in
// {"error":{"code":...}} and the rejects stream records it. They never change meaning; a
// new failure gets a new code.
const (
	// CodeBadSignature: X-SHA2-Signature is missing, not hex, or matches no configured
	// secret. 401.
	CodeBadSignature = "bad_signature"
	// CodeMalformedPayload: the body is not one JSON object in UTF-8, nests too deep, or
	// repeats a member the adapter reads. 400.
	CodeMalformedPayload = "malformed_payload"
	// CodeInvalidPayload: the body is JSON but a member the adapter needs is missing or
	// invalid, or the event is about no workflow run. 422.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidConfig: the app is unusable (App.Validate). Configuration, never a
	// request's fault: Open on such an app is KindInternal.
	CodeInvalidConfig = "invalid_config"
)
