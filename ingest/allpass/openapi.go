package allpass

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// Allpass's Open API (DESIGN.md section 10): the request's shape and the parser of its
// answer. The HTTP client that sends the request lives outside this package (package
// reconcile), which keeps this one pure.

// PrivateKeyHeader carries an app's Open API private key on every request.
const PrivateKeyHeader = "x-private-app-key"

// OpenAPIPath is the path of one applicant's record, below the configured base URL.
// id must be a parsed applicant id (domain.ParseApplicantID): nothing else reaches a URL.
func OpenAPIPath(id domain.ApplicantID) string { return "/api/public/applicant/" + string(id) }

// Codes of Open API answers that do not parse or verify (signature failures keep
// CodeBadSignature, as for webhooks).
const (
	// CodeMalformedResponse: the body is not one UTF-8 JSON object in the envelope's
	// shape (HTML from a proxy, say), or `data` is neither an object nor a string, or
	// the decrypted `data` is not one JSON object. KindInvalid.
	CodeMalformedResponse = "malformed_response"
	// CodeInvalidResponse: `data` is an object but a field read is wrong: `id` missing
	// or not the applicant asked for, `status` not one of the eight, `updatedAt` missing
	// or not a time, `externalUserId` or `appKey` invalid. KindUnprocessable.
	CodeInvalidResponse = "invalid_response"
	// CodeApplicantNotFound: the envelope says 404. KindNotFound.
	CodeApplicantNotFound = "applicant_not_found"
	// CodeOpenAPIRefused: the envelope says status false, or a statusCode other than
	// 200 and 404. KindUnavailable: retried on the next sweep.
	CodeOpenAPIRefused = "openapi_refused"
)

// Data fields the parser reads; every other field is kept, not read.
const (
	fieldStatus = "status"
)

func openAPIDataFields() []string {
	return []string{fieldID, fieldStatus, fieldUpdatedAt, fieldExternalUserID, fieldAppKey}
}

// OpenAPIApplicant is what one Open API answer says about an applicant.
type OpenAPIApplicant struct {
	ID             domain.ApplicantID
	Status         domain.Status
	UpdatedAt      time.Time // data.updatedAt, UTC
	ExternalUserID domain.ExternalUserID
	// Data is `data` as one JSON object: the decrypted plaintext, or the object as sent,
	// byte for byte.
	Data []byte
	// Time is the envelope's time, UTC; zero when absent or not a time.
	Time time.Time
}

// ParseStatus reads a status as the Open API writes it: any case, a space or an
// underscore between words ("In review", "IN_REVIEW", "in_review"). False for anything
// that is not one of the eight statuses.
func ParseStatus(s string) (domain.Status, bool) {
	return domain.ParseStatus(strings.ReplaceAll(strings.TrimSpace(s), " ", "_"))
}

