// Package onfido is Onfido's webhook format (DESIGN.md section 13): it authenticates a
// webhook as Onfido signs it, reads the workflow run it is about, and names the event to
// store.
//
// It is pure: bytes and headers in, a domain.Event or an error with a stable code out. It
// imports no net/http and no NATS, so the webhook handler, the rejects reprocessor, the
// simulator and the tests share one implementation.
//
// Invariants:
//   - Nothing of the body is read before X-SHA2-Signature, the hex HMAC-SHA256 of the raw
//     body under the webhook's token, matches one of the app's secrets (current first,
//     then the previous ones: rotation), compared in constant time. A malformed body with
//     a bad signature is 401.
//   - An applicant is a workflow run: its id is the run's (payload.object.id of a
//     workflow_run event, the workflow_run_id a task, timeline file or evidence folder
//     event names), refused unless it is a subject token (domain.ParseProviderID).
//     Events about no workflow run (checks, reports, audit logs, watchlist monitors) are
//     refused (422): the rejects stream keeps them.
//   - The event's content id (its Nats-Msg-Id) is a hash of "onfido", the app and the raw
//     body: Onfido's webhooks carry no event id.
//   - Messages never hold a secret, a signature or any of the body's text.
//
// Onfido's public documentation, as followed here:
//   - https://documentation.onfido.com/api/latest/#webhooks: webhooks are signed with the
//     token returned when the webhook is registered; X-SHA2-Signature is the hex
//     HMAC-SHA256 of the raw body.
//   - Onfido's API specification, https://github.com/onfido/onfido-openapi-spec:
//     schemas/webhooks/webhook_event.yaml (the body, {"payload":{"resource_type","action",
//     "object":{"id","status","started_at_iso8601","completed_at_iso8601","href"},
//     "resource":{"applicant_id","workflow_run_id","customer_user_id",...}}}),
//     schemas/webhooks/definitions.yaml (the event types and object statuses) and
//     schemas/workflow_runs/definitions.yaml (a run's statuses: processing,
//     awaiting_input, awaiting_client_input, approved, declined, review, abandoned, error).
//   - Onfido's client libraries verify a webhook the same way (the webhook event verifier
//     templates of that repository), and github.com/onfido/onfido-node publishes two signed
//     examples (test/studio-webhook-event-verifier.test.ts and
//     test/classic-webhook-event-verifier.test.ts), which testdata/vectors.json includes.
//
// Where the docs and DESIGN.md section 13 differ, this package follows the docs:
//   - A run's statuses include awaiting_client_input and error, which section 13 does not
//     list (domain makes them ON_HOLD and an annotation).
//   - Onfido notifies a run only when it completes (workflow_run.completed); its tasks
//     (workflow_task.started, workflow_task.completed) arrive as events of their own,
//     about the run named by their workflow_run_id, and keep the task's status
//     (started, completed) as providerStatus.
//   - The externalUserId is the run's customer_user_id (payload.resource), which
//     section 13 leaves open; applicant_id stays in the payload.
package onfido

import (
	"crypto/sha256"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// Provider is the provider name written into every stored event.
const Provider = string(domain.ProviderOnfido)

// HeaderSignature carries the hex HMAC-SHA256 of the raw body under the webhook's token.
const HeaderSignature = "X-SHA2-Signature"

// App is one configured Onfido webhook.
type App struct {
	// Name is the config entry's name: the <app> of kyc.events.onfido.<app>.<id>.
	Name string
	// Secrets are the webhook's token (webhook_secret) first, then
	// previous_webhook_secrets, tried in order.
	Secrets [][]byte
}

// Validate reports whether a can open webhooks: its name is a subject token and it has at
// least one secret, none empty. Errors are KindInvalid (webhook.CodeInvalidConfig) and
// name the app, never a secret.
func (a *App) Validate() error { return webhook.CheckApp("onfido.App.Validate", a.Name, a.Secrets) }

// Header is what Open reads of a request's headers; net/http's Header has Get.
type Header = webhook.Header

// Options of Open: KeepRaw keeps the raw body and X-SHA2-Signature in the stored event.
type Options = webhook.Options

// Open authenticates one webhook for app a, then parses it and names the event. It
// returns the event to store (Seq 0) and its content id, the Nats-Msg-Id.
//
// Errors carry a kind and a code (domain.CodeOf, ingest/webhook's codes):
// KindUnauthorized, CodeBadSignature; KindInvalid, CodeMalformedPayload (not one JSON
// object, too deep, a member read twice); KindUnprocessable, CodeInvalidPayload (a member
// missing or invalid, no workflow run). An app that fails Validate is KindInternal. Open
// keeps no state: it is safe for concurrent use.
func (a *App) Open(body []byte, h Header, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	signature := h.Get(HeaderSignature)
	return webhook.Adapter{
		Op: "onfido.Open", Provider: Provider, App: a.Name, Validate: a.Validate,
		Verify:     func(body []byte) bool { return webhook.VerifyHex(sha256.New, a.Secrets, signature, body) },
		Unverified: "X-SHA2-Signature matches no configured secret",
		Parse:      parseWebhook,
	}.Open(body, signature, receivedAt, opt)
}

// Sign signs body as Onfido signs a webhook: X-SHA2-Signature, the lower-case hex
// HMAC-SHA256 of the body under the webhook's token. For the simulator and the handler's
// tests; the vectors are made without it.
func Sign(secret, body []byte) map[string]string {
	return map[string]string{HeaderSignature: webhook.SumHex(sha256.New, secret, body)}
}

// ContentID is a webhook's content id (DESIGN.md section 15) and Nats-Msg-Id:
// domain.NewContentID over "onfido", the app's name and the raw body, the bytes the signature
// authenticates. Onfido's webhooks carry no event id, so a retried delivery (the same
// bytes) has the same id, replayed an hour or a year later too, and anything Onfido
// changed in a new one makes a new event.
func ContentID(app string, body []byte) domain.ContentID {
	return domain.NewContentID(Provider, app, body)
}
