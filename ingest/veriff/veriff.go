// Package veriff is Veriff's webhook format (DESIGN.md section 13): it authenticates a
// webhook as Veriff signs it, reads the session it is about, and names the event to
// store; and it signs and reads Veriff's status API for reconciliation.
//
// It is pure: bytes and headers in, a domain.Event or an error with a stable code out. It
// imports no net/http and no NATS, so the webhook handler, the rejects reprocessor, the
// simulator and the tests share one implementation.
//
// Invariants:
//   - Nothing of the body is read before X-AUTH-CLIENT equals the app's API key and
//     X-HMAC-SIGNATURE, the hex HMAC-SHA256 of the raw body under the shared secret,
//     matches one of the app's secrets (current first, then the previous ones: rotation);
//     both compares are constant-time. A malformed body with a bad signature is 401.
//   - An applicant is a Veriff session: its id is verification.id (decision webhook) or id
//     (event webhook), refused unless it is a subject token (domain.ParseProviderID).
//   - The event's content id (its Nats-Msg-Id) is a hash of "veriff", the app and the raw
//     body: neither webhook carries an event id of its own.
//   - Messages never hold a secret, a signature or any of the body's text.
//
// Veriff's public documentation, as followed here:
//   - https://devdocs.veriff.com/docs/webhooks-guide: the decision webhook (the outcome)
//     and the optional event webhook (the session's progress), each to its own URL.
//   - https://devdocs.veriff.com/docs/decision-webhook: the decision payload,
//     {"status":"success","verification":{"id","status","code","vendorData",
//     "decisionTime","acceptanceTime",...}}; sent when a decision is made
//     (resubmission_requested up to 5 minutes later).
//   - https://devdocs.veriff.com/docs/event-webhook: the event payload, {"id" (the session),
//     "attemptId","feature","code","action" ("started", "submitted"),"vendorData",...}; it
//     tells progress, never a decision.
//   - https://devdocs.veriff.com/docs/hmac-authentication-and-endpoint-security and
//     https://devdocs.veriff.com/docs/general-faq: X-HMAC-SIGNATURE is the hex HMAC-SHA256
//     under the shared secret key; a POST signs the body, a GET signs the session id.
//   - https://devdocs.veriff.com/docs/verification-session-status-codes-table: the
//     statuses Veriff notifies (started 7001, submitted 7002, approved 9001, declined 9102,
//     resubmission_requested 9103, expired and abandoned 9104, review 9121; never
//     created), in `action` of the event webhook and verification.status of the decision.
//   - https://devdocs.veriff.com/apidocs/v1sessionsiddecision-1: GET
//     /v1/sessions/{sessionId}/decision answers the decision webhook's shape, with
//     verification null while no decision is ready (its code list puts abandoned at 9121,
//     the status table at 9104: the codes are kept in the payload, never read).
//   - Veriff's own integration demo (github.com/Veriff/js-integration-demo, src/api.ts)
//     signs a GET with the hex HMAC-SHA256 of the session id, X-AUTH-CLIENT the API key.
//
// Where the docs and DESIGN.md section 13 differ, this package follows the docs:
//   - The decision webhook has no event name: it is stored with type "decision" and the
//     decision (verification.status) as providerStatus; an event webhook's type and
//     providerStatus are both its `action`.
//   - eventAt is verification.decisionTime, never acceptanceTime: the docs make that the
//     session's start, so a decision dated by it would sort before the session's own
//     events. An event webhook carries no time at all: its eventAt is the receive time.
//   - Neither webhook has an event id; the content id hashes the body.
package veriff

