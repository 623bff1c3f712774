package veriff

import (
	"errors"

	"github.com/kycstate/kycstate/domain"
)

// Stable error codes, as the HTTP layer puts them in {"error":{"code":...}} and the rejects
// stream records them. They never change meaning; a new failure gets a new code.
const (
	// CodeBadSignature: X-AUTH-CLIENT is missing or is not the app's API key, or
	// X-HMAC-SIGNATURE is missing, not hex, or matches no configured secret. One code for
	// all of them, so a caller learns nothing about which check failed. 401.
	CodeBadSignature = "bad_signature"
	// CodeMalformedPayload: the body is not one JSON object in UTF-8, nests too deep, or
	// repeats a member the adapter reads. 400.
	CodeMalformedPayload = "malformed_payload"
	// CodeInvalidPayload: the body is JSON but a member the adapter needs is missing or
	// invalid (the session id not subject-safe, say). 422.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidConfig: the app is unusable (App.Validate). Configuration, never a
	// request's fault: Open on such an app is KindInternal.
	CodeInvalidConfig = "invalid_config"
)

// Error is the cause inside every error this package returns, under a domain.Error that
// carries the kind: a stable code and a message that is safe to show the caller. The
// message never holds a secret, a signature or any of the body's text.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Code returns the stable code this package attached to err, also when err was wrapped
// again since; "" when err carries none.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// fail builds a domain error of kind carrying code and a caller-safe message.
func fail(op string, kind domain.ErrorKind, code, msg string) error {
	return domain.E(op, kind, &Error{Code: code, Message: msg})
}
