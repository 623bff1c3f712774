package ingest

import (
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// Stable codes of the failures ingest detects outside the wire format; the wire format's
// own (allpass.CodeMalformedEnvelope and its siblings) come with its errors. Like those,
// they go into {"error":{"code":...}} and the rejects stream and never change meaning.
const (
	// CodeUnknownApp: no configured app matches the request. 404.
	CodeUnknownApp = "unknown_app"
	// CodeBodyTooLarge: the body is over the limit. 413.
	CodeBodyTooLarge = "body_too_large"
	// CodeUnavailable: the log could not confirm the write; retry. 503.
	CodeUnavailable = "unavailable"
	// CodeInternal: anything else.
	CodeInternal = "internal"
)

// Code returns the stable code of err: the code the wire format attached when it made
// the error (allpass.Code), else one derived from err's kind (domain.KindOf). nil gives "".
func Code(err error) string {
	if err == nil {
		return ""
	}
	if c := allpass.Code(err); c != "" {
		return c
	}
	switch domain.KindOf(err) {
	case domain.KindInvalid:
		return allpass.CodeMalformedEnvelope
	case domain.KindUnauthorized:
		return allpass.CodeBadSignature
	case domain.KindUnprocessable:
		return allpass.CodeInvalidPayload
	case domain.KindNotFound:
		return CodeUnknownApp
	case domain.KindTooLarge:
		return CodeBodyTooLarge
	case domain.KindUnavailable:
		return CodeUnavailable
	}
	return CodeInternal
}
