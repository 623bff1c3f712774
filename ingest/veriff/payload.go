package veriff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// TypeDecision is the type a decision webhook is stored with: Veriff gives it no name
// (an event webhook's type is its action).
const TypeDecision domain.EventType = "decision"

// SourceDecisionTime is the eventAtSource of a decision dated by verification.decisionTime.
const SourceDecisionTime = "payload.verification.decisionTime"

// Limits. The body is Veriff's, so they are loose; they keep what becomes a NATS header,
// an index key or a log field printable and bounded.
const (
	maxDepth = 64 // nesting of the body, checked before anything is decoded
	// maxNameLen bounds the event type and the provider's status, which travel in
	// message headers and history.
	maxNameLen = 128
	// maxExternalLen bounds vendorData: Veriff allows 1,000 characters; the read API
	// looks up externalUserIds of at most 1,024 bytes.
	maxExternalLen = 1024
)

// The members the adapter reads. Each may appear at most once at its level.
const (
	memberStatus         = "status"
	memberVerification   = "verification"
	memberID             = "id"
	memberAction         = "action"
	memberVendorData     = "vendorData"
	memberDecisionTime   = "decisionTime"
	memberAcceptanceTime = "acceptanceTime"
	memberCode           = "code"
)

// parseWebhook reads an authenticated body: a decision webhook (a `verification` object)
// or an event webhook (an `action`). The event it returns lacks the app and Raw.
func parseWebhook(body []byte, receivedAt time.Time) (domain.Event, error) {
	top, err := jsonscan.Object(body, maxDepth, memberStatus, memberVerification, memberID, memberAction, memberVendorData, memberCode)
	if err != nil {
		return domain.Event{}, domain.Public("veriff", domain.KindInvalid, CodeMalformedPayload, "body "+err.Error())
	}
	ev := domain.Event{
		V: domain.StoredVersion, Provider: Provider, Origin: domain.OriginWebhook,
		ReceivedAt: receivedAt.UTC(), EventAt: receivedAt.UTC(), EventAtSource: domain.SourceReceived,
		Payload: json.RawMessage(bytes.Clone(body)),
	}
	_, isDecision := top[memberVerification]
	_, isEvent := top[memberAction]
	switch {
	case isDecision && isEvent:
		return domain.Event{}, invalid("body", "is both a decision (verification) and an event (action)")
	case isDecision:
		v, err := verificationOf(top)
		if err != nil {
			return domain.Event{}, err
		}
		if v == nil {
			return domain.Event{}, invalid(memberVerification, "is null")
		}
		ev.Type = TypeDecision
		ev.ApplicantID, ev.ProviderStatus, ev.ExternalUserID = v.id, v.status, v.vendorData
		if !v.decisionTime.IsZero() {
			ev.EventAt, ev.EventAtSource = v.decisionTime, SourceDecisionTime
		}
	case isEvent:
		id, err := sessionID(top, memberID)
		if err != nil {
			return domain.Event{}, err
		}
		action, err := nameMember(top, memberAction)
		if err != nil {
			return domain.Event{}, err
		}
		ext, err := externalMember(top, memberVendorData)
		if err != nil {
			return domain.Event{}, err
		}
		ev.Type, ev.ApplicantID, ev.ProviderStatus, ev.ExternalUserID = domain.EventType(action), id, action, ext
	default:
		return domain.Event{}, invalid("body", "is neither a decision (verification) nor an event (action) webhook")
	}
	return ev, nil
}

// verification is what the adapter reads of a `verification` object.
type verification struct {
	id           domain.ApplicantID
	status       string
	vendorData   domain.ExternalUserID
	decisionTime time.Time // zero when absent or not a time
}

