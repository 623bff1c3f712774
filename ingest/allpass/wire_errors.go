package allpass

import (
	"errors"

	"github.com/kycstate/kycstate/domain"
)

// Stable error codes of the wire format, as the HTTP layer puts them in
// {"error":{"code":...}} and the rejects stream records them. They never change meaning;
// new failures get new codes. Codes of failures outside the wire format (an unknown app,
// a body over the limit, a log that cannot confirm a write) belong to the layer that
// detects them (package ingest).
const (
	// CodeMalformedEnvelope: the body is not a valid envelope (not one UTF-8 JSON object,
	// `data` missing or empty, a field of the wrong type, nested too deep). 400.
	CodeMalformedEnvelope = "malformed_envelope"
	// CodeBadSignature: the x-allpass-signature header is missing or matches no key, the
	// GCM tag does not verify, or a MAC-verified ciphertext does not decrypt. One code for
	// all of them, so a caller learns nothing about which step failed. 401.
	CodeBadSignature = "bad_signature"
	// CodeMalformedPlaintext: the decrypted payload is not one UTF-8 JSON object, nests
	// deeper than 64 levels, or repeats a known field. 400.
	CodeMalformedPlaintext = "malformed_plaintext"
	// CodeInvalidPayload: the payload is JSON but a known field is missing or invalid
	// (id, appKey, type, externalUserId, stepName, warnings), or appKey is not this app's. 422.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidConfig: a key or app setting is unusable (ParseKey, ParseHMACKey,
	// App.Validate). Configuration, never a request's fault: Open on an app that fails
	// Validate is KindInternal (500) with this code.
	CodeInvalidConfig = "invalid_config"
)

// Error is the cause inside every error this package returns, under a domain.Error that
// carries the kind: a stable code and a message that is safe to show the caller. The
// message never holds a key, a signature or any plaintext.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Code returns the stable code this package attached to err, also when err was wrapped
// again since; "" when err carries none (nil, or an error made elsewhere).
func Code(err error) string {
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}

// fail builds a domain error of kind carrying code and a caller-safe message.
func fail(op string, kind domain.ErrorKind, code, msg string) error {
	return domain.E(op, kind, &Error{Code: code, Message: msg})
}

// errBadSignature is every authentication and decryption failure of Open and Decrypt. It
// is built once per call with the same text whatever failed (missing header, no MAC
// matched, tag mismatch, bad IV or padding), so neither message nor code is a padding
// oracle.
func errBadSignature() error {
	return fail("allpass.Open", domain.KindUnauthorized, CodeBadSignature,
		"signature does not verify or data does not decrypt with any configured key")
}
