// Package vectorfile is the shape of a provider adapter's test vectors
// (ingest/<provider>/testdata/vectors.json): webhooks signed as the provider's docs say,
// each with the event the adapter must make of it or the code it must refuse it with.
// Each provider's generator (ingest/<provider>/testdata/gen) writes the file from the
// docs alone and the adapter's tests read it (ingest/webhook/webhooktest), so the
// adapter is held to an independent reading of the docs.
//
// It imports nothing of this module, so a generator that uses it stays independent of
// every adapter; its helpers compute what the docs describe (an HMAC, the content id of
// DESIGN.md section 15) with the standard library alone.
package vectorfile

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"unicode/utf8"
)

// File is one provider's vectors file.
type File struct {
	Comment string `json:"comment"`
	App     App    `json:"app"`
	// ReceivedAt is the receive time every case is opened at (RFC 3339).
	ReceivedAt string `json:"receivedAt"`
	Cases      []Case `json:"cases"`
}

// App is the configured app the cases are opened with.
type App struct {
	Name string `json:"name"`
	// APIKey is the key a provider sends beside the signature, if it sends one (Veriff's
	// X-AUTH-CLIENT).
	APIKey  string   `json:"apiKey,omitempty"`
	Secrets []string `json:"secrets"` // current first
}

// Case is one webhook: accepted (Want) or refused (Error).
type Case struct {
	Name string `json:"name"`
	// Source names where a published example comes from; empty for the generator's own.
	Source string `json:"source,omitempty"`
	// Secrets replace the app's secrets for this case (a provider's published examples
	// are signed with secrets of their own).
	Secrets []string `json:"secrets,omitempty"`
	Body    string   `json:"body,omitempty"`
	// BodyHex holds a body that is not UTF-8 (a JSON string cannot), in hex.
	BodyHex string            `json:"bodyHex,omitempty"`
	Headers map[string]string `json:"headers"`
	// Error is the stable code Open must refuse the case with; empty for one it accepts.
	Error string `json:"error,omitempty"`
	Want  *Want  `json:"want,omitempty"`
}

// Want is the event an accepted case becomes. EventAt is RFC 3339.
type Want struct {
	ApplicantID    string `json:"applicantId"`
	Type           string `json:"type"`
	ProviderStatus string `json:"providerStatus"`
	ExternalUserID string `json:"externalUserId"`
	EventAt        string `json:"eventAt"`
	EventAtSource  string `json:"eventAtSource"`
	ContentID      string `json:"contentId"`
	// Class (status, annotation or unknown) and Status are what DESIGN.md section 13's
	// table makes of the event.
	Class  string `json:"class"`
	Status string `json:"status"`
}

// Expect is the Want of an accepted case in the file's order of fields, but for the
// content id, which the generator computes from the body it signs.
func Expect(applicantID, typ, providerStatus, externalUserID, eventAt, eventAtSource, class, status string) Want {
	return Want{applicantID, typ, providerStatus, externalUserID, eventAt, eventAtSource, "", class, status}
}

// Accepted is the case of a webhook Open must accept as w, its content id contentID.
func Accepted(name string, headers map[string]string, body, contentID string, w Want) Case {
	w.ContentID = contentID
	return Case{Name: name, Headers: headers, Want: &w}.WithBody(body)
}

// Refused is the case of a webhook Open must refuse with code.
func Refused(name string, headers map[string]string, body, code string) Case {
	return Case{Name: name, Headers: headers, Error: code}.WithBody(body)
}

// MustJSON is v as compact JSON, for a generator's bodies; it panics on what cannot be
// marshalled (a generator's bug).
func MustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Bytes is the case's body: Body, or BodyHex decoded.
func (c Case) Bytes() ([]byte, error) {
	if c.BodyHex == "" {
		return []byte(c.Body), nil
	}
	return hex.DecodeString(c.BodyHex)
}

// WithBody sets the case's body: Body when it is UTF-8, else BodyHex.
func (c Case) WithBody(body string) Case {
	if utf8.ValidString(body) {
		c.Body, c.BodyHex = body, ""
	} else {
		c.Body, c.BodyHex = "", hex.EncodeToString([]byte(body))
	}
	return c
}

// Write writes f as the generators do: indented, HTML characters as they are, so a
// body in the file reads as the provider sent it.
func Write(w io.Writer, f any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(f)
}

// HMACHex is the lower-case hex HMAC (newHash) of msg under secret.
func HMACHex(newHash func() hash.Hash, secret, msg string) string {
	m := hmac.New(newHash, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// ContentID is the content id of DESIGN.md section 15: lower-case hex SHA-256 over the
// provider, the app's name and the authenticated bytes (the provider's event id, or the
// whole body), each preceded by its length as 8 big-endian bytes.
func ContentID(provider, app, authenticated string) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range []string{provider, app, authenticated} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}
