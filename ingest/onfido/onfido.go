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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
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
// least one secret, none empty. Errors are KindInvalid (CodeInvalidConfig) and name the
// app, never a secret.
func (a *App) Validate() error {
	bad := func(msg string) error {
		return domain.Public("onfido.App.Validate", domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: %s", a.Name, msg))
	}
	switch {
	case !domain.IsSubjectToken(a.Name):
		return bad("name is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	case len(a.Secrets) == 0:
		return bad("no webhook_secret")
	}
	for i, s := range a.Secrets {
		if len(s) == 0 {
			return bad(fmt.Sprintf("secret %d is empty", i))
		}
	}
	return nil
}

// Header is what Open reads of a request's headers; net/http's Header has Get.
type Header interface{ Get(name string) string }

// Options of Open.
type Options struct {
	KeepRaw bool // keep the raw body and the signature header in the stored event
}

// Open authenticates one webhook for app a, then parses it and names the event. It
// returns the event to store (Seq 0) and its content id, the Nats-Msg-Id.
//
// Errors carry a kind and a code (domain.CodeOf): KindUnauthorized, CodeBadSignature;
// KindInvalid, CodeMalformedPayload (not one JSON object, too deep, a member read twice);
// KindUnprocessable, CodeInvalidPayload (a member missing or invalid, no workflow run). An
// app that fails Validate is KindInternal. Open keeps no state: it is safe for concurrent
// use.
func (a *App) Open(body []byte, h Header, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	const op = "onfido.Open"
	if err := a.Validate(); err != nil {
		return domain.Event{}, "", domain.E(op, domain.KindInternal, err)
	}
	signature := h.Get(HeaderSignature)
	if !a.authentic(body, signature) {
		return domain.Event{}, "", domain.Public(op, domain.KindUnauthorized, CodeBadSignature,
			"X-SHA2-Signature matches no configured secret")
	}
	ev, err := parseWebhook(body, receivedAt)
	if err != nil {
		return domain.Event{}, "", err
	}
	ev.AppKey = domain.AppKey(a.Name)
	if opt.KeepRaw {
		ev.Raw = &domain.Raw{Body: string(body), Signature: signature}
	}
	ev.ContentID = ContentID(a.Name, body)
	return ev, string(ev.ContentID), nil
}

// authentic reports whether signature is the hex HMAC-SHA256 of body under one of a's
// secrets. Every secret is tried, whatever an earlier one answered.
func (a *App) authentic(body []byte, signature string) bool {
	given, err := hex.DecodeString(signature)
	if err != nil || len(given) != sha256.Size {
		return false
	}
	ok := false
	for _, s := range a.Secrets {
		if hmac.Equal(given, mac(s, body)) {
			ok = true
		}
	}
	return ok
}

// mac is the HMAC-SHA256 of msg under secret.
func mac(secret, msg []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(msg)
	return m.Sum(nil)
}

// Sign signs body as Onfido signs a webhook: X-SHA2-Signature, the lower-case hex
// HMAC-SHA256 of the body under the webhook's token. For the simulator and the handler's
// tests; the vectors are made without it.
func Sign(secret, body []byte) map[string]string {
	return map[string]string{HeaderSignature: hex.EncodeToString(mac(secret, body))}
}

// ContentID is a webhook's content id (DESIGN.md section 15) and Nats-Msg-Id:
// domain.NewContentID over "onfido", the app's name and the raw body, the bytes the signature
// authenticates. Onfido's webhooks carry no event id, so a retried delivery (the same
// bytes) has the same id, replayed an hour or a year later too, and anything Onfido
// changed in a new one makes a new event.
func ContentID(app string, body []byte) domain.ContentID {
	return domain.NewContentID(Provider, app, body)
}
