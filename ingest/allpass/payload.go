package allpass

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kycstate/kycstate/domain"
)

// Payload limits. The payload is Allpass's, so limits are loose; they exist so that what
// becomes a NATS header, an index key or a log field stays printable and bounded.
const (
	// payloadMaxDepth bounds nesting, checked before decoding so bombs fail in one scan.
	payloadMaxDepth = 64
	// maxTypeLen bounds `type`, which travels in a message header.
	maxTypeLen = 128
	// maxTextLen bounds `externalUserId` and `stepName`.
	maxTextLen = 256
)

// Known payload fields. Each may appear at most once; every other field is kept verbatim.
const (
	fieldID             = "id"
	fieldAppKey         = "appKey"
	fieldType           = "type"
	fieldExternalUserID = "externalUserId"
	fieldWarnings       = "warnings"
	fieldStepName       = "stepName"
	fieldUpdatedAt      = "updatedAt"
	fieldCreatedAt      = "createdAt"
	fieldTime           = "time"
	fieldTimestamp      = "timestamp"
)

// payloadFields lists the known fields for decodeObject's duplicate check.
func payloadFields() []string {
	return []string{fieldID, fieldAppKey, fieldType, fieldExternalUserID, fieldWarnings,
		fieldStepName, fieldUpdatedAt, fieldCreatedAt, fieldTime, fieldTimestamp}
}

// parsePayload validates a decrypted plaintext for app and builds the event to store.
//
// The plaintext must be one UTF-8 JSON object, nested at most payloadMaxDepth deep, no
// known field twice (KindInvalid, CodeMalformedPlaintext). Then (KindUnprocessable,
// CodeInvalidPayload, the message naming the field):
//   - id and appKey: required UUIDs (8-4-4-4-12 hex digits, either case), stored lower
//     case; appKey must equal app's. Nothing else can reach a NATS subject, so `.`, `*`,
//     `>`, white space and NUL are refused by construction.
//   - type: required, 1 to 128 bytes, no control characters (it becomes a header value).
//   - externalUserId, stepName: optional strings (null is absent), at most 256 bytes, no
//     control characters: they are index keys and log fields, and a product id holding a
//     newline is a bug upstream. Refused events are not lost: they go to the rejects
//     stream and can be reprocessed.
//   - warnings: optional array of strings (null is absent; empty is stored as absent).
//
// Unknown fields are kept: Payload is a copy of the plaintext, byte for byte.
// EventAt comes from eventTime. All times are UTC. A payload refused once its id has
// been read returns, with the error, an event holding only that ApplicantID.
func parsePayload(app domain.AppKey, plaintext []byte, envelopeTime string, receivedAt time.Time) (domain.Event, error) {
	const op = "allpass.Open"
	fields, err := decodeObject(plaintext, payloadMaxDepth, payloadFields())
	if err != nil {
		return domain.Event{}, domain.Public(op, domain.KindInvalid, CodeMalformedPlaintext, "plaintext "+err.Error())
	}
	bad := func(field, problem string) error {
		return domain.Public(op, domain.KindUnprocessable, CodeInvalidPayload, field+" "+problem)
	}

	var ev domain.Event
	id, err := uuidField(fields, fieldID)
	if err != nil {
		return domain.Event{}, bad(fieldID, err.Error())
	}
	// Refused past here, the event returned still names its applicant, for the rejects.
	named := domain.Event{ApplicantID: domain.ApplicantID(id)}
	key, err := uuidField(fields, fieldAppKey)
	if err != nil {
		return named, bad(fieldAppKey, err.Error())
	}
	if !strings.EqualFold(key, string(app)) {
		return named, bad(fieldAppKey, "is not this app's appKey")
	}
	typ, present, err := textField(fields, fieldType, maxTypeLen)
	switch {
	case err != nil:
		return named, bad(fieldType, err.Error())
	case !present || typ == "":
		return named, bad(fieldType, "is missing")
	}
	ext, _, err := textField(fields, fieldExternalUserID, maxTextLen)
	if err != nil {
		return named, bad(fieldExternalUserID, err.Error())
	}
	step, _, err := textField(fields, fieldStepName, maxTextLen)
	if err != nil {
		return named, bad(fieldStepName, err.Error())
	}
	warnings, err := warningsField(fields)
	if err != nil {
		return named, bad(fieldWarnings, err.Error())
	}

	ev.V = domain.StoredVersion
	ev.Provider = Provider
	ev.Origin = domain.OriginWebhook
	ev.AppKey = domain.AppKey(key)
	ev.ApplicantID = domain.ApplicantID(id)
	ev.ExternalUserID = domain.ExternalUserID(ext)
	ev.Type = domain.EventType(typ)
	ev.StepName = step
	ev.Warnings = warnings
	ev.ReceivedAt = receivedAt.UTC()
	ev.EventAt, ev.EventAtSource = eventTime(fields, envelopeTime, ev.ReceivedAt)
	ev.Payload = json.RawMessage(bytes.Clone(plaintext))
	return ev, nil
}

// uuidField reads a required UUID field in canonical form. Its errors complete a sentence
// that starts with the field's name.
func uuidField(fields map[string]json.RawMessage, name string) (string, error) {
	s, present, err := stringField(fields, name)
	switch {
	case err != nil:
		return "", err
	case !present:
		return "", errors.New("is missing")
	}
	u, ok := domain.ParseUUID(s)
	if !ok {
		return "", errors.New("is not a UUID")
	}
	return u, nil
}

