package persona

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/webhook"
	"github.com/kycstate/kycstate/internal/jsonscan"
)

// Payload limits beside webhook.MaxName. The payload is Persona's, so the limits are loose; they exist so that
// what becomes a NATS header, an index key or a log field stays printable and bounded.
const (
	// maxDepth bounds nesting (an inquiry with its included objects nests some eight
	// levels), checked before anything is decoded so a bomb fails in one scan.
	maxDepth = 64
	// maxTextLen bounds reference-id (the externalUserId).
	maxTextLen = 256
	// inquiryPrefix starts every inquiry id Persona gives.
	inquiryPrefix = "inq_"
)

// member is a member name this adapter reads. Persona inflects names as the webhook's
// settings say, so a name of more than one word is looked up in kebab-case (Persona's
// default), camelCase and snake_case.
type member string

// The members this adapter reads, by their kebab-case name.
const (
	mData          member = "data"
	mType          member = "type"
	mID            member = "id"
	mAttributes    member = "attributes"
	mName          member = "name"
	mPayload       member = "payload"
	mCreatedAt     member = "created-at"
	mStatus        member = "status"
	mReferenceID   member = "reference-id"
	mRelationships member = "relationships"
	mInquiry       member = "inquiry"
)

// spellings returns m in every inflection Persona writes: kebab, camel, snake.
func (m member) spellings() []string {
	s := string(m)
	if !strings.Contains(s, "-") {
		return []string{s}
	}
	words := strings.Split(s, "-")
	camel := words[0]
	for _, w := range words[1:] {
		camel += strings.ToUpper(w[:1]) + w[1:]
	}
	return []string{s, camel, strings.Join(words, "_")}
}

// object is one JSON object of the payload, with the path it was found at (for
// messages).
type object struct {
	path    string
	members map[string]json.RawMessage
}

// split reads raw as an object at path whose members named in ms may appear once, in
// one inflection. A member given twice, or in two inflections, is malformed: one reader
// could take one and another reader the other.
func split(path string, raw json.RawMessage, ms ...member) (object, error) {
	var known []string
	for _, m := range ms {
		known = append(known, m.spellings()...)
	}
	members, err := jsonscan.Object(raw, maxDepth, known...)
	if err != nil {
		return object{}, fmt.Errorf("%s %w", path, err)
	}
	for _, m := range ms {
		n := 0
		for _, s := range m.spellings() {
			if _, ok := members[s]; ok {
				n++
			}
		}
		if n > 1 {
			return object{}, fmt.Errorf("%s gives a member twice", path)
		}
	}
	return object{path, members}, nil
}

// get returns member m's value in whichever inflection it came, and whether it came and
// is not null.
func (o object) get(m member) (json.RawMessage, bool) {
	for _, s := range m.spellings() {
		if raw, ok := o.members[s]; ok {
			return raw, !jsonscan.IsNull(raw)
		}
	}
	return nil, false
}

// child reads member m as an object; absent (or null) is ok false.
func (o object) child(m member, ms ...member) (object, bool, error) {
	raw, ok := o.get(m)
	if !ok {
		return object{}, false, nil
	}
	path := o.path + "." + string(m)
	if raw[0] != '{' {
		return object{}, false, fieldError{path, "must be an object"}
	}
	c, err := split(path, raw, ms...)
	return c, err == nil, err
}

// str reads member m as an optional string.
func (o object) str(m member) (string, error) {
	raw, ok := o.get(m)
	if !ok {
		return "", nil
	}
	s, ok := jsonscan.String(raw)
	if !ok {
		return "", fieldError{o.path + "." + string(m), "must be a string"}
	}
	return s, nil
}

// fieldError is a member that is present but invalid.
type fieldError struct{ path, problem string }

func (e fieldError) Error() string { return e.path + " " + e.problem }

// parse reads a verified body and returns the event to store (AppKey not set) and
// Persona's event id, data.id ("" when the body has none).
//
// The body must be one UTF-8 JSON object, nested at most maxDepth deep, with no member it
// reads given twice, in one inflection or two (KindInvalid, CodeMalformedPayload). Then
// (KindUnprocessable, CodeInvalidPayload, the message naming the member):
//   - data and data.attributes: required objects; data.id an optional string.
//   - data.attributes.name: required, 1 to 128 printable ASCII characters.
//   - the inquiry: data.attributes.payload.data when its type is "inquiry", else the
//     object payload.data.relationships.inquiry.data names; its id is required, starts
//     with inq_ and passes domain.ParseProviderID.
//   - the inquiry's status (when the payload is the inquiry): an optional string of at
//     most 128 printable ASCII characters; its reference-id an optional string (null is
//     absent) of at most 256 bytes without control characters.
//
// data.attributes.created-at that does not parse is skipped, not refused: the event is
// worth more than its timestamp, and eventAtSource says where the time came from.
func parse(body []byte, receivedAt time.Time) (domain.Event, string, error) {
	ev, eventID, err := read(body, receivedAt)
	if err != nil {
		return domain.Event{}, "", refusal("persona.Open", err)
	}
	return ev, eventID, nil
}

// refusal is the refusal for one of read's errors: a fieldError is CodeInvalidPayload,
// anything else (not an object, too deep, a member twice) CodeMalformedPayload.
func refusal(op string, err error) error {
	var field fieldError
	if errors.As(err, &field) {
		return webhook.Invalid(op, field.path, field.problem)
	}
	return domain.Public(op, domain.KindInvalid, webhook.CodeMalformedPayload, err.Error())
}

