// Package domain is kycstate's vocabulary: identifiers and their parsers, event types,
// applicant statuses and origins, the lifecycle state machine, the pure fold
// Apply(state, event) -> (state, record) with its digest chain, error kinds, and the
// interfaces the other packages implement (an event source, say).
//
// The fold is the only place a status changes: the projector, rebuild, verify, replay,
// point-in-time answers and the simulator all fold with it, so they cannot disagree.
// It is deterministic: no clock, no I/O, no dependence on map iteration order, so folding
// the same log always yields the same states, records and digests.
//
// It imports nothing of this module and no infrastructure (no net/http, NATS, bbolt,
// logger or metrics): only the standard library and the state machine library. An error
// carries a kind from here; which HTTP status a kind becomes is decided elsewhere, once.
package domain

import (
	"encoding/json"
	"time"
)

// AppKey identifies an Allpass application (a UUID, lower case).
type AppKey string

// ApplicantID is Allpass's applicant id (a UUID, lower case).
type ApplicantID string

// ExternalUserID is the product's own id for the user, as Allpass echoes it. Free text.
type ExternalUserID string

// SealedExternalUserID is an externalUserId encrypted under its applicant's data key
// (DESIGN.md section 11), bound to the applicant so it cannot be moved to another. The
// fold carries it as an opaque value; only the key ring (store/eventlog) opens it, at
// the edge, and once the key is destroyed nothing does.
type SealedExternalUserID string

// ExternalUserIndex is the keyed blind index of (appKey, externalUserId): an HMAC under
// a key only the key ring holds. The projection finds applicants by it, so it never
// needs the externalUserId in clear, and the fold stays pure: it copies the index from
// the event like any other field.
type ExternalUserIndex string

// EventType is an Allpass webhook event name, e.g. "applicantApproved".
type EventType string

// Status is an applicant's verification status. The zero value means "no status yet".
type Status string

// The eight statuses of DESIGN.md section 5.
const (
	StatusNone       Status = ""
	StatusInit       Status = "INIT"
	StatusIncomplete Status = "INCOMPLETE"
	StatusInProgress Status = "IN_PROGRESS"
	StatusInReview   Status = "IN_REVIEW"
	StatusOnHold     Status = "ON_HOLD"
	StatusCompleted  Status = "COMPLETED"
	StatusApproved   Status = "APPROVED"
	StatusRejected   Status = "REJECTED"
)

// Statuses lists every status in lifecycle order.
func Statuses() []Status {
	return []Status{StatusInit, StatusIncomplete, StatusInProgress, StatusInReview,
		StatusOnHold, StatusCompleted, StatusApproved, StatusRejected}
}

// Valid reports whether s is one of the eight statuses (not StatusNone).
func (s Status) Valid() bool {
	switch s {
	case StatusInit, StatusIncomplete, StatusInProgress, StatusInReview,
		StatusOnHold, StatusCompleted, StatusApproved, StatusRejected:
		return true
	}
	return false
}

// ParseStatus reads a status name in any ASCII case ("approved", "In_Review"). Only
// ASCII letters are folded: strings.ToUpper would also turn "ınit" (dotless i) into INIT
// and "ſ" (long s) into S, so a name no client meant would pass as a status.
func ParseStatus(s string) (Status, bool) {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	st := Status(b)
	return st, st.Valid()
}

// Status events.
const (
	EventCreated    EventType = "applicantCreated"
	EventIncomplete EventType = "applicantIncomplete"
	EventInProgress EventType = "applicantInProgress"
	EventInReview   EventType = "applicantInReview"
	EventOnHold     EventType = "applicantOnHold"
	EventCompleted  EventType = "applicantCompleted"
	EventApproved   EventType = "applicantApproved"
	EventRejected   EventType = "applicantRejected"
)

// Annotation events.
const (
	EventStepPassed                EventType = "applicantStepPassed"
	EventDuplicateDocument         EventType = "applicantDuplicateDocument"
	EventExpiredDocument           EventType = "expiredDocument"
	EventAdditionalDocumentStepErr EventType = "additionalDocumentStepError"
	EventDuplicateEmail            EventType = "applicantDuplicateEmail"
	EventDuplicatePhone            EventType = "applicantDuplicatePhone"
)