// ParseOpenAPIResponse parses, verifies and decrypts one answer of
// GET /api/public/applicant/{want} for app a. body is the answer's body, signature its
// x-allpass-signature header ("" when absent).
//
// The envelope is {"status":true,"statusCode":200,"data":...,"time":...}. `data` is a
// JSON object, or a string sealed with a's method and keys exactly as a webhook's data:
// a signature, when there is one, is verified before anything is decrypted (CBC: the
// HMAC over the data string or the body; GCM: the tag, which GCM cannot do without). A
// CBC string with no signature is decrypted unauthenticated: the answer came over the
// connection kycstate opened to the configured host, and the plaintext must still be an
// object about the applicant asked for. A signature beside an object `data` is checked
// as a CBC HMAC over the body or the object's text.
//
// Errors carry a kind and a code (domain.CodeOf): KindInvalid, CodeMalformedResponse;
// KindUnauthorized, CodeBadSignature; KindUnprocessable, CodeInvalidResponse;
// KindNotFound, CodeApplicantNotFound; KindUnavailable, CodeOpenAPIRefused; KindInternal
// for an app that fails Validate. Messages never quote the body, a key or plaintext.
func (a *App) ParseOpenAPIResponse(body []byte, signature string, want domain.ApplicantID) (OpenAPIApplicant, error) {
	const op = "allpass.ParseOpenAPIResponse"
	malformed := func(msg string) error { return domain.Public(op, domain.KindInvalid, CodeMalformedResponse, msg) }
	invalid := func(msg string) error { return domain.Public(op, domain.KindUnprocessable, CodeInvalidResponse, msg) }
	if err := a.Validate(); err != nil {
		return OpenAPIApplicant{}, domain.E(op, domain.KindInternal, err)
	}
	// data may be an applicant object with nested documents: the payload's depth bound.
	fields, err := decodeObject(body, payloadMaxDepth, []string{"status", "statusCode", "data", "time"})
	if err != nil {
		return OpenAPIApplicant{}, malformed("body " + err.Error())
	}
	var out OpenAPIApplicant
	if raw, ok := fields["time"]; ok {
		if t, ok := parseTimeValue(raw); ok {
			out.Time = t
		}
	}
	code := 200
	if raw, ok := fields["statusCode"]; ok && !isNull(raw) {
		if code, err = strconv.Atoi(string(raw)); err != nil {
			return OpenAPIApplicant{}, malformed("statusCode must be an integer")
		}
	}
	status := true
	if raw, ok := fields["status"]; ok && !isNull(raw) {
		switch string(raw) {
		case "true":
		case "false":
			status = false
		default:
			return OpenAPIApplicant{}, malformed("status must be a boolean")
		}
	}
	switch {
	case code == 404:
		return OpenAPIApplicant{}, domain.Public(op, domain.KindNotFound, CodeApplicantNotFound, "the Open API has no such applicant")
	case !status || code != 200:
		return OpenAPIApplicant{}, domain.Public(op, domain.KindUnavailable, CodeOpenAPIRefused,
			"the Open API answered status false or statusCode "+strconv.Itoa(code))
	}

	raw, ok := fields["data"]
	switch {
	case !ok || isNull(raw):
		return OpenAPIApplicant{}, malformed("data is missing")
	case raw[0] == '"':
		sealed, _ := jsonString(raw)
		if sealed == "" {
			return OpenAPIApplicant{}, malformed("data is empty")
		}
		pt, err := a.openOpenAPIData(body, sealed, signature)
		if err != nil {
			return OpenAPIApplicant{}, err
		}
		out.Data = pt
	case raw[0] == '{':
		if strings.TrimSpace(signature) != "" && a.Method == MethodCBC && !a.macOverObject(body, raw, signature) {
			return OpenAPIApplicant{}, errBadSignature()
		}
		out.Data = bytes.Clone(raw)
	default:
		return OpenAPIApplicant{}, malformed("data must be an object or an encrypted string")
	}

	data, err := decodeObject(out.Data, payloadMaxDepth, openAPIDataFields())
	if err != nil {
		return OpenAPIApplicant{}, malformed("data " + err.Error())
	}
	id, err := uuidField(data, fieldID)
	if err != nil {
		return OpenAPIApplicant{}, invalid("data.id " + err.Error())
	}
	if domain.ApplicantID(id) != want {
		return OpenAPIApplicant{}, invalid("data.id is not the applicant asked for")
	}
	out.ID = domain.ApplicantID(id)
	if _, present, err := stringField(data, fieldAppKey); err != nil {
		return OpenAPIApplicant{}, invalid("data.appKey " + err.Error())
	} else if present {
		key, err := uuidField(data, fieldAppKey)
		if err != nil {
			return OpenAPIApplicant{}, invalid("data.appKey " + err.Error())
		}
		if domain.AppKey(key) != a.AppKey {
			return OpenAPIApplicant{}, invalid("data.appKey is not this app's appKey")
		}
	}
	s, present, err := stringField(data, fieldStatus)
	switch {
	case err != nil:
		return OpenAPIApplicant{}, invalid("data.status " + err.Error())
	case !present:
		return OpenAPIApplicant{}, invalid("data.status is missing")
	}
	if out.Status, ok = ParseStatus(s); !ok {
		return OpenAPIApplicant{}, invalid("data.status is not one of " + statusNames())
	}
	rawAt, ok := data[fieldUpdatedAt]
	if !ok || isNull(rawAt) {
		return OpenAPIApplicant{}, invalid("data.updatedAt is missing")
	}
	if out.UpdatedAt, ok = parseTimeValue(rawAt); !ok {
		return OpenAPIApplicant{}, invalid("data.updatedAt is not a time")
	}
	ext, _, err := textField(data, fieldExternalUserID, maxTextLen)
	if err != nil {
		return OpenAPIApplicant{}, invalid("data.externalUserId " + err.Error())
	}
	out.ExternalUserID = domain.ExternalUserID(ext)
	return out, nil
}

