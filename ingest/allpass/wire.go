// Package allpass is the Allpass wire format (DESIGN.md section 2): the envelope, an
// app's keys and their generations, AES-256-CBC + HMAC-SHA256 and AES-256-GCM
// verification and decryption, payload validation, the Nats-Msg-Id of a delivery, and
// Seal, which encrypts exactly as Allpass does, for the simulator and tests.
//
// It is pure: bytes in, a domain.Event or an error with a stable code out. It imports no
// net/http and no NATS, so the webhook handler and the rejects reprocessor (package
// ingest), the simulator and the tests share one implementation without pulling in a
// server. Another provider's format would be a sibling package, ingest/<provider>, with
// the same shape.
//
// It verifies before it decrypts: no byte of a ciphertext is decrypted until the HMAC
// (or the GCM tag) over it has verified, in constant time, and a bad signature, tag or
// padding fails with one code, so a sender learns nothing about which step failed.
//
// Allpass's Open API responses (DESIGN.md section 10) belong here too: they come in the
// same envelope, and an encrypted `data` is sealed exactly as a webhook's, so App.Decrypt
// opens it on its own, without reading the plaintext as a webhook payload.
package allpass

import (
	"fmt"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// Method is an Allpass encryption method.
type Method string

const (
	MethodCBC Method = "aes-256-cbc"
	MethodGCM Method = "aes-256-gcm"
)

// Provider is the provider name written into every stored event.
const Provider = "allpass"

// SignatureHeader is the HTTP header that carries the HMAC (CBC) or the auth tag (GCM),
// in the lower-case form it is kept in with a reject.
const SignatureHeader = "x-allpass-signature"

// Keys is one generation of an app's secrets.
type Keys struct {
	Secret [32]byte // AES-256 key
	HMAC   []byte   // HMAC-SHA256 key (CBC only)
}

// App is one configured Allpass application.
type App struct {
	Name   string
	AppKey domain.AppKey
	Method Method
	// Keys, current first, then previous generations (key rotation).
	Keys []Keys
}

// Validate reports whether a can open webhooks: its AppKey is a UUID, its method is
// known, it has at least one key generation, and (for CBC) every generation has an HMAC
// key. Errors are KindInvalid and name the app, never a secret.
func (a *App) Validate() error {
	const op = "allpass.App.Validate"
	if _, err := domain.ParseAppKey(string(a.AppKey)); err != nil {
		return domain.Public(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: app_key is not a UUID", a.Name))
	}
	if a.Method != MethodCBC && a.Method != MethodGCM {
		return domain.Public(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: method must be %s or %s", a.Name, MethodCBC, MethodGCM))
	}
	if len(a.Keys) == 0 {
		return domain.Public(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: no keys", a.Name))
	}
	if a.Method == MethodCBC {
		for i, k := range a.Keys {
			if len(k.HMAC) == 0 {
				return domain.Public(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: key generation %d has no hmac_key (required for %s)", a.Name, i, MethodCBC))
			}
		}
	}
	return nil
}

// ParseKey parses a secret given as 64 hex characters or base64 of 32 bytes. Errors name
// the app and the config key (field), never the value.
func ParseKey(app, field, s string) ([32]byte, error) {
	var k [32]byte
	b, err := parseKeyBytes("allpass.ParseKey", app, field, s)
	if err != nil {
		return k, err
	}
	copy(k[:], b)
	return k, nil
}

// Envelope is the webhook body: {"status":true,"statusCode":200,"data":"...","time":"..."}.
type Envelope struct {
	Status     bool   `json:"status"`
	StatusCode int    `json:"statusCode"`
	Data       string `json:"data"`
	Time       string `json:"time"`
}

// ParseEnvelope parses and checks a body. Errors are KindInvalid.
//
// The body must be one UTF-8 JSON object and nothing after it; `data` must be a non-empty
// string; `time`, `status` and `statusCode`, when present and not null, must be a string,
// a boolean and an integer. Unknown fields are allowed (Allpass may add some) but the
// envelope may nest at most envelopeMaxDepth levels, and no known field may appear twice.
func ParseEnvelope(body []byte) (Envelope, error) { return parseEnvelope(body) }

// Options of Open.
type Options struct {
	KeepRaw bool // keep the raw body and signature in the stored event (default on)
}

// Open verifies and decrypts one webhook for app a and validates its payload. The MAC or
// tag is checked before any decryption. On success it returns the event to store (Seq 0)
// and its Nats-Msg-Id. Errors carry a kind: KindInvalid (envelope or plaintext JSON),
// KindUnauthorized (signature, tag or decryption; MAC and padding failures are the same
// error), KindUnprocessable (payload fields).
//
// Every key generation in a.Keys is tried, current first. An app that fails Validate is
// a configuration bug: KindInternal. Error messages name the problem only; they never
// hold a key, the signature or any plaintext; each error's stable code (domain.CodeOf)
// is what the HTTP layer answers and the rejects stream records. Open keeps no state: it is safe for concurrent use.
func (a *App) Open(body []byte, signature string, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	return a.open(body, signature, receivedAt, opt, decryptCBC)
}

// open is Open with the CBC decryption step passed in, so that a test can count the calls
// that reach it and prove that the MAC is checked first. Production passes decryptCBC.
func (a *App) open(body []byte, signature string, receivedAt time.Time, opt Options, dec cbcDecrypter) (domain.Event, string, error) {
	const op = "allpass.Open"
	if err := a.Validate(); err != nil {
		return domain.Event{}, "", domain.E(op, domain.KindInternal, err)
	}
	env, err := parseEnvelope(body)
	if err != nil {
		return domain.Event{}, "", err
	}
	plaintext, authenticated, err := a.decrypt(body, env.Data, signature, dec)
	if err != nil {
		return domain.Event{}, "", err
	}
	ev, err := parsePayload(a.AppKey, plaintext, env.Time, receivedAt)
	if err != nil {
		// Past the MAC: the refusal is of an authenticated webhook.
		return domain.Event{}, "", &AuthenticatedError{AppKey: a.AppKey, ApplicantID: ev.ApplicantID, Err: err}
	}
	if opt.KeepRaw {
		ev.Raw = &domain.Raw{Body: string(body), Signature: signature}
	}
	ev.ContentID = ContentID(ev.AppKey, authenticated)
	return ev, string(ev.ContentID), nil
}

// Decrypt authenticates and decrypts one data string sealed with a's method and keys,
// and returns the plaintext, not validated. body is the whole message data came in (a
// CBC MAC may cover the body rather than data alone); signature is the
// x-allpass-signature value. The MAC or tag is verified before anything is decrypted, and
// every key generation is tried, current first (see Open). Every authentication or
// decryption failure is the same KindUnauthorized error (CodeBadSignature); an app that
// fails Validate is KindInternal. Webhooks reach it through Open; other Allpass messages
// that carry a sealed data string (Open API responses) call it on its own.
func (a *App) Decrypt(body []byte, data, signature string) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, domain.E("allpass.Decrypt", domain.KindInternal, err)
	}
	pt, _, err := a.decrypt(body, data, signature, decryptCBC)
	return pt, err
}

// decrypt is Decrypt on an app already validated, with the CBC step passed in (see open).
// It also returns the bytes the MAC or tag authenticated (openCBC, openGCM).
func (a *App) decrypt(body []byte, data, signature string, dec cbcDecrypter) (plaintext, authenticated []byte, err error) {
	if a.Method == MethodCBC {
		return openCBC(a.Keys, body, data, signature, dec)
	}
	return openGCM(a.Keys, data, signature)
}

// ContentID is the content id of a webhook of app whose MAC or tag authenticated the
// bytes authenticated (DESIGN.md section 15): domain.NewContentID over "allpass", the
// lower-case appKey and those bytes. It is also the webhook's Nats-Msg-Id. What it covers
// is exactly what a signature covers, so a retry of one delivery, and a captured webhook
// replayed with another envelope time, have the original's id (the stream collapses one
// inside its duplicate window, the fold every one forever), while the same plaintext
// sealed again (a new IV) is a new event.
func ContentID(app domain.AppKey, authenticated []byte) domain.ContentID {
	return domain.NewContentID(Provider, strings.ToLower(string(app)), authenticated)
}