// EventErased is the operator event that erases an applicant's personal data (DESIGN.md
// section 11). Only an event of OriginOperator has that effect: a webhook that calls
// itself applicantErased is an unknown event like any other name Allpass does not send.
const EventErased EventType = "applicantErased"

// Class classifies an event type by its effect on the fold. It is named apart from
// ErrorKind (KindInvalid, ...), which classifies failures.
type Class int

const (
	ClassUnknown    Class = iota // any name Allpass may add later: stored, shown, no effect
	ClassStatus                  // moves the applicant's status
	ClassAnnotation              // records steps, flags or warnings
	ClassErasure                 // applicantErased: personal data goes, the trail stays
)

// Class returns the catalogue class of t.
func (t EventType) Class() Class {
	if _, ok := statusOf[t]; ok {
		return ClassStatus
	}
	switch t {
	case EventStepPassed, EventDuplicateDocument, EventExpiredDocument,
		EventAdditionalDocumentStepErr, EventDuplicateEmail, EventDuplicatePhone:
		return ClassAnnotation
	case EventErased:
		return ClassErasure
	}
	return ClassUnknown
}

// Origin is where an event came from (DESIGN.md section 3).
type Origin string

const (
	// OriginWebhook is an Allpass webhook. Events stored before origins were recorded
	// carry none and are webhooks: OrDefault says so.
	OriginWebhook Origin = "webhook"
	// OriginOpenAPI is a status read from Allpass's Open API by reconciliation (section 10).
	OriginOpenAPI Origin = "openapi"
	// OriginOperator is an event an operator caused: an erasure (section 11).
	OriginOperator Origin = "operator"
)

// OrDefault returns o, or OriginWebhook for an event stored without an origin.
func (o Origin) OrDefault() Origin {
	if o == "" {
		return OriginWebhook
	}
	return o
}

// Valid reports whether o is one of the three origins.
func (o Origin) Valid() bool {
	return o == OriginWebhook || o == OriginOpenAPI || o == OriginOperator
}

// Target returns the status a status event moves to, and false for other events.
func (t EventType) Target() (Status, bool) {
	s, ok := statusOf[t]
	return s, ok
}

// Event returns the status event that leads to s (APPROVED: applicantApproved), and
// false for StatusNone or a value that is not a status. Reconciliation appends it when
// Allpass's Open API reports s (DESIGN.md section 10).
func (s Status) Event() (EventType, bool) {
	for t, to := range statusOf {
		if to == s {
			return t, true
		}
	}
	return "", false
}

// statusOf maps each status event to its destination. Read-only after package init
// (a composite literal, no init function).
var statusOf = map[EventType]Status{
	EventCreated:    StatusInit,
	EventIncomplete: StatusIncomplete,
	EventInProgress: StatusInProgress,
	EventInReview:   StatusInReview,
	EventOnHold:     StatusOnHold,
	EventCompleted:  StatusCompleted,
	EventApproved:   StatusApproved,
	EventRejected:   StatusRejected,
}

// StoredVersion is the version of the stored message format written by this build.
// Version 3 (DESIGN.md section 15) is version 2 without the blind index (extIndex) and
// with a MAC under the log key as its last field (mac); an operator's payload is sealed
// under the log key. Versions 1 and 2 are still read.
const StoredVersion = 3

// StoredVersionSealed is version 2 (DESIGN.md section 11): externalUserId, payload and
// raw encrypted under the applicant's data key (sealedExt, sealed), beside the blind
// index extIndex in clear, and no MAC. Logs written before version 3 hold it.
const StoredVersionSealed = 2

// StoredVersionClear is the first stored format: every field in clear. It is what an
// event log without a key ring writes, and what logs written before version 2 hold.
const StoredVersionClear = 1