// openOpenAPIData opens a sealed data string: as a webhook's when there is a signature,
// else (CBC only) by decryption alone, the first key generation whose plaintext is a
// JSON object winning.
func (a *App) openOpenAPIData(body []byte, data, signature string) ([]byte, error) {
	if strings.TrimSpace(signature) != "" {
		pt, _, err := a.decrypt(body, data, signature, decryptCBC)
		return pt, err
	}
	if a.Method != MethodCBC {
		return nil, errBadSignature() // GCM needs its tag
	}
	raw, ok := decodeCBCData(data)
	if !ok {
		return nil, errBadSignature()
	}
	for i := range a.Keys {
		pt, err := decryptCBC(&a.Keys[i].Secret, raw[:aes.BlockSize], raw[aes.BlockSize:])
		if err == nil && isJSONObject(pt) {
			return pt, nil
		}
	}
	return nil, errBadSignature()
}

// macOverObject reports whether signature is an HMAC of some key generation over the
// body or over the object's text.
func (a *App) macOverObject(body, object []byte, signature string) bool {
	want, ok := decodeFixed(strings.TrimSpace(signature), sha256.Size)
	if !ok {
		return false
	}
	for _, k := range a.Keys {
		if overObject, overBody := macMatch(k.HMAC, want, string(object), body); overObject || overBody {
			return true
		}
	}
	return false
}

func statusNames() string {
	names := make([]string, 0, 8)
	for _, s := range domain.Statuses() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// ReconcileMsgID is the Nats-Msg-Id of a reconciled status: hex SHA-256 over appKey,
// applicant id, status and updatedAt (RFC 3339, UTC), each as an 8-byte big-endian length
// and its bytes. Two sweeps, or two nodes, that read the same answer append it once
// within the stream's duplicate window; a later change of status (a new updatedAt) is a
// new event.
func ReconcileMsgID(app domain.AppKey, id domain.ApplicantID, status domain.Status, updatedAt time.Time) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range []string{string(app), string(id), string(status), updatedAt.UTC().Format(time.RFC3339Nano)} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReconciledEvent is the event to append when r's status differs from the projection's
// (DESIGN.md section 10): origin openapi, the status event leading to r.Status, eventAt
// the envelope's time (else fetchedAt) with source openapi.time, the data as payload and,
// with keepRaw, the answer's body and signature as raw. It returns the event and its
// Nats-Msg-Id (ReconcileMsgID).
func (r OpenAPIApplicant) ReconciledEvent(app domain.AppKey, body []byte, signature string, fetchedAt time.Time, keepRaw bool) (domain.Event, string) {
	typ, _ := r.Status.Event()
	at := r.Time
	if at.IsZero() {
		at = fetchedAt
	}
	ev := domain.Event{
		V: domain.StoredVersion, Provider: Provider, Origin: domain.OriginOpenAPI,
		AppKey: app, ApplicantID: r.ID, ExternalUserID: r.ExternalUserID, Type: typ,
		EventAt: at.UTC(), EventAtSource: domain.SourceOpenAPITime, ReceivedAt: fetchedAt.UTC(),
		Payload: json.RawMessage(bytes.Clone(r.Data)),
	}
	if keepRaw {
		ev.Raw = &domain.Raw{Body: string(body), Signature: signature}
	}
	return ev, ReconcileMsgID(app, r.ID, r.Status, r.UpdatedAt)
}