// verificationOf reads top's `verification` member: nil when it is null (the status API's
// answer before a decision is ready). Errors are CodeMalformedPayload (not an object, a
// member twice) or CodeInvalidPayload (a member missing or invalid).
func verificationOf(top map[string]json.RawMessage) (*verification, error) {
	raw := top[memberVerification]
	if jsonscan.IsNull(raw) {
		return nil, nil
	}
	m, err := jsonscan.Object(raw, maxDepth, memberID, memberStatus, memberVendorData, memberDecisionTime, memberAcceptanceTime, memberCode)
	if err != nil {
		if errors.Is(err, jsonscan.ErrNotObject) {
			return nil, invalid(memberVerification, "is not an object")
		}
		return nil, domain.Public("veriff", domain.KindInvalid, CodeMalformedPayload, memberVerification+" "+err.Error())
	}
	var v verification
	if v.id, err = sessionID(m, memberVerification+"."+memberID); err != nil {
		return nil, err
	}
	if v.status, err = nameMember(m, memberVerification+"."+memberStatus); err != nil {
		return nil, err
	}
	if v.vendorData, err = externalMember(m, memberVerification+"."+memberVendorData); err != nil {
		return nil, err
	}
	v.decisionTime = timeMember(m, memberDecisionTime)
	return &v, nil
}

// Each reader below takes the member's path in the body, for its messages, and reads the
// member of m named by the path's last element.

// lastName is the last element of a member's path: "verification.id" -> "id".
func lastName(path string) string { return path[strings.LastIndexByte(path, '.')+1:] }

// sessionID reads a required session id.
func sessionID(m map[string]json.RawMessage, path string) (domain.ApplicantID, error) {
	s, present, err := stringMember(m, lastName(path))
	switch {
	case err != nil:
		return "", invalid(path, err.Error())
	case !present:
		return "", invalid(path, "is missing")
	}
	id, err := domain.ParseProviderID(s)
	if err != nil {
		return "", invalid(path, "is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	return id, nil
}

// nameMember reads a required event name or status: 1 to maxNameLen printable ASCII
// characters.
func nameMember(m map[string]json.RawMessage, path string) (string, error) {
	s, present, err := stringMember(m, lastName(path))
	switch {
	case err != nil:
		return "", invalid(path, err.Error())
	case !present || s == "":
		return "", invalid(path, "is missing")
	case !printable(s, maxNameLen):
		return "", invalid(path, fmt.Sprintf("is not 1 to %d printable ASCII characters", maxNameLen))
	}
	return s, nil
}

// externalMember reads an optional externalUserId: at most maxExternalLen bytes, no control
// characters (it is an index key and a log field). Null and "" are absent.
func externalMember(m map[string]json.RawMessage, path string) (domain.ExternalUserID, error) {
	s, _, err := stringMember(m, lastName(path))
	switch {
	case err != nil:
		return "", invalid(path, err.Error())
	case len(s) > maxExternalLen:
		return "", invalid(path, fmt.Sprintf("is longer than %d bytes", maxExternalLen))
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", invalid(path, "contains control characters")
	}
	return domain.ExternalUserID(s), nil
}

// timeMember reads an optional RFC 3339 time. A value that is absent, null or not such a
// time reads as zero: the event is worth more than its timestamp, and the source stored
// beside the time says where it came from.
func timeMember(m map[string]json.RawMessage, name string) time.Time {
	s, present, err := stringMember(m, name)
	if err != nil || !present {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}
	}
	return t.UTC()
}

// stringMember reads an optional string member; null counts as absent.
func stringMember(m map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := m[name]
	if !ok || jsonscan.IsNull(raw) {
		return "", false, nil
	}
	s, ok := jsonscan.String(raw)
	if !ok {
		return "", false, errors.New("must be a string")
	}
	return s, true, nil
}

// printable reports whether s is 1 to max bytes of printable ASCII (space to '~').
func printable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// invalid is a CodeInvalidPayload refusal naming the member and the problem.
func invalid(member, problem string) error {
	return domain.Public("veriff", domain.KindUnprocessable, CodeInvalidPayload, member+" "+problem)
}
