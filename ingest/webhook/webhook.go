// Package webhook is what the provider adapters (ingest/sumsub, ingest/persona,
// ingest/veriff, ingest/onfido) do the same way, so that each adapter holds only its
// provider's wire format: which header carries the signature and over what, where the
// applicant, the event's name and its time stand in the body, and what the docs say.
//
// The invariants it keeps for all of them:
//   - A signature is an HMAC over the raw bytes, checked against every configured secret
//     (the current one first, then those of a rotation) and every signature given, each
//     compare in constant time and none skipped once one matched: the time taken says
//     nothing about which secret matched or how much of a signature was right.
//   - A refusal is a domain.Error with one of four stable codes (the same in every
//     adapter) and a message that names the problem and the member's path in the body,
//     never a secret, a signature or any of the body's text.
//   - A stored event's payload is the body byte for byte, copied: the caller may reuse
//     its buffer.
//
// It is pure, as the adapters are: domain, internal/jsonscan and the standard library;
// no net/http, no NATS, no clock.
package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// Stable error codes: every refusal of a provider adapter carries one of them
// (domain.CodeOf) and a message safe to show the caller. The HTTP layer puts the code in
// {"error":{"code":...}} and the rejects stream records it. They never change meaning; a
// new failure gets a new code.
const (
	// CodeBadSignature: the signature is missing, malformed, or matches no configured
	// secret (Veriff: or X-AUTH-CLIENT is not the app's API key). One code for all, so a
	// caller learns nothing about which check failed. KindUnauthorized, 401.
	CodeBadSignature = "bad_signature"
	// CodeMalformedPayload: the verified body is not one UTF-8 JSON object, nests too
	// deep, or repeats a member the adapter reads. KindInvalid, 400.
	CodeMalformedPayload = "malformed_payload"
	// CodeInvalidPayload: the body is JSON but a member the adapter reads is missing or
	// invalid (an id that is not subject-safe, a name that is not printable ASCII, ...).
	// KindUnprocessable, 422.
	CodeInvalidPayload = "invalid_payload"
	// CodeInvalidConfig: an app that cannot open webhooks (App.Validate). Configuration,
	// never a request's fault: Open on such an app is KindInternal (500).
	CodeInvalidConfig = "invalid_config"
)

// Header is what an adapter's Open reads of a request's headers; net/http's Header has
// Get.
type Header interface{ Get(name string) string }

// Options of an adapter's Open.
type Options struct {
	KeepRaw bool // keep the raw body and the signature header(s) as received in the event
}

// CheckApp is the part of App.Validate every adapter shares: the app's name is a subject
// token (the <app> of kyc.events.<provider>.<app>.<id>) and it has at least one secret,
// none empty. Errors are InvalidConfig refusals that name the app, never a secret.
func CheckApp(op, name string, secrets [][]byte) error {
	if !domain.IsSubjectToken(name) {
		return InvalidConfig(op, name, "the name is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	if len(secrets) == 0 {
		return InvalidConfig(op, name, "no webhook_secret")
	}
	for i, s := range secrets {
		if len(s) == 0 {
			return InvalidConfig(op, name, fmt.Sprintf("webhook secret %d is empty", i))
		}
	}
	return nil
}

// InvalidConfig is the refusal of an app that cannot open webhooks: KindInvalid,
// CodeInvalidConfig, "app <name>: <problem>".
func InvalidConfig(op, app, problem string) error {
	return domain.Public(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: %s", app, problem))
}

// BadSignature is the refusal of a webhook that does not authenticate: KindUnauthorized,
// CodeBadSignature. msg is the same whatever failed.
func BadSignature(op, msg string) error {
	return domain.Public(op, domain.KindUnauthorized, CodeBadSignature, msg)
}

// Malformed is the refusal of input that is not what can be read at all (not one JSON
// object, too deep, a member twice): KindInvalid, CodeMalformedPayload. what names the
// part ("body", "reviewResult") and err is one of jsonscan.Object's, which quote nothing
// of the input.
func Malformed(op, what string, err error) error {
	return domain.Public(op, domain.KindInvalid, CodeMalformedPayload, what+" "+err.Error())
}

// Invalid is the refusal of a member that is missing or invalid: KindUnprocessable,
// CodeInvalidPayload, "<path> <problem>".
func Invalid(op, path, problem string) error {
	return domain.Public(op, domain.KindUnprocessable, CodeInvalidPayload, path+" "+problem)
}

// NewEvent is the event a verified webhook of provider starts as: the stored version,
// the origin, the body as its payload (a copy), and receivedAt (UTC) as its time until
// the adapter finds the provider's own. The adapter adds what it reads of the body.
func NewEvent(provider string, body []byte, receivedAt time.Time) domain.Event {
	return domain.Event{
		V:             domain.StoredVersion,
		Provider:      provider,
		Origin:        domain.OriginWebhook,
		ReceivedAt:    receivedAt.UTC(),
		EventAt:       receivedAt.UTC(),
		EventAtSource: domain.SourceReceived,
		Payload:       json.RawMessage(bytes.Clone(body)),
	}
}

// Adapter is one provider adapter's part of opening a webhook; Open runs the parts in
// the order the contract fixes for every provider.
type Adapter struct {
	// Op names the adapter's Open in its errors ("onfido.Open").
	Op string
	// Provider is the provider's name: the event's and the content id's first field.
	Provider string
	// App is the configured app's name, and Validate checks its configuration.
	App      string
	Validate func() error
	// Verify reports whether the request's signature authenticates the raw body; every
	// failure is refused with the one message Unverified.
	Verify     func(body []byte) bool
	Unverified string
	// Parse reads a verified body: the event, without the app, and the provider's event
	// id ("" when the body has none; the content id then hashes the body).
	Parse func(body []byte, receivedAt time.Time) (domain.Event, string, error)
}

// Open opens one webhook: the app's configuration first (an error is KindInternal: the
// service's fault, not the caller's), then the signature over the raw body, and only
// then the body, so a malformed body with a bad signature is 401, never 400. It returns
// the event to store, with the app's key, its content id (ContentID) and, with
// opt.KeepRaw, the body and signature, the signature header(s) as received; and the
// content id again, as the Nats-Msg-Id. Errors are a.Validate's, BadSignature, and
// a.Parse's refusals.
func (a Adapter) Open(body []byte, signature string, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	if err := a.Validate(); err != nil {
		return domain.Event{}, "", domain.E(a.Op, domain.KindInternal, err)
	}
	if !a.Verify(body) {
		return domain.Event{}, "", BadSignature(a.Op, a.Unverified)
	}
	ev, eventID, err := a.Parse(body, receivedAt)
	if err != nil {
		return domain.Event{}, "", err
	}
	ev.AppKey = domain.AppKey(a.App)
	ev.ContentID = ContentID(a.Provider, a.App, eventID, body)
	if opt.KeepRaw {
		ev.Raw = &domain.Raw{Body: string(body), Signature: signature}
	}
	return ev, string(ev.ContentID), nil
}

// ContentID is a delivery's content id (DESIGN.md section 15): domain.NewContentID over
// the provider, the app's name and the provider's event id, which the signature covers.
// Without an event id ("") the whole raw body stands in for it, so a resend of the same
// bytes still collapses.
func ContentID(provider, app, eventID string, body []byte) domain.ContentID {
	if eventID == "" {
		return domain.NewContentID(provider, app, body)
	}
	return domain.NewContentID(provider, app, []byte(eventID))
}
