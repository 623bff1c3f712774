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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/kycstate/kycstate/domain"
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
// at least one secret, none empty. Errors are KindInvalid (CodeInvalidConfig) and name the
// app, never a secret.
func (a *App) Validate() error {
	const op = "persona.App.Validate"
	if !domain.IsSubjectToken(a.Name) {
		return fail(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: the name is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", a.Name))
	}
	if len(a.Secrets) == 0 {
		return fail(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: no webhook secret", a.Name))
	}
	for i, s := range a.Secrets {
		if len(s) == 0 {
			return fail(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: webhook secret %d is empty", a.Name, i))
		}
	}
	return nil
}

// Header is what Open reads of a request's headers; net/http's Header has Get.
type Header interface{ Get(name string) string }

// Options of Open.
type Options struct {
	KeepRaw bool // keep the raw body and Persona-Signature in the stored event
}

// Open verifies one webhook for app a and returns the event to store (Seq 0) and its
// content id (the Nats-Msg-Id). The signature is verified over the raw body, with every
// secret of a, before the body is parsed.
//
// Errors carry a kind and a code (domain.CodeOf): KindUnauthorized (CodeBadSignature) for
// a missing or wrong signature; KindInvalid (CodeMalformedPayload) for a body that is not
// one JSON object; KindUnprocessable (CodeInvalidPayload) for a member this adapter reads
// that is missing or invalid; KindInternal (CodeInvalidConfig) for an app that fails
// Validate. Open keeps no state: it is safe for concurrent use.
func (a *App) Open(body []byte, h Header, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	if err := a.Validate(); err != nil {
		return domain.Event{}, "", domain.E("persona.Open", domain.KindInternal, err)
	}
	var sig string
	if h != nil {
		sig = h.Get(SignatureHeader)
	}
	if !a.verify(body, sig) {
		return domain.Event{}, "", errBadSignature()
	}
	ev, eventID, err := parse(body, receivedAt)
	if err != nil {
		return domain.Event{}, "", err
	}
	ev.AppKey = domain.AppKey(a.Name)
	if opt.KeepRaw {
		ev.Raw = &domain.Raw{Body: string(body), Signature: sig}
	}
	ev.ContentID = ContentID(a.Name, eventID, body)
	return ev, string(ev.ContentID), nil
}

// ContentID is a delivery's content id (DESIGN.md section 15) and Nats-Msg-Id:
// domain.NewContentID over "persona", the app's name and Persona's event id (data.id,
// evt_...), which the signature covers. Without an event id ("") the whole raw body
// stands in for it, so a resend of the same bytes still collapses. Persona signs each
// attempt with its own t, so the body, not the header, is what a resend repeats.
func ContentID(app, eventID string, body []byte) domain.ContentID {
	if eventID == "" {
		return domain.NewContentID(Provider, app, body)
	}
	return domain.NewContentID(Provider, app, []byte(eventID))
}

// Sign signs body as Persona does at time t: the header a webhook carries. It is for the
// simulator and the handler's tests; the vectors are made without it.
func Sign(secret, body []byte, t time.Time) map[string]string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return map[string]string{SignatureHeader: "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))}
}

// mac is Persona's signature: HMAC-SHA256 of "<t>.<body>".
func mac(secret []byte, t string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(t))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