// textField reads an optional string of at most max bytes without control characters.
func textField(fields map[string]json.RawMessage, name string, max int) (string, bool, error) {
	s, present, err := stringField(fields, name)
	switch {
	case err != nil:
		return "", false, err
	case len(s) > max:
		return "", false, fmt.Errorf("is longer than %d bytes", max)
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", false, errors.New("contains control characters")
	}
	return s, present, nil
}

// stringField reads an optional string field; null counts as absent.
func stringField(fields map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return "", false, nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", false, errors.New("must be a string")
	}
	return s, true, nil
}

// warningsField reads the optional warnings array. Null and [] are absent (nil), so the
// stored event is the same either way.
func warningsField(fields map[string]json.RawMessage) ([]string, error) {
	raw, ok := fields[fieldWarnings]
	if !ok || isNull(raw) {
		return nil, nil
	}
	errShape := errors.New("must be an array of strings")
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, errShape
	}
	if len(elems) == 0 {
		return nil, nil
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		var ok bool
		if out[i], ok = jsonString(e); !ok {
			return nil, errShape
		}
	}
	return out, nil
}

// eventTime picks the event's time: the first of the payload's updatedAt, createdAt,
// time, timestamp that is present and parses; else the envelope time if it parses; else
// receivedAt. A value that does not parse is skipped, not refused: the event is worth
// more than its timestamp, and the source is recorded beside the time.
func eventTime(fields map[string]json.RawMessage, envelopeTime string, receivedAt time.Time) (time.Time, string) {
	for _, c := range [...]struct{ field, source string }{
		{fieldUpdatedAt, domain.SourcePayloadUpdatedAt},
		{fieldCreatedAt, domain.SourcePayloadCreatedAt},
		{fieldTime, domain.SourcePayloadTime},
		{fieldTimestamp, domain.SourcePayloadTimestamp},
	} {
		if raw, ok := fields[c.field]; ok {
			if t, ok := parseTimeValue(raw); ok {
				return t, c.source
			}
		}
	}
	if t, ok := parseTimeString(envelopeTime); ok {
		return t, domain.SourceEnvelopeTime
	}
	return receivedAt, domain.SourceReceived
}

// parseTimeValue parses a JSON string (parseTimeString) or number (parseEpoch).
func parseTimeValue(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 {
		return time.Time{}, false
	}
	switch c := raw[0]; {
	case c == '"':
		s, ok := jsonString(raw)
		if !ok {
			return time.Time{}, false
		}
		return parseTimeString(s)
	case c == '-' || ('0' <= c && c <= '9'):
		return parseEpoch(string(raw))
	}
	return time.Time{}, false
}

// timeLayouts are the ISO-8601 forms accepted for time strings: RFC 3339 (fractional
// seconds optional), a numeric offset without colon, a space instead of T, and no zone
// at all, read as UTC.
func timeLayouts() []string {
	return []string{
		time.RFC3339,
		"2006-01-02T15:04:05Z0700",
		"2006-01-02T15:04:05",
		"2006-01-02 15:04:05Z07:00",
		"2006-01-02 15:04:05",
	}
}

// parseTimeString parses an ISO-8601 time, or a string of digits as epoch seconds or
// milliseconds (parseEpoch). The result is UTC and within years 1970 to 9999.
func parseTimeString(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if isDecimal(s) {
		return parseEpoch(s)
	}
	for _, layout := range timeLayouts() {
		if t, err := time.Parse(layout, s); err == nil {
			return inRange(t.UTC())
		}
	}
	return time.Time{}, false
}

// parseEpoch reads a number as Unix milliseconds if it is above 1e12 (after 2001-09-09
// in milliseconds; no time in seconds is that large before year 33658), else seconds.
// Plain decimals are read exactly (1767225600123 is .123 s, not .122999907); other JSON
// number forms (exponents) through float64. Zero and negative numbers count as unset.
func parseEpoch(s string) (time.Time, bool) {
	if !isDecimal(s) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 || v >= 1e18 {
			return time.Time{}, false
		}
		s = strconv.FormatFloat(v, 'f', -1, 64)
	}
	whole, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || (n == 0 && strings.Trim(frac, "0") == "") {
		return time.Time{}, false
	}
	unit := int64(time.Second)
	if n > 1e12 {
		unit = int64(time.Millisecond)
	}
	sec, nanos := n, int64(0)
	if unit == int64(time.Millisecond) {
		sec, nanos = n/1000, (n%1000)*unit
	}
	for i, scale := 0, unit/10; i < len(frac) && scale > 0; i, scale = i+1, scale/10 {
		nanos += int64(frac[i]-'0') * scale
	}
	if sec >= maxUnixSeconds {
		return time.Time{}, false
	}
	return inRange(time.Unix(sec, nanos).UTC())
}

// maxUnixSeconds is 10000-01-01T00:00:00Z; stored times must marshal as RFC 3339.
const maxUnixSeconds = 253402300800

func inRange(t time.Time) (time.Time, bool) {
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// isDecimal reports whether s is digits with at most one '.' between digits.
func isDecimal(s string) bool {
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case c == '.' && !dot && digits > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}
