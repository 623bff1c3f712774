// Package sumsub is the Sumsub adapter of DESIGN.md section 13: it verifies a webhook's
// X-Payload-Digest over the raw body, then parses, validates and names the event to store,
// and reads Sumsub's applicant API for reconciliation (App-Token request signing and the
// answer of GET /resources/applicants/{applicantId}/one).
//
// It is pure, like ingest/allpass: bytes and headers in, a domain.Event or an error with a
// stable code out, no net/http, no NATS, no clock. The invariants:
//   - The digest is checked, against every configured secret and in constant time, before
//     a byte of the body is parsed: a malformed body with a bad digest is 401, not 400.
//   - The stored payload is the body byte for byte; the event's fields are read from it,
//     never re-encoded.
//   - applicantId reaches a NATS subject only through domain.ParseProviderID.
//   - Refusals name the problem, never a secret, a digest or body text.
//
// What it follows, from Sumsub's public docs:
//   - https://docs.sumsub.com/docs/webhooks and https://docs.sumsub.com/docs/webhook-manager:
//     the secret key, the digest algorithm chosen per webhook (SHA256 by default, SHA512
//     on request), retries, and createdAtMs as the field to order statuses by.
//   - Sumsub's webhook schema (github.com/SUMSUB/agent-skills,
//     skills/sumsub-manage-webhooks/references/webhook-schema.md): X-Payload-Digest is the
//     hex HMAC of the raw body with the webhook's secret, X-Payload-Digest-Alg names it:
//     HMAC_SHA1_HEX (the legacy default), HMAC_SHA256_HEX or HMAC_SHA512_HEX.
//   - https://docs.sumsub.com/docs/user-verification-webhooks: the webhook types and the
//     payload fields (applicantId, externalUserId, type, reviewStatus, reviewResult,
//     correlationId "a unique identifier of the event", createdAtMs "yyyy-MM-dd
//     HH:mm:ss.fff" in UTC; none of them always present).
//   - https://docs.sumsub.com/docs/receive-and-interpret-results-via-api: reviewAnswer
//     GREEN or RED, reviewRejectType RETRY or FINAL, and the example payloads.
//   - https://docs.sumsub.com/reference/get-applicant-data and
//     https://docs.sumsub.com/reference/get-applicant-review-status: the applicant and its
//     review object, reviewStatus init, pending, prechecked, queued, completed, onHold.
//   - App-Token signing: github.com/SUMSUB/agent-skills, skills/sumsub-api-auth/SKILL.md
//     (after https://docs.sumsub.com/reference/authentication) and the Go example of
//     github.com/SumSubstance/AppTokenUsageExamples.
//
// Where they differ from DESIGN.md section 13, the docs win:
//   - createdAtMs is a date-time string in UTC ("2020-02-21 13:23:19.321"), not a number of
//     milliseconds; a number is still read as Unix milliseconds. Some payloads also carry
//     createdAt ("2023-03-14 12:50:27+0000"), used when createdAtMs is absent.
//   - The digest algorithm has no single default: the dashboard defaults to SHA256, the
//     API's schema calls SHA1 the legacy default. Without X-Payload-Digest-Alg the
//     algorithm is the one whose length the digest has (40, 64 or 128 hex digits).
//   - correlationId is not always present; without it the content id hashes the body.
//
// providerStatus is the review answer when the payload has one ("GREEN", and for RED the
// reject type after a '+': "RED+RETRY", "RED+FINAL"), else reviewStatus verbatim
// ("init", "pending", "onHold"); domain.ProviderSumsub.Classify maps it with the type.
package sumsub

import (
	"crypto/sha256"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
)

// Provider is the provider name written into every stored event.
const Provider = string(domain.ProviderSumsub)

// The headers a Sumsub webhook is signed with.
const (
	DigestHeader    = "X-Payload-Digest"
	DigestAlgHeader = "X-Payload-Digest-Alg"
)

// The digest algorithms Sumsub names in X-Payload-Digest-Alg.
const (
	AlgSHA1   = "HMAC_SHA1_HEX"
	AlgSHA256 = "HMAC_SHA256_HEX"
	AlgSHA512 = "HMAC_SHA512_HEX"
)

// Where a stored event's time came from (eventAtSource).
const (
	SourceCreatedAtMs = "payload.createdAtMs"
	SourceCreatedAt   = "payload.createdAt"
)

// App is one configured Sumsub app: the entry of `apps` with provider sumsub.
type App struct {
	// Name is the config entry's name: the <app> of kyc.events.sumsub.<app>.<id>.
	Name string
	// Secrets are the webhook's secret keys, the current one first, then previous ones
	// during a rotation; a digest that matches any of them verifies.
	Secrets [][]byte
}

// Validate reports whether a can open webhooks: its name is a subject token and it has
// at least one secret, none empty. Errors are KindInvalid (webhook.CodeInvalidConfig) and
// name the app, never a secret.
func (a *App) Validate() error { return webhook.CheckApp("sumsub.App.Validate", a.Name, a.Secrets) }

// Header is what Open reads of a request's headers; net/http's Header has Get.
type Header = webhook.Header

// Options of Open: KeepRaw keeps the raw body and the digest headers in the stored event.
type Options = webhook.Options

// Open verifies one webhook for app a and returns the event to store (Seq 0) and its
// content id (the Nats-Msg-Id). The digest is verified over the raw body, with every
// secret of a, before the body is parsed.
//
// Errors carry a kind and a code (domain.CodeOf, ingest/webhook's codes):
// KindUnauthorized (CodeBadSignature) for a missing or wrong digest; KindInvalid
// (CodeMalformedPayload) for a body that is not one JSON object; KindUnprocessable
// (CodeInvalidPayload) for a field this adapter reads that is missing or invalid;
// KindInternal (CodeInvalidConfig) for an app that fails Validate. Open keeps no state:
// it is safe for concurrent use.
func (a *App) Open(body []byte, h Header, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	var digest, alg string
	if h != nil {
		digest, alg = h.Get(DigestHeader), h.Get(DigestAlgHeader)
	}
	return webhook.Adapter{
		Op: "sumsub.Open", Provider: Provider, App: a.Name, Validate: a.Validate,
		Verify:     func(body []byte) bool { return a.verify(body, digest, alg) },
		Unverified: "X-Payload-Digest is missing or matches no configured secret",
		Parse:      parse,
	}.Open(body, rawSignature(digest, alg), receivedAt, opt)
}

// rawSignature is how the digest headers are kept with a stored event: the algorithm as
// received and the digest, space-separated, or the digest alone when no algorithm came.
func rawSignature(digest, alg string) string {
	if alg == "" {
		return digest
	}
	return alg + " " + digest
}

// ContentID is a delivery's content id (DESIGN.md section 15) and Nats-Msg-Id:
// domain.NewContentID over "sumsub", the app's name and Sumsub's event id
// (correlationId), which the digest covers. Without an event id ("") the whole raw body
// stands in for it, so a resend of the same bytes still collapses.
func ContentID(app, eventID string, body []byte) domain.ContentID {
	return webhook.ContentID(Provider, app, eventID, body)
}

// Sign signs body as Sumsub does with its default algorithm: the headers a webhook
// carries. It is for the simulator and the handler's tests; the vectors are made without
// it.
func Sign(secret, body []byte) map[string]string {
	return map[string]string{DigestHeader: webhook.SumHex(sha256.New, secret, body), DigestAlgHeader: AlgSHA256}
}
