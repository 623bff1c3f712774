// Package ingest turns Allpass webhooks into events on the log: the wire format
// (envelope, keys, AES-256-CBC + HMAC-SHA256, AES-256-GCM), payload validation, and the
// HTTP handler that answers 200 only once the log has the event.
package ingest

import (
	"time"

	"github.com/kycstate/kycstate/domain"
)

// Method is an Allpass encryption method.
type Method string

const (
	MethodCBC Method = "aes-256-cbc"
	MethodGCM Method = "aes-256-gcm"
)

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

// ParseKey parses a secret given as 64 hex characters or base64 of 32 bytes. Errors name
// the app and the config key (field), never the value.
func ParseKey(app, field, s string) ([32]byte, error) { panic("TODO") }

// Envelope is the webhook body: {"status":true,"statusCode":200,"data":"...","time":"..."}.
type Envelope struct {
	Status     bool   `json:"status"`
	StatusCode int    `json:"statusCode"`
	Data       string `json:"data"`
	Time       string `json:"time"`
}

// ParseEnvelope parses and checks a body. Errors are KindInvalid.
func ParseEnvelope(body []byte) (Envelope, error) { panic("TODO") }

// Options of Open.
type Options struct {
	KeepRaw bool // keep the raw body and signature in the stored event (default on)
}

// Open verifies and decrypts one webhook for app a and validates its payload. The MAC or
// tag is checked before any decryption. On success it returns the event to store (Seq 0)
// and its Nats-Msg-Id. Errors carry a kind: KindInvalid (envelope or plaintext JSON),
// KindUnauthorized (signature, tag or decryption; MAC and padding failures are the same
// error), KindUnprocessable (payload fields).
func (a *App) Open(body []byte, signature string, receivedAt time.Time, opt Options) (domain.Event, string, error) {
	panic("TODO")
}

// MsgID is the Nats-Msg-Id of a delivery: hex SHA-256 over appKey, plaintext and the
// envelope time, so retries of one delivery collapse and a repeated event does not.
func MsgID(app domain.AppKey, plaintext []byte, envelopeTime string) string { panic("TODO") }
