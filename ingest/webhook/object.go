package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// Object is one JSON object of a webhook body or a status API's answer, as
// jsonscan.Object splits it, with what its readers need to word a refusal: the op, the
// object's path ("" for the body itself, "payload.object" for a member two levels
// down) and the nesting bound its members are split with. The zero Object, what an
// absent member reads as, holds no member.
//
// Its readers refuse with Invalid (the member's path and the problem) or Malformed, so
// every adapter words the same problem the same way.
type Object struct {
	op       string
	path     string
	maxDepth int
	members  map[string]json.RawMessage
}

// ReadObject splits b, which must be one UTF-8 JSON object nested at most maxDepth deep,
// each of the known members at most once; else it is Malformed, about what ("body",
// "answer").
func ReadObject(op, what string, b []byte, maxDepth int, known ...string) (Object, error) {
	m, err := jsonscan.Object(b, maxDepth, known...)
	if err != nil {
		return Object{}, Malformed(op, what, err)
	}
	return Object{op: op, maxDepth: maxDepth, members: m}, nil
}

// Path is the path of member name in the body, for messages; "" is o itself.
func (o Object) Path(name string) string {
	switch {
	case name == "":
		return o.path
	case o.path == "":
		return name
	}
	return o.path + "." + name
}

// Invalid is the refusal of member name of o ("" for o itself): missing or invalid.
func (o Object) Invalid(name, problem string) error { return Invalid(o.op, o.Path(name), problem) }

// Has reports whether member name is given, null included.
func (o Object) Has(name string) bool {
	_, ok := o.members[name]
	return ok
}

// Raw returns member name's value, and whether it is given and not null.
func (o Object) Raw(name string) (json.RawMessage, bool) {
	raw, ok := o.members[name]
	if !ok || jsonscan.IsNull(raw) {
		return nil, false
	}
	return raw, true
}

// Object reads member name as an object, split with its known members at most once; ok
// is false when it is absent or null. A member that is not an object is Invalid; one that
// repeats a known member is Malformed.
func (o Object) Object(name string, known ...string) (Object, bool, error) {
	raw, ok := o.Raw(name)
	if !ok {
		return Object{}, false, nil
	}
	m, err := jsonscan.Object(raw, o.maxDepth, known...)
	switch {
	case errors.Is(err, jsonscan.ErrNotObject):
		return Object{}, false, o.Invalid(name, "is not an object")
	case err != nil:
		return Object{}, false, Malformed(o.op, o.Path(name), err)
	}
	return Object{op: o.op, path: o.Path(name), maxDepth: o.maxDepth, members: m}, true, nil
}

// RequiredObject is Object for a member that must be given: absent or null is Invalid.
func (o Object) RequiredObject(name string, known ...string) (Object, error) {
	c, ok, err := o.Object(name, known...)
	if err == nil && !ok {
		err = o.Invalid(name, "is missing")
	}
	return c, err
}

// String reads member name as an optional string: absent and null are "", false.
func (o Object) String(name string) (s string, present bool, err error) {
	raw, ok := o.Raw(name)
	if !ok {
		return "", false, nil
	}
	s, ok = jsonscan.String(raw)
	if !ok {
		return "", false, o.Invalid(name, "must be a string")
	}
	return s, true, nil
}

// ID reads member name as a required provider id: a string that passes
// domain.ParseProviderID, so it may stand in a NATS subject.
func (o Object) ID(name string) (domain.ApplicantID, error) {
	id, present, err := o.OptionalID(name)
	if err == nil && !present {
		err = o.Invalid(name, "is missing")
	}
	return id, err
}

// OptionalID is ID for a member that may be absent or null ("", false).
func (o Object) OptionalID(name string) (domain.ApplicantID, bool, error) {
	s, present, err := o.String(name)
	if err != nil || !present {
		return "", false, err
	}
	id, err := domain.ParseProviderID(s)
	if err != nil {
		return "", false, o.Invalid(name, "is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	return id, true, nil
}

// MaxName bounds a name: an event's type, a provider's status, which travel in message
// headers and metric labels.
const MaxName = 128

// Name reads member name as a required name (an event's type, a provider's status): 1 to
// MaxName characters of printable ASCII (CheckPrintable).
func (o Object) Name(name string) (string, error) {
	s, _, err := o.String(name)
	switch {
	case err != nil:
		return "", err
	case s == "":
		return "", o.Invalid(name, "is missing")
	}
	if err := CheckPrintable(s); err != nil {
		return "", o.Invalid(name, err.Error())
	}
	return s, nil
}

// Text reads member name as optional text (an externalUserId): at most max bytes, no
// control characters (CheckText). Absent and null are "".
func (o Object) Text(name string, max int) (string, error) {
	s, _, err := o.String(name)
	if err != nil {
		return "", err
	}
	if err := CheckText(s, max); err != nil {
		return "", o.Invalid(name, err.Error())
	}
	return s, nil
}

// Time reads member name as an optional RFC 3339 time (ParseTime). A member that is
// absent, null or not such a time reads as zero, never as an error: the event is worth
// more than its timestamp, and the source stored beside the time says where it came
// from.
func (o Object) Time(name string) time.Time {
	s, present, err := o.String(name)
	if err != nil || !present {
		return time.Time{}
	}
	t, _ := ParseTime(s)
	return t
}

// CheckPrintable accepts "" and up to MaxName characters of printable ASCII (space to
// tilde): what may travel in a message header and a metric label. Its error completes a
// sentence that starts with the member's path.
func CheckPrintable(s string) error {
	if len(s) > MaxName {
		return fmt.Errorf("is longer than %d characters", MaxName)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return errors.New("is not printable ASCII")
		}
	}
	return nil
}

// CheckText accepts up to max bytes without control characters: what may be an index
// key and a log field. Its error completes a sentence that starts with the member's path.
func CheckText(s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("is longer than %d bytes", max)
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("contains control characters")
	}
	return nil
}

// ParseTime reads an RFC 3339 time, with or without fractional seconds, as EventTime
// bounds it.
func ParseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return EventTime(t)
}

// EventTime is t in UTC if it may be a stored event's time: years 1970 to 9999 (a stored
// time must marshal as RFC 3339).
func EventTime(t time.Time) (time.Time, bool) {
	t = t.UTC()
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, false
	}
	return t, true
}
