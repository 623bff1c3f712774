package sumsub

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
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// Payload limits. The payload is Sumsub's, so the limits are loose; they exist so that
// what becomes a NATS header, an index key or a log field stays printable and bounded.
const (
	// maxDepth bounds nesting (Sumsub's deepest documented field is three levels down),
	// checked before anything is decoded so a bomb fails in one scan.
	maxDepth = 32
	// maxTypeLen bounds `type` and providerStatus, which travel in message headers.
	maxTypeLen = 128
	// maxTextLen bounds externalUserId.
	maxTextLen = 256
)

// The payload fields this adapter reads. Each may appear at most once; every other field
// is kept verbatim and not read.
const (
	fieldApplicantID      = "applicantId"
	fieldType             = "type"
	fieldExternalUserID   = "externalUserId"
	fieldCorrelationID    = "correlationId"
	fieldReviewStatus     = "reviewStatus"
	fieldReviewResult     = "reviewResult"
	fieldCreatedAtMs      = "createdAtMs"
	fieldCreatedAt        = "createdAt"
	fieldReviewAnswer     = "reviewAnswer"
	fieldReviewRejectType = "reviewRejectType"
)

// answerRed is the review answer after which the reject type says what it means.
const answerRed = "RED"

// parse reads a verified body and returns the event to store (AppKey not set) and
// Sumsub's event id, correlationId ("" when the body has none).
//
// The body must be one UTF-8 JSON object, nested at most maxDepth deep, with no field it
// reads given twice (KindInvalid, CodeMalformedPayload). Then (KindUnprocessable,
// CodeInvalidPayload, the message naming the field):
//   - applicantId: required, domain.ParseProviderID (kept verbatim).
//   - type: required, 1 to 128 printable ASCII characters (it becomes a header value).
//   - externalUserId: optional string (null is absent), at most 256 bytes, no control
//     characters.
//   - reviewResult: optional object (null is absent) whose reviewAnswer and
//     reviewRejectType, and reviewStatus beside it, are optional strings; the
//     providerStatus made of them is at most 128 printable ASCII characters.
//   - correlationId: optional string.
//
// createdAtMs and createdAt that do not parse are skipped, not refused: the event is
// worth more than its timestamp, and eventAtSource says where the time came from.
func parse(body []byte, receivedAt time.Time) (domain.Event, string, error) {
	const op = "sumsub.Open"
	fields, err := jsonscan.Object(body, maxDepth, fieldApplicantID, fieldType, fieldExternalUserID,
		fieldCorrelationID, fieldReviewStatus, fieldReviewResult, fieldCreatedAtMs, fieldCreatedAt)
	if err != nil {
		return domain.Event{}, "", fail(op, domain.KindInvalid, CodeMalformedPayload, "body "+err.Error())
	}
	bad := func(field, problem string) error {
		return fail(op, domain.KindUnprocessable, CodeInvalidPayload, field+" "+problem)
	}

	id, present, err := stringField(fields, fieldApplicantID)
	switch {
	case err != nil:
		return domain.Event{}, "", bad(fieldApplicantID, err.Error())
	case !present:
		return domain.Event{}, "", bad(fieldApplicantID, "is missing")
	}
	applicant, err := domain.ParseProviderID(id)
	if err != nil {
		return domain.Event{}, "", bad(fieldApplicantID, "is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	typ, err := printableField(fields, fieldType)
	switch {
	case err != nil:
		return domain.Event{}, "", bad(fieldType, err.Error())
	case typ == "":
		return domain.Event{}, "", bad(fieldType, "is missing")
	}
	ext, _, err := stringField(fields, fieldExternalUserID)
	if err == nil {
		err = checkText(ext, maxTextLen)
	}
	if err != nil {
		return domain.Event{}, "", bad(fieldExternalUserID, err.Error())
	}
	var result map[string]json.RawMessage
	if raw, ok := fields[fieldReviewResult]; ok && !jsonscan.IsNull(raw) {
		if raw[0] != '{' {
			return domain.Event{}, "", bad(fieldReviewResult, "must be an object")
		}
		// The body is valid and within the depth bound, so only a field given twice fails.
		if result, err = jsonscan.Object(raw, maxDepth, fieldReviewAnswer, fieldReviewRejectType); err != nil {
			return domain.Event{}, "", fail(op, domain.KindInvalid, CodeMalformedPayload, fieldReviewResult+" "+err.Error())
		}
	}
	status, field, err := providerStatus(fields, result)
	if err != nil {
		return domain.Event{}, "", bad(field, err.Error())
	}
	eventID, _, err := stringField(fields, fieldCorrelationID)
	if err != nil {
		return domain.Event{}, "", bad(fieldCorrelationID, err.Error())
	}

	ev := domain.Event{
		V:              domain.StoredVersion,
		Provider:       Provider,
		Origin:         domain.OriginWebhook,
		ApplicantID:    applicant,
		ExternalUserID: domain.ExternalUserID(ext),
		Type:           domain.EventType(typ),
		ProviderStatus: status,
		ReceivedAt:     receivedAt.UTC(),
		Payload:        json.RawMessage(bytes.Clone(body)),
	}
	ev.EventAt, ev.EventAtSource = eventTime(fields, ev.ReceivedAt)
	return ev, eventID, nil
}

// providerStatus is the status the payload states: the review answer when it has one
// (for RED with the reject type after a '+'), else reviewStatus verbatim, else "".
// result is the reviewResult object (nil when absent). An error names its field.
func providerStatus(fields, result map[string]json.RawMessage) (string, string, error) {
	review, _, err := stringField(fields, fieldReviewStatus)
	if err != nil {
		return "", fieldReviewStatus, err
	}
	answer, _, err := stringField(result, fieldReviewAnswer)
	if err != nil {
		return "", fieldReviewResult + "." + fieldReviewAnswer, err
	}
	reject, _, err := stringField(result, fieldReviewRejectType)
	if err != nil {
		return "", fieldReviewResult + "." + fieldReviewRejectType, err
	}
	status, field := review, fieldReviewStatus
	switch {
	case answer == answerRed && reject != "":
		status, field = answer+"+"+reject, fieldReviewResult
	case answer != "":
		status, field = answer, fieldReviewResult+"."+fieldReviewAnswer
	}
	if err := checkPrintable(status); err != nil {
		return "", field, err
	}
	return status, "", nil
}

// stringField reads an optional string field; null counts as absent. Its errors complete
// a sentence that starts with the field's name.
func stringField(fields map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := fields[name]
	if !ok || jsonscan.IsNull(raw) {
		return "", false, nil
	}
	s, ok := jsonscan.String(raw)
	if !ok {
		return "", false, errors.New("must be a string")
	}
	return s, true, nil
}

// printableField reads an optional string of at most maxTypeLen printable ASCII
// characters.
func printableField(fields map[string]json.RawMessage, name string) (string, error) {
	s, _, err := stringField(fields, name)
	if err == nil {
		err = checkPrintable(s)
	}
	return s, err
}

// checkPrintable accepts "" and up to maxTypeLen characters of printable ASCII (space to
// tilde): what may travel in a message header and a metric label.
func checkPrintable(s string) error {
	if len(s) > maxTypeLen {
		return fmt.Errorf("is longer than %d characters", maxTypeLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return errors.New("is not printable ASCII")
		}
	}
	return nil
}

// checkText accepts up to max bytes without control characters.
func checkText(s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("is longer than %d bytes", max)
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("contains control characters")
	}
	return nil
}

// eventTime picks the event's time: createdAtMs if it parses, else createdAt, else
// receivedAt.
func eventTime(fields map[string]json.RawMessage, receivedAt time.Time) (time.Time, string) {
	for _, c := range [...]struct{ field, source string }{
		{fieldCreatedAtMs, SourceCreatedAtMs},
		{fieldCreatedAt, SourceCreatedAt},
	} {
		if raw, ok := fields[c.field]; ok {
			if t, ok := parseTimeValue(raw); ok {
				return t, c.source
			}
		}
	}
	return receivedAt, domain.SourceReceived
}

// parseTimeValue reads a JSON string in one of Sumsub's date-time forms (parseTime), or
// Unix milliseconds as a JSON number or a string of digits (what the field's name
// suggests, and section 13 assumed).
func parseTimeValue(raw json.RawMessage) (time.Time, bool) {
	num := string(raw)
	if s, ok := jsonscan.String(raw); ok {
		if !isDigits(s) {
			return parseTime(s)
		}
		num = s
	}
	ms, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(ms) || ms <= 0 || ms >= maxUnixMillis {
		return time.Time{}, false
	}
	whole := int64(ms)
	return inRange(time.UnixMilli(whole).UTC())
}

// maxUnixMillis is 10000-01-01T00:00:00Z in milliseconds: stored times must marshal as
// RFC 3339.
const maxUnixMillis = 253402300800000

// timeLayouts are the forms Sumsub writes times in: "2020-02-21 13:23:19.321" (createdAtMs,
// UTC, no zone), "2023-03-14 12:50:27+0000" (createdAt, review dates), and RFC 3339 for
// good measure. A time without a zone is UTC, as the docs say.
func timeLayouts() []string {
	return []string{
		"2006-01-02 15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z0700",
		"2006-01-02 15:04:05.999999999Z07:00",
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02T15:04:05.999999999",
	}
}

// parseTime parses one of timeLayouts; the result is UTC, within years 1970 to 9999.
func parseTime(s string) (time.Time, bool) {
	for _, layout := range timeLayouts() {
		if t, err := time.Parse(layout, s); err == nil {
			return inRange(t.UTC())
		}
	}
	return time.Time{}, false
}

func inRange(t time.Time) (time.Time, bool) {
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
