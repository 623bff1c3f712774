package sumsub

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// Payload limits beside webhook.MaxName. The payload is Sumsub's, so the limits are loose; they exist so that
// what becomes a NATS header, an index key or a log field stays printable and bounded.
const (
	// maxDepth bounds nesting (Sumsub's deepest documented field is three levels down),
	// checked before anything is decoded so a bomb fails in one scan.
	maxDepth = 32
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
	top, err := webhook.ReadObject("sumsub.Open", "body", body, maxDepth, fieldApplicantID, fieldType, fieldExternalUserID,
		fieldCorrelationID, fieldReviewStatus, fieldReviewResult, fieldCreatedAtMs, fieldCreatedAt)
	if err != nil {
		return domain.Event{}, "", err
	}
	applicant, err := top.ID(fieldApplicantID)
	if err != nil {
		return domain.Event{}, "", err
	}
	typ, err := top.Name(fieldType)
	if err != nil {
		return domain.Event{}, "", err
	}
	ext, err := top.Text(fieldExternalUserID, maxTextLen)
	if err != nil {
		return domain.Event{}, "", err
	}
	result, _, err := top.Object(fieldReviewResult, fieldReviewAnswer, fieldReviewRejectType)
	if err != nil {
		return domain.Event{}, "", err
	}
	status, err := providerStatus(top, result)
	if err != nil {
		return domain.Event{}, "", err
	}
	eventID, _, err := top.String(fieldCorrelationID)
	if err != nil {
		return domain.Event{}, "", err
	}

	ev := webhook.NewEvent(Provider, body, receivedAt)
	ev.ApplicantID, ev.ExternalUserID, ev.Type, ev.ProviderStatus = applicant, domain.ExternalUserID(ext), domain.EventType(typ), status
	ev.EventAt, ev.EventAtSource = eventTime(top, ev.ReceivedAt)
	return ev, eventID, nil
}

// providerStatus is the status the payload states: the review answer when it has one
// (for RED with the reject type after a '+'), else reviewStatus verbatim, else "". o
// holds reviewStatus (the zero Object for none) and result is its reviewResult (the zero
// Object when absent). An error names its field.
func providerStatus(o, result webhook.Object) (string, error) {
	review, _, err := o.String(fieldReviewStatus)
	if err != nil {
		return "", err
	}
	answer, _, err := result.String(fieldReviewAnswer)
	if err != nil {
		return "", err
	}
	reject, _, err := result.String(fieldReviewRejectType)
	if err != nil {
		return "", err
	}
	status, holder, field := review, o, fieldReviewStatus
	switch {
	case answer == answerRed && reject != "":
		status, holder, field = answer+"+"+reject, result, ""
	case answer != "":
		status, holder, field = answer, result, fieldReviewAnswer
	}
	if err := webhook.CheckPrintable(status); err != nil {
		return "", holder.Invalid(field, err.Error())
	}
	return status, nil
}

// eventTime picks the event's time: createdAtMs if it parses, else createdAt, else
// receivedAt.
func eventTime(o webhook.Object, receivedAt time.Time) (time.Time, string) {
	for _, c := range [...]struct{ field, source string }{
		{fieldCreatedAtMs, SourceCreatedAtMs},
		{fieldCreatedAt, SourceCreatedAt},
	} {
		if raw, ok := o.Raw(c.field); ok {
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
	return webhook.EventTime(time.UnixMilli(whole))
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
			return webhook.EventTime(t)
		}
	}
	return time.Time{}, false
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