// Event is one event as the event log stores it (DESIGN.md section 3): a webhook, a
// status reconciled from the Open API, or an operator's erasure (Origin says which). The JSON form
// is the stored message; Seq and Stored are filled when the event is read back.
type Event struct {
	V              int            `json:"v"`
	Provider       string         `json:"provider"`
	Origin         Origin         `json:"origin,omitempty"`
	AppKey         AppKey         `json:"appKey"`
	ApplicantID    ApplicantID    `json:"applicantId"`
	ExternalUserID ExternalUserID `json:"externalUserId,omitempty"`
	Type           EventType      `json:"type"`
	// ProviderStatus is the provider's own status as the event states it (Sumsub's
	// review answer, Persona's inquiry status, Veriff's decision, Onfido's workflow run
	// status; DESIGN.md section 13), verbatim. Allpass events have none: their type is
	// their status. The fold maps (provider, type, providerStatus) to the common status.
	ProviderStatus string `json:"providerStatus,omitempty"`
	// StepName and Warnings are copied out of the payload at ingest so that the fold does
	// not parse the payload again; the payload stays the authority.
	StepName      string          `json:"stepName,omitempty"`
	Warnings      []string        `json:"warnings,omitempty"`
	EventAt       time.Time       `json:"eventAt"`
	EventAtSource string          `json:"eventAtSource"`
	ReceivedAt    time.Time       `json:"receivedAt"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	Raw           *Raw            `json:"raw,omitempty"`

	// ContentID is the event's content id (DESIGN.md section 15): a hash of the provider,
	// the app and the bytes the provider's signature authenticated, and the event's
	// Nats-Msg-Id. The fold makes an event whose content id it has seen for the applicant
	// a duplicate, whatever its time. Events stored before content ids, reconciled
	// statuses and operator events (which have ids of their own) carry none.
	ContentID ContentID `json:"cid,omitempty"`
	// TimeFlag says why EventAt is the receive time rather than the event's own time:
	// TimeFlagClockSkew when that time lay outside the window ingest trusts (BoundTime).
	TimeFlag TimeFlag `json:"timeFlag,omitempty"`

	// Versions 2 and 3. ExternalUserIndex is the blind index of the externalUserId, in
	// clear (version 2 only: version 3 never stores it, the projection computes it);
	// SealedExternalUserID the id itself, sealed; Sealed the payload and raw, sealed
	// together (base64). An event read without its key has these and no
	// ExternalUserID, Payload or Raw; the fold needs none of the three.
	ExternalUserIndex    ExternalUserIndex    `json:"extIndex,omitempty"`
	SealedExternalUserID SealedExternalUserID `json:"sealedExt,omitempty"`
	Sealed               string               `json:"sealed,omitempty"`

	// Seq is the stream sequence the event was stored at (0 before it is stored).
	Seq uint64 `json:"-"`
	// Stored is the exact bytes of the stored message; the digest chain hashes these.
	Stored []byte `json:"-"`
	// Auth is what the log's reader found of the event's MAC (DESIGN.md section 15).
	Auth Auth `json:"-"`
}

// Auth is the verdict on a stored event's MAC under the log key, set by the event log's
// readers. The fold acts on AuthFailed alone.
type Auth uint8

const (
	// AuthUnchecked: not checked; an event built in memory, or read by a log opened
	// without its key ring. Folded as any event.
	AuthUnchecked Auth = iota
	// AuthSigned: the MAC is good: kycstate wrote these bytes on this subject.
	AuthSigned
	// AuthUnsigned: no MAC, stored before the log key was made (a legacy event);
	// folded as before.
	AuthUnsigned
	// AuthFailed: a MAC that does not match, or none where one is due: the fold gives
	// the event OutcomeUnauthenticated and nothing else.
	AuthFailed
)

func (a Auth) String() string {
	switch a {
	case AuthSigned:
		return "signed"
	case AuthUnsigned:
		return "unsigned"
	case AuthFailed:
		return "failed"
	}
	return "unchecked"
}

// Raw is the original HTTP request, kept so an auditor can re-verify authenticity offline.
type Raw struct {
	Body      string `json:"body"`
	Signature string `json:"signature,omitempty"`
}

// Where an event's time came from.
const (
	SourcePayloadUpdatedAt = "payload.updatedAt"
	SourcePayloadCreatedAt = "payload.createdAt"
	SourcePayloadTime      = "payload.time"
	SourcePayloadTimestamp = "payload.timestamp"
	SourceEnvelopeTime     = "envelope.time"
	SourceReceived         = "received"
	SourceOpenAPITime      = "openapi.time" // a reconciled status: the Open API response's time
)
