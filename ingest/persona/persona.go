// Package persona is the Persona adapter of DESIGN.md section 13: it verifies a webhook's
// Persona-Signature over the raw body, then parses, validates and names the event to
// store, and reads Persona's inquiry API for reconciliation (the answer of GET
// /api/v1/inquiries/{inquiry-id}).
//
// It is pure, like ingest/allpass: bytes and headers in, a domain.Event or an error with a
// stable code out, no net/http, no NATS, no clock. The invariants:
//   - The signature is checked, against every configured secret, every t=,v1= set of the
//     header and in constant time, before a byte of the body is parsed: a malformed body
//     with a bad signature is 401, not 400.
//   - The stored payload is the body byte for byte; the event's fields are read from it,
//     never re-encoded.
//   - The applicant is the inquiry: its id (inq_...) reaches a NATS subject only through
//     domain.ParseProviderID.
//   - Refusals name the problem, never a secret, a signature or body text.
//
// What it follows, from Persona's public docs:
//   - https://docs.withpersona.com/docs/webhooks-best-practices: Persona-Signature holds
//     t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the webhook secret>;
//     while a secret rotates, two such sets, space-separated, either valid; the same event
//     may arrive twice; order events by data.attributes.created-at.
//   - https://docs.withpersona.com/docs/webhooks and
//     https://docs.withpersona.com/reference/serialization: the event is JSON:API,
//     data.type "event", data.id evt_..., data.attributes.name (inquiry.approved, ...),
//     data.attributes.payload.data the inquiry (id inq_..., attributes.status,
//     reference-id).
//   - https://docs.withpersona.com/docs/models-lifecycle: the inquiry statuses and the
//     event of each.
//   - https://docs.withpersona.com/reference/key-inflection: a webhook's keys are
//     inflected as its settings say: kebab-case by default, or camelCase, or snake_case.
//   - https://docs.withpersona.com/2021-05-14/api-reference/inquiries/retrieve-an-inquiry:
//     GET /api/v1/inquiries/{inquiry-id} with a Bearer API key answers the inquiry as
//     data.
//
// Where they differ from DESIGN.md section 13, the docs win:
//   - The event's time is data.attributes.created-at, the event's own (the docs' order
//     field), not the inquiry's created-at.
//   - Persona also sends inquiry.failed (status failed); the domain table maps it.
//   - Keys may come camelCase or snake_case: reference-id, created-at and the like are
//     read in all three inflections (a member given in two of them is refused).
//   - The docs ask for no tolerance on t, so none is enforced here (the shared ingest
//     path bounds event times for every provider); t is signed, so it cannot be moved.
//   - An event whose payload is not the inquiry (verification.*, say) names its inquiry
//     under payload.data.relationships.inquiry; one that names none is refused (422):
//     there is no applicant to file it under.
//
// providerStatus is the inquiry's status verbatim when the payload is the inquiry
// ("approved", "needs_review"), else "". domain.ProviderPersona.Classify maps the event's
// name.
package persona

import (
	"crypto/sha256"
	"strconv"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// Provider is the provider name written into every stored event.
const Provider = string(domain.ProviderPersona)

// SignatureHeader is the header a Persona webhook is signed with.
const SignatureHeader = "Persona-Signature"

// SourceCreatedAt is the eventAtSource of an event dated by its data.attributes.created-at.
const SourceCreatedAt = "payload.data.attributes.created-at"

// App is one configured Persona app: the entry of `apps` with provider persona.
type App struct {
	// Name is the config entry's name: the <app> of kyc.events.persona.<app>.<id>.
	Name string
	// Secrets are the webhook's secrets, the current one first, then previous ones during
	// a rotation; a signature that matches any of them verifies.
	Secrets [][]byte
}

// Validate reports whether a can open webhooks: its name is a subject token and it has
// at least one secret, none empty. Errors are KindInvalid (webhook.CodeInvalidConfig) and
// name the app, never a secret.
func (a *App) Validate() error { return webhook.CheckApp("persona.App.Validate", a.Name, a.Secrets) }

// Header is what Open reads of a request's headers; net/http's Header has Get.
type Header = webhook.Header

// Options of Open: KeepRaw keeps the raw body and Persona-Signature in the stored event.
type Options = webhook.Options

// Open verifies one webhook for app a and returns the event to store (Seq 0) and its
// content id (the Nats-Msg-Id). The signature is verified over the raw body, with every
// secret of a, before the body is parsed.
//
// Errors carry a kind and a code (domain.CodeOf, ingest/webhook's codes):
// KindUnauthorized (CodeBadSignature) for a missing or wrong signature; KindInvalid
// (CodeMalformedPayload) for a body that is not one JSON object; KindUnprocessable
// (CodeInvalidPayload) for a member this adapter reads that is missing or invalid;
// KindInternal (CodeInvalidConfig) for an app that fails Validate. Open keeps no state:
// it is safe for concurrent use.
func (a *App) Open(body []byte, h Header, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	var sig string
	if h != nil {
		sig = h.Get(SignatureHeader)
	}
	return webhook.Adapter{
		Op: "persona.Open", Provider: Provider, App: a.Name, Validate: a.Validate,
		Verify:     func(body []byte) bool { return a.verify(body, sig) },
		Unverified: "Persona-Signature is missing or matches no configured secret",
		Parse:      parse,
	}.Open(body, sig, receivedAt, opt)
}

// ContentID is a delivery's content id (DESIGN.md section 15) and Nats-Msg-Id:
// domain.NewContentID over "persona", the app's name and Persona's event id (data.id,
// evt_...), which the signature covers. Without an event id ("") the whole raw body
// stands in for it, so a resend of the same bytes still collapses. Persona signs each
// attempt with its own t, so the body, not the header, is what a resend repeats.
func ContentID(app, eventID string, body []byte) domain.ContentID {
	return webhook.ContentID(Provider, app, eventID, body)
}

// Sign signs body as Persona does at time t: the header a webhook carries. It is for the
// simulator and the handler's tests; the vectors are made without it.
func Sign(secret, body []byte, t time.Time) map[string]string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return map[string]string{SignatureHeader: "t=" + ts + ",v1=" + webhook.SumHex(sha256.New, secret, signed(ts, body)...)}
}

// signed is what Persona signs at time t: "<t>.<body>", in parts (see webhook.Sum).
func signed(t string, body []byte) [][]byte { return [][]byte{[]byte(t), []byte("."), body} }