// read is parse with its errors untyped by kind: fieldError for a member that is
// missing or invalid, anything else for malformed input.
func read(body []byte, receivedAt time.Time) (domain.Event, string, error) {
	top, err := split("body", body, mData)
	if err != nil {
		return domain.Event{}, "", err
	}
	data, ok, err := top.child(mData, mType, mID, mAttributes)
	if err != nil || !ok {
		return domain.Event{}, "", orMissing(err, "data")
	}
	eventID, err := data.str(mID)
	if err != nil {
		return domain.Event{}, "", err
	}
	attrs, ok, err := data.child(mAttributes, mName, mPayload, mCreatedAt)
	if err != nil || !ok {
		return domain.Event{}, "", orMissing(err, "data.attributes")
	}
	name, err := attrs.str(mName)
	if err == nil && name == "" {
		err = fieldError{"data.attributes.name", "is missing"}
	}
	if err == nil {
		err = checkPrintable("data.attributes.name", name)
	}
	if err != nil {
		return domain.Event{}, "", err
	}
	inquiry, err := findInquiry(attrs)
	if err != nil {
		return domain.Event{}, "", err
	}

	ev := webhook.NewEvent(Provider, body, receivedAt)
	ev.ApplicantID, ev.ExternalUserID = inquiry.id, domain.ExternalUserID(inquiry.referenceID)
	ev.Type, ev.ProviderStatus = domain.EventType(name), inquiry.status
	if raw, ok := attrs.get(mCreatedAt); ok {
		if t, ok := parseTime(raw); ok {
			ev.EventAt, ev.EventAtSource = t, SourceCreatedAt
		}
	}
	return ev, eventID, nil
}

// inquiryRef is what an event says of its inquiry.
type inquiryRef struct {
	id          domain.ApplicantID
	status      string // "" unless the payload is the inquiry
	referenceID string // "" unless the payload is the inquiry
}

// findInquiry finds the event's inquiry: the payload's object when it is one (its type
// says so, or it has none and its id is an inquiry id), else the inquiry its
// relationships name.
func findInquiry(attrs object) (inquiryRef, error) {
	const where = "data.attributes.payload.data"
	none := fieldError{where, "names no inquiry"}
	payload, ok, err := attrs.child(mPayload, mData)
	if err != nil || !ok {
		return inquiryRef{}, orField(err, none)
	}
	obj, ok, err := payload.child(mData, mType, mID, mAttributes, mRelationships)
	if err != nil || !ok {
		return inquiryRef{}, orField(err, none)
	}
	typ, err := obj.str(mType)
	if err != nil {
		return inquiryRef{}, err
	}
	idStr, _ := obj.str(mID)
	if typ == string(mInquiry) || (typ == "" && strings.HasPrefix(idStr, inquiryPrefix)) {
		id, err := inquiryID(obj)
		if err != nil {
			return inquiryRef{}, err
		}
		ref := inquiryRef{id: id}
		attrs, ok, err := obj.child(mAttributes, mStatus, mReferenceID)
		if err != nil || !ok {
			return ref, err
		}
		if ref.status, err = attrs.str(mStatus); err == nil {
			err = checkPrintable(attrs.path+".status", ref.status)
		}
		if err != nil {
			return inquiryRef{}, err
		}
		if ref.referenceID, err = attrs.str(mReferenceID); err == nil {
			err = checkText(attrs.path+".reference-id", ref.referenceID)
		}
		return ref, err
	}
	rels, ok, err := obj.child(mRelationships, mInquiry)
	if err != nil || !ok {
		return inquiryRef{}, orField(err, none)
	}
	rel, ok, err := rels.child(mInquiry, mData)
	if err != nil || !ok {
		return inquiryRef{}, orField(err, none)
	}
	target, ok, err := rel.child(mData, mType, mID)
	if err != nil || !ok {
		return inquiryRef{}, orField(err, none)
	}
	id, err := inquiryID(target)
	return inquiryRef{id: id}, err
}

// inquiryID reads o's id as an inquiry id.
func inquiryID(o object) (domain.ApplicantID, error) {
	s, err := o.str(mID)
	if err != nil {
		return "", err
	}
	path := o.path + ".id"
	if s == "" {
		return "", fieldError{path, "is missing"}
	}
	if !strings.HasPrefix(s, inquiryPrefix) {
		return "", fieldError{path, "is not an inquiry id (inq_...)"}
	}
	id, err := domain.ParseProviderID(s)
	if err != nil {
		return "", fieldError{path, "is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"}
	}
	return id, nil
}

// orMissing is err, or a fieldError saying path is missing when err is nil.
func orMissing(err error, path string) error {
	if err != nil {
		return err
	}
	return fieldError{path, "is missing"}
}

// orField is err, or f when err is nil.
func orField(err error, f fieldError) error {
	if err != nil {
		return err
	}
	return f
}

// checkPrintable is webhook.CheckPrintable for the name or status at path.
func checkPrintable(path, s string) error {
	if err := webhook.CheckPrintable(s); err != nil {
		return fieldError{path, err.Error()}
	}
	return nil
}

// checkText is webhook.CheckText for the reference-id at path.
func checkText(path, s string) error {
	if err := webhook.CheckText(s, maxTextLen); err != nil {
		return fieldError{path, err.Error()}
	}
	return nil
}

// parseTime reads a JSON string holding an RFC 3339 time, as Persona writes them
// ("2019-09-09T22:40:56.000Z"), as webhook.ParseTime bounds it.
func parseTime(raw json.RawMessage) (time.Time, bool) {
	s, ok := jsonscan.String(raw)
	if !ok {
		return time.Time{}, false
	}
	return webhook.ParseTime(s)
}