import (
	"crypto/sha256"
	"crypto/subtle"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// Provider is the provider name written into every stored event.
const Provider = string(domain.ProviderVeriff)

// The headers Veriff sends with every webhook (and that a status API request carries).
const (
	// HeaderAuthClient carries the integration's API key.
	HeaderAuthClient = "X-AUTH-CLIENT"
	// HeaderSignature carries the hex HMAC-SHA256 of the raw body (of the session id for
	// a GET) under the integration's shared secret key.
	HeaderSignature = "X-HMAC-SIGNATURE"
)

// App is one configured Veriff integration.
type App struct {
	// Name is the config entry's name: the <app> of kyc.events.veriff.<app>.<id>.
	Name string
	// APIKey is the integration's API key; a webhook's X-AUTH-CLIENT must equal it.
	APIKey string
	// Secrets are the shared secret key (webhook_secret) first, then
	// previous_webhook_secrets, tried in order.
	Secrets [][]byte
}

// Validate reports whether a can open webhooks: its name is a subject token, it has an
// API key and at least one secret, none empty. Errors are KindInvalid
// (webhook.CodeInvalidConfig) and name the app, never a secret.
func (a *App) Validate() error {
	const op = "veriff.App.Validate"
	if err := webhook.CheckApp(op, a.Name, a.Secrets); err != nil {
		return err
	}
	if a.APIKey == "" {
		return webhook.InvalidConfig(op, a.Name, "api_key is empty")
	}
	return nil
}

// Header is what Open reads of a request's headers; net/http's Header has Get.
type Header = webhook.Header

// Options of Open: KeepRaw keeps the raw body and X-HMAC-SIGNATURE in the stored event.
type Options = webhook.Options

// Open authenticates one webhook for app a, then parses it and names the event. It
// returns the event to store (Seq 0) and its content id, the Nats-Msg-Id.
//
// Errors carry a kind and a code (domain.CodeOf, ingest/webhook's codes):
// KindUnauthorized, CodeBadSignature (X-AUTH-CLIENT or X-HMAC-SIGNATURE); KindInvalid,
// CodeMalformedPayload (not one JSON object, too deep, a member read twice);
// KindUnprocessable, CodeInvalidPayload (a member missing or invalid). An app that fails
// Validate is KindInternal. Open keeps no state: it is safe for concurrent use.
func (a *App) Open(body []byte, h Header, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	signature := h.Get(HeaderSignature)
	return webhook.Adapter{
		Op: "veriff.Open", Provider: Provider, App: a.Name, Validate: a.Validate,
		Verify:     func(body []byte) bool { return a.authentic(body, h.Get(HeaderAuthClient), signature) },
		Unverified: "X-AUTH-CLIENT is not this app's API key or X-HMAC-SIGNATURE matches no configured secret",
		Parse:      parseWebhook,
	}.Open(body, signature, receivedAt, opt)
}

// authentic reports whether authClient is a's API key and signature the hex HMAC-SHA256 of
// body under one of a's secrets. Both are checked, whatever the first answered.
func (a *App) authentic(body []byte, authClient, signature string) bool {
	keyOK := subtle.ConstantTimeCompare([]byte(authClient), []byte(a.APIKey)) == 1
	macOK := webhook.VerifyHex(sha256.New, a.Secrets, signature, body)
	return keyOK && macOK
}

// Sign signs body as Veriff signs a webhook: X-HMAC-SIGNATURE, the lower-case hex
// HMAC-SHA256 of the body under secret. The caller adds X-AUTH-CLIENT (the app's API
// key). For the simulator and the handler's tests; the vectors are made without it.
func Sign(secret, body []byte) map[string]string {
	return map[string]string{HeaderSignature: webhook.SumHex(sha256.New, secret, body)}
}

// ContentID is a webhook's content id (DESIGN.md section 15) and Nats-Msg-Id:
// domain.NewContentID over "veriff", the app's name and the raw body, the bytes the signature
// authenticates. Veriff's webhooks carry no event id, so a retried delivery (the same
// bytes) has the same id, replayed an hour or a year later too, and anything Veriff
// changed in a new one makes a new event.
func ContentID(app string, body []byte) domain.ContentID {
	return domain.NewContentID(Provider, app, body)
}
