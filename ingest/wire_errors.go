package ingest

import (
	"errors"

	"github.com/kycstate/kycstate/domain"
)

// Stable error codes, as the HTTP layer puts them in {"error":{"code":...}} and the
// rejects stream records them. They never change meaning; new failures get new codes.
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
	// CodeUnknownApp: no configured app matches the request. 404.
	CodeUnknownApp = "unknown_app"
	// CodeBodyTooLarge: the body is over the limit. 413.
	CodeBodyTooLarge = "body_too_large"
	// CodeUnavailable: the log could not confirm the write; retry. 503.
	CodeUnavailable = "unavailable"
	// CodeInvalidConfig: a key or app setting is unusable (ParseKey, ParseHMACKey,
	// ParseAppKey, App.Validate). Configuration, never a request's fault: Open on an app
	// that fails Validate is KindInternal (500) with this code.
	CodeInvalidConfig = "invalid_config"
	// CodeInternal: anything else.
	CodeInternal = "internal"
)

// Code returns the stable code of err: the code the wire format attached when it made
// the error, else one derived from err's kind (domain.KindOf). nil gives "".
func Code(err error) string {
	if err == nil {
		return ""
	}
	var we *wireError
	if errors.As(err, &we) {
		return we.code
	}
	switch domain.KindOf(err) {
	case domain.KindInvalid:
		return CodeMalformedEnvelope
	case domain.KindUnauthorized:
		return CodeBadSignature
	case domain.KindUnprocessable:
		return CodeInvalidPayload
	case domain.KindNotFound:
		return CodeUnknownApp
	case domain.KindTooLarge:
		return CodeBodyTooLarge
	case domain.KindUnavailable:
		return CodeUnavailable
	}
	return CodeInternal
}

// wireError is the cause inside a domain.Error made by this package: a message that is
// safe to show the caller (no key, signature or plaintext) and its code.
type wireError struct {
	code string
	msg  string
}

func (e *wireError) Error() string { return e.msg }

// fail builds a domain error of kind carrying code and a caller-safe message.
func fail(op string, kind domain.ErrorKind, code, msg string) error {
	return domain.E(op, kind, &wireError{code: code, msg: msg})
}

// errBadSignature is every authentication and decryption failure of Open. It is built
// once per call with the same text whatever failed (missing header, no MAC matched,
// tag mismatch, bad IV or padding), so neither message nor code is a padding oracle.
func errBadSignature() error {
	return fail("ingest.Open", domain.KindUnauthorized, CodeBadSignature,
		"signature does not verify or data does not decrypt with any configured key")
}
