package allpass

import "github.com/kycstate/kycstate/domain"

// Stable error codes of the wire format: every refusal this package returns is a
// domain.Error with one of them (domain.CodeOf) and a message safe to show the caller,
// which never holds a key, a signature or any plaintext. The HTTP layer puts the code in
// {"error":{"code":...}} and the rejects stream records it. They never change meaning;
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

// errBadSignature is every authentication and decryption failure of Open and Decrypt. It
// is built once per call with the same text whatever failed (missing header, no MAC
// matched, tag mismatch, bad IV or padding), so neither message nor code is a padding
// oracle.
func errBadSignature() error {
	return domain.Public("allpass.Open", domain.KindUnauthorized, CodeBadSignature,
		"signature does not verify or data does not decrypt with any configured key")
}

// AuthenticatedError is how Open refuses a webhook whose MAC or tag verified and whose
// plaintext was then refused (CodeMalformedPlaintext, CodeInvalidPayload): the sender
// held the app's key, so the refusal is worth keeping whole under the app and the
// applicant it names (DESIGN.md section 15, "Rejects cannot be flooded away"), where a
// refusal no key authenticated is only sampled. Err is the refusal itself: its kind,
// code and message are the answer, as for any other error of Open.
type AuthenticatedError struct {
	AppKey      domain.AppKey      // the configured app whose key verified the webhook
	ApplicantID domain.ApplicantID // the payload's id when it is a valid one, else ""
	Err         error
}

func (e *AuthenticatedError) Error() string { return e.Err.Error() }
func (e *AuthenticatedError) Unwrap() error { return e.Err }
