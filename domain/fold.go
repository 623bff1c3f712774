package domain

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/looplab/fsm"
)

// Outcome is what the fold decided about one event. Every event gets exactly one.
type Outcome string

// The outcomes, in the order the fold checks them (DESIGN.md section 5).
const (
	OutcomeDuplicate Outcome = "duplicate" // same type, stepName and eventAt as an event already applied, or a content id already seen
	OutcomeStale     Outcome = "stale"     // a status event older than the latest applied status event
	OutcomeApplied   Outcome = "applied"   // a regular transition, or to the status it already has
	OutcomeIrregular Outcome = "irregular" // a transition the table does not list: applied and flagged
	OutcomeAnnotated Outcome = "annotated" // steps passed, flags, warnings recorded
	OutcomeUnknown   Outcome = "unknown"   // an event name not in the catalogue: recorded, no effect
	// OutcomeReconciled is a status read from the Open API that changes the status: applied
	// whatever the table says (Allpass's current truth skips steps), not an anomaly.
	OutcomeReconciled Outcome = "reconciled"
	// OutcomeErased is an operator's erasure: the status stays, personal data goes.
	OutcomeErased Outcome = "erased"
	// OutcomeUnauthenticated is an event whose MAC under the log key failed, or that
	// came without one where one is due (AuthFailed): something other than kycstate wrote
	// it. It is recorded and has no effect (DESIGN.md section 15).
	OutcomeUnauthenticated Outcome = "unauthenticated"
)

// Outcomes lists every outcome, in the order the fold checks them: unauthenticated
// comes before every other rule.
func Outcomes() []Outcome {
	return []Outcome{OutcomeUnauthenticated, OutcomeDuplicate, OutcomeStale, OutcomeApplied, OutcomeIrregular,
		OutcomeAnnotated, OutcomeUnknown, OutcomeReconciled, OutcomeErased}
}

// Valid reports whether o is one of the outcomes.
func (o Outcome) Valid() bool { return slices.Contains(Outcomes(), o) }

// Digest is the per-applicant hash chain: SHA-256(previous digest || stored event bytes).
type Digest [32]byte

// MarshalText encodes the digest as lower-case hex; the zero digest (no events) is "".
func (d Digest) MarshalText() ([]byte, error) {
	if d == (Digest{}) {
		return []byte{}, nil
	}
	return []byte(hex.EncodeToString(d[:])), nil
}

// UnmarshalText decodes lower-case hex, or "" for the zero digest.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Digest{}
		return nil
	}
	if len(b) != 64 {
		return fmt.Errorf("digest: want 64 hex characters, got %d", len(b))
	}
	_, err := hex.Decode(d[:], b)
	return err
}

func (d Digest) String() string {
	if d == (Digest{}) {
		return ""
	}
	var b [2 * len(d)]byte
	hex.Encode(b[:], d[:])
	return string(b[:])
}

// Next chains one event's stored bytes onto d.
func (d Digest) Next(stored []byte) Digest {
	h := sha256.New()
	if d != (Digest{}) {
		h.Write(d[:])
	}
	h.Write(stored)
	var out Digest
	h.Sum(out[:0])
	return out
}

// State is an applicant's current state, as folded from its events in stream order.
type State struct {
	ApplicantID ApplicantID `json:"applicantId"`
	AppKey      AppKey      `json:"appKey"`
	// Provider is the provider of the applicant's events (DESIGN.md section 13); with
	// AppKey (the app's name for providers other than Allpass) and ApplicantID it names
	// the applicant (Key). A state read from a projection written before providers is
	// Allpass's.
	Provider Provider `json:"provider"`
	// ProviderStatus is the provider's own status as the latest applied status event
	// stated it (Event.ProviderStatus), verbatim; Allpass's events state none.
	ProviderStatus string         `json:"providerStatus,omitempty"`
	ExternalUserID ExternalUserID `json:"externalUserId"`
	// SealedExternalUserID and ExternalUserIndex replace ExternalUserID for an applicant
	// whose latest externalUserId came in a version 2 event: one or the other is set.
	SealedExternalUserID SealedExternalUserID `json:"sealedExt,omitempty"`
	ExternalUserIndex    ExternalUserIndex    `json:"extIndex,omitempty"`
	Status               Status               `json:"status"`
	StatusAt             time.Time            `json:"statusAt"`    // eventAt of the latest applied status event
	LastEventAt          time.Time            `json:"lastEventAt"` // latest eventAt of any event
	LastSeq              uint64               `json:"lastSeq"`
	Events               int                  `json:"events"` // every event folded, whatever its outcome
	StepsPassed          []string             `json:"stepsPassed"`
	Flags                []string             `json:"flags"`
	Warnings             []string             `json:"warnings"`
	Anomalies            int                  `json:"anomalies"`
	Digest               Digest               `json:"digest"`
	// ReconciledAt is the eventAt of the latest reconciled event (zero: never).
	ReconciledAt time.Time `json:"reconciledAt"`
	// Erased is set by the applicant's erasure and never cleared: ExternalUserID stays
	// empty from then on, whatever later events carry.
	Erased bool `json:"erased"`
	// Seen holds the fingerprints (type, stepName, eventAt) of the events applied so far,
	// sorted, for the duplicate rule. Eight bytes each: a false duplicate needs a 64-bit
	// collision within one applicant's few dozen events.
	Seen []uint64 `json:"seen,omitempty"`
	// SeenContent holds the fingerprints of the content ids (DESIGN.md section 15) of every
	// event folded so far but the unauthenticated, sorted: eight bytes of the id each, as
	// Seen. A set of its own rather than a second hash domain in Seen, because the two
	// are kept by different rules: Seen marks only the events that took effect, so that a
	// stale event does not shadow a later one with its type and time, while a content id
	// is marked by every event that carries one, stale and duplicate too, since the same
	// authenticated bytes are the same event whatever the fold made of them the first
	// time. Events stored before content ids add nothing.
	SeenContent []uint64 `json:"seenContent,omitempty"`
}

// Record is one event's line in an applicant's history: what arrived and what the fold
// decided. It holds everything the fold reads, so history can be folded again (Refold)
// without the log, and the digest after the event so the refolded state carries it.
type Record struct {
	Seq         uint64      `json:"seq"`
	ApplicantID ApplicantID `json:"applicantId"`
	AppKey      AppKey      `json:"appKey"`
	// Provider and ProviderStatus are the event's (Event.Provider, read by ProviderOf, and
	// Event.ProviderStatus): the fold's inputs, so Refold classifies the event again as
	// Apply did.
	Provider       Provider       `json:"provider"`
	ProviderStatus string         `json:"providerStatus,omitempty"`
	ExternalUserID ExternalUserID `json:"externalUserId,omitempty"`
	// SealedExternalUserID and ExternalUserIndex are the event's, as in Event.
	SealedExternalUserID SealedExternalUserID `json:"sealedExt,omitempty"`
	ExternalUserIndex    ExternalUserIndex    `json:"extIndex,omitempty"`
	Type                 EventType            `json:"type"`
	Origin               Origin               `json:"origin"`
	EventAt              time.Time            `json:"eventAt"`
	EventAtSource        string               `json:"eventAtSource"`
	ReceivedAt           time.Time            `json:"receivedAt"`
	Outcome              Outcome              `json:"outcome"`
	From                 Status               `json:"from"`
	To                   Status               `json:"to"`
	StepName             string               `json:"stepName,omitempty"`
	Warnings             []string             `json:"warnings"`
	Digest               Digest               `json:"digest"`

	// ContentID and TimeFlag are the event's, as in Event: Refold needs the content id
	// for the duplicate rule, and history shows the flag beside the time it explains.
	ContentID ContentID `json:"cid,omitempty"`
	TimeFlag  TimeFlag  `json:"timeFlag,omitempty"`
}

// StatusChanged reports whether the record moved the applicant to a different status.
func (r Record) StatusChanged() bool { return r.From != r.To }

// Key returns the key of the applicant the record belongs to.
func (r Record) Key() ApplicantKey { return KeyOf(r.Provider, r.AppKey, r.ApplicantID) }

// fsmNew is the lifecycle machine's name for "no status yet"; it never leaves this package.
const fsmNew = "NEW"

// Lifecycle returns the table of DESIGN.md section 5 as looplab/fsm events. It is the only
// statement of which transitions are regular; Apply and the diagram both read it.
func Lifecycle() fsm.Events {
	src := func(ss ...Status) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = string(s)
		}
		return out
	}
	return fsm.Events{
		{Name: string(EventCreated), Src: []string{fsmNew}, Dst: string(StatusInit)},
		{Name: string(EventIncomplete), Src: src(StatusInit, StatusInProgress, StatusOnHold, StatusApproved, StatusRejected), Dst: string(StatusIncomplete)},
		{Name: string(EventInProgress), Src: src(StatusInit, StatusIncomplete, StatusOnHold, StatusApproved, StatusRejected), Dst: string(StatusInProgress)},
		{Name: string(EventOnHold), Src: src(StatusIncomplete, StatusInProgress, StatusInReview, StatusCompleted), Dst: string(StatusOnHold)},
		{Name: string(EventInReview), Src: src(StatusInProgress, StatusOnHold, StatusCompleted), Dst: string(StatusInReview)},
		{Name: string(EventCompleted), Src: src(StatusInProgress, StatusOnHold, StatusInReview), Dst: string(StatusCompleted)},
		{Name: string(EventApproved), Src: src(StatusInProgress, StatusInReview, StatusOnHold, StatusCompleted, StatusRejected), Dst: string(StatusApproved)},
		{Name: string(EventRejected), Src: src(StatusInProgress, StatusInReview, StatusOnHold, StatusCompleted, StatusApproved), Dst: string(StatusRejected)},
	}
}

// NewMachine builds Allpass's lifecycle FSM, positioned at "no status yet".
func NewMachine() *fsm.FSM { return fsm.NewFSM(fsmNew, Lifecycle(), nil) }

// Folder applies events to states. It reuses one FSM (building one costs about ten
// times a transition) and remembers the machine's answers (a transition costs more
// than the rest of a fold but for the digest), so a Folder belongs to one goroutine at
// a time.
type Folder struct {
	machines map[Provider]*fsm.FSM // each provider's journey, built when first asked
	answers  map[transition]bool   // the machines' answers, at most maxAnswers of them
}

// transition is one question the fold asks a provider's machine: from a status, the
// transition named name (an event type for Allpass, a destination status for the others;
// see journey).
type transition struct {
	p    Provider
	from Status
	name string
}

// maxAnswers bounds what a Folder remembers. Apply asks only about status events (some
// 72 questions per provider), but Regular is exported and event types are free text: a
// caller asking about invented ones must not grow the map without end.
const maxAnswers = 1024

// NewFolder returns a Folder with its own lifecycle machines.
func NewFolder() *Folder {
	return &Folder{machines: map[Provider]*fsm.FSM{}, answers: map[transition]bool{}}
}

// journey returns p's table of regular transitions as looplab/fsm events, and whether
// the fold names a transition by the common status it leads to rather than by the
// event's type: Allpass's Lifecycle names each by its event type, the other providers'
// journeys (journey_<provider>.go) by their destination, since a type of theirs does
// not name a status alone (Sumsub's applicantReviewed leads to three). ok is false for
// a provider without a journey, whose events the fold never classifies as status events.
func (p Provider) journey() (events fsm.Events, byStatus, ok bool) {
	switch p {
	case ProviderAllpass:
		return Lifecycle(), false, true
	case ProviderSumsub:
		return journeySumsub(), true, true
	case ProviderPersona:
		return journeyPersona(), true, true
	case ProviderVeriff:
		return journeyVeriff(), true, true
	case ProviderOnfido:
		return journeyOnfido(), true, true
	}
	return nil, false, false
}

// Apply folds one event into s with a throwaway Folder. Use a Folder in loops.
func Apply(s State, e Event) (State, Record) { return NewFolder().Apply(s, e) }

// Regular reports whether Allpass's lifecycle table lists the transition from -> event.
// The machine decides; its answer to each question is remembered, since the table is
// fixed.
func (f *Folder) Regular(from Status, t EventType) bool {
	return f.regular(ProviderAllpass, from, string(t))
}

// RegularFor reports whether provider p's journey lists a status event of type t that
// leads to status to as a regular transition from from: Regular for Allpass, and for the
// other providers the transition to to in their journey (journey_<provider>.go). A
// provider without a journey lists none.
func (f *Folder) RegularFor(p Provider, from Status, t EventType, to Status) bool {
	_, byStatus, ok := p.journey()
	switch {
	case !ok:
		return false
	case byStatus:
		return f.regular(p, from, string(to))
	}
	return f.regular(p, from, string(t))
}

// regular asks p's machine about the transition name from from, remembering the answer.
func (f *Folder) regular(p Provider, from Status, name string) bool {
	q := transition{p, from, name}
	if ok, known := f.answers[q]; known {
		return ok
	}
	ok := f.ask(p, from, name)
	if len(f.answers) < maxAnswers {
		f.answers[q] = ok
	}
	return ok
}

// ask puts the question to p's machine, building it on the first question.
func (f *Folder) ask(p Provider, from Status, name string) bool {
	m := f.machines[p]
	if m == nil {
		events, _, ok := p.journey()
		if !ok {
			return false
		}
		m = fsm.NewFSM(fsmNew, events, nil)
		f.machines[p] = m
	}
	cur := string(from)
	if from == StatusNone {
		cur = fsmNew
	}
	m.SetState(cur)
	err := m.Event(context.Background(), name)
	if err == nil {
		return true
	}
	var noTransition fsm.NoTransitionError
	return errors.As(err, &noTransition)
}

// Apply folds e into s and returns the new state and the history record of the decision.
// s is not modified; the returned state shares no slices with it. Apply assumes events
// arrive in stream order (e.Seq increasing) and uses nothing but s and e.
func (f *Folder) Apply(s State, e Event) (State, Record) {
	next := s.Clone()
	rec := f.Fold(&next, &e)
	return next, rec
}

// Fold is Apply in place: it folds e into *s and returns the history record. The lists
// of *s are changed where they stand, so a caller that keeps the state as it was before
// uses Apply. The record shares e's warnings, as Apply's does. A rebuild folds each
// applicant's state this way, without a copy of it per event.
func (f *Folder) Fold(s *State, e *Event) Record {
	prev, prevAt := s.Status, s.StatusAt
	provider := ProviderOf(e.Provider)
	s.StepsPassed, s.Flags, s.Warnings = nonNil(s.StepsPassed), nonNil(s.Flags), nonNil(s.Warnings)
	if s.ApplicantID == "" {
		s.ApplicantID = e.ApplicantID
		s.AppKey = e.AppKey
		s.Provider = provider
	}
	if s.Provider == "" {
		s.Provider = ProviderAllpass // a state folded before providers were recorded
	}
	s.Events++
	s.LastSeq = e.Seq
	s.Digest = s.Digest.Next(e.Stored)

	rec := Record{
		Seq: e.Seq, ApplicantID: e.ApplicantID, AppKey: e.AppKey, Provider: provider,
		ProviderStatus: e.ProviderStatus, ExternalUserID: e.ExternalUserID,
		SealedExternalUserID: e.SealedExternalUserID, ExternalUserIndex: e.ExternalUserIndex,
		Type: e.Type, Origin: e.Origin.OrDefault(), EventAt: e.EventAt, EventAtSource: e.EventAtSource, ReceivedAt: e.ReceivedAt,
		From: prev, To: prev, StepName: e.StepName, Warnings: nonNil(e.Warnings),
		Digest: s.Digest, ContentID: e.ContentID, TimeFlag: e.TimeFlag,
	}

	if e.Auth == AuthFailed {
		// Before every other rule: an event kycstate did not write changes nothing but
		// the trail (Events, LastSeq and the digest, which chains the log as it is). It
		// marks no fingerprint, so a genuine event like it is not taken for a duplicate,
		// and leaves LastEventAt, so a forged future time cannot hold off retention.
		// Nor does its history record repeat the externalUserId it claims.
		rec.Outcome = OutcomeUnauthenticated
		rec.ExternalUserID, rec.SealedExternalUserID, rec.ExternalUserIndex = "", "", ""
		return rec
	}
	fp := fingerprint(e)
	// The provider's table says what the event does (DESIGN.md section 13); for Allpass,
	// its type alone. An erasure is the operator's, whatever the applicant's provider:
	// only an operator erases, and a webhook of that name is unknown.
	class, to := provider.Classify(e.Type, e.ProviderStatus)
	switch {
	case e.Type == EventErased && rec.Origin == OriginOperator:
		class, to = ClassErasure, StatusNone
	case class == ClassErasure:
		class = ClassUnknown
	}
	// Rule 1 also holds for the authenticated bytes: a webhook replayed with another
	// envelope time, an hour or a year later, is the event it copies (DESIGN.md section 15).
	repeated := false
	if e.ContentID != "" {
		repeated = !s.markContent(contentFingerprint(e.ContentID))
	}
	switch {
	case repeated || s.seen(fp):
		// A duplicate's time is not news: a fingerprint twin has its original's, and a
		// replay's comes from whoever resent it. Leaving LastEventAt keeps a captured
		// webhook, replayed with today's envelope time, from holding off retention.
		rec.Outcome = OutcomeDuplicate
		return rec
	case class == ClassStatus && prev != StatusNone && e.EventAt.Before(prevAt):
		rec.Outcome = OutcomeStale // older than StatusAt, so not later than LastEventAt
		return rec
	}
	if e.EventAt.After(s.LastEventAt) {
		s.LastEventAt = e.EventAt
	}

	s.markSeen(fp)
	// An unknown event has no effect (DESIGN.md section 5), and that includes the
	// externalUserId it may carry: its meaning is not known until the name is catalogued.
	// After an erasure no event brings personal data back. A version 2 event carries
	// the id sealed, with its blind index; a version 1 event in clear: the state keeps
	// whichever came last, never both.
	if class != ClassUnknown && !s.Erased {
		switch {
		case e.SealedExternalUserID != "":
			s.ExternalUserID = ""
			s.SealedExternalUserID, s.ExternalUserIndex = e.SealedExternalUserID, e.ExternalUserIndex
		case e.ExternalUserID != "":
			s.ExternalUserID = e.ExternalUserID
			s.SealedExternalUserID, s.ExternalUserIndex = "", ""
		}
	}
	switch class {
	case ClassStatus:
		rec.Outcome = OutcomeApplied
		switch {
		case to == prev:
		case rec.Origin == OriginOpenAPI:
			// Rule 7: the Open API is Allpass's current truth, reached by steps no webhook
			// told; rules 1 and 2 (duplicate, stale) have already had their say.
			rec.Outcome = OutcomeReconciled
			s.ReconciledAt = e.EventAt
		case !f.RegularFor(provider, prev, e.Type, to):
			rec.Outcome = OutcomeIrregular
			s.Anomalies++
		}
		s.Status, s.StatusAt, rec.To = to, e.EventAt, to
		s.ProviderStatus = e.ProviderStatus
		s.Warnings = appendNew(s.Warnings, e.Warnings...)
	case ClassErasure:
		rec.Outcome = OutcomeErased
		s.Erased = true
		s.ExternalUserID = ""
		s.SealedExternalUserID, s.ExternalUserIndex = "", ""
	case ClassAnnotation:
		rec.Outcome = OutcomeAnnotated
		if e.Type == EventStepPassed {
			if e.StepName != "" {
				s.StepsPassed = appendNew(s.StepsPassed, e.StepName)
			}
		} else {
			s.Flags = appendNew(s.Flags, string(e.Type))
		}
		s.Warnings = appendNew(s.Warnings, e.Warnings...)
	default:
		rec.Outcome = OutcomeUnknown
	}
	return rec
}

// Refold rebuilds the state that a run of history records describes, in order. It is how
// the API answers "what did the service know at seq N": the records hold every input the
// fold reads, and each carries the digest after its event.
func (f *Folder) Refold(records []Record) State {
	var s State
	for _, r := range records {
		s, _ = f.Apply(s, r.Event())
		s.Digest = r.Digest
	}
	return s
}

// Event returns the fold's inputs recorded in r (without the stored bytes).
func (r Record) Event() Event {
	return Event{
		Seq: r.Seq, Provider: string(r.Provider), ProviderStatus: r.ProviderStatus,
		AppKey: r.AppKey, ApplicantID: r.ApplicantID, ExternalUserID: r.ExternalUserID,
		SealedExternalUserID: r.SealedExternalUserID, ExternalUserIndex: r.ExternalUserIndex,
		Type: r.Type, Origin: r.Origin, StepName: r.StepName, Warnings: r.Warnings, EventAt: r.EventAt,
		EventAtSource: r.EventAtSource, ReceivedAt: r.ReceivedAt, Auth: r.auth(),
		ContentID: r.ContentID, TimeFlag: r.TimeFlag,
	}
}

// auth is the verdict a record's outcome implies: an unauthenticated event folds again
// as one.
func (r Record) auth() Auth {
	if r.Outcome == OutcomeUnauthenticated {
		return AuthFailed
	}
	return AuthUnchecked
}

// Clone returns s with its own copies of the lists: changing one leaves the other as it
// was.
func (s State) Clone() State {
	s.StepsPassed = slices.Clone(nonNil(s.StepsPassed))
	s.Flags = slices.Clone(nonNil(s.Flags))
	s.Warnings = slices.Clone(nonNil(s.Warnings))
	s.Seen = slices.Clone(s.Seen)
	s.SeenContent = slices.Clone(s.SeenContent)
	return s
}

func (s *State) seen(fp uint64) bool {
	_, found := slices.BinarySearch(s.Seen, fp)
	return found
}

func (s *State) markSeen(fp uint64) {
	i, found := slices.BinarySearch(s.Seen, fp)
	if !found {
		s.Seen = slices.Insert(s.Seen, i, fp)
	}
}

// markContent adds a content id's fingerprint to the set and reports whether it is new.
func (s *State) markContent(fp uint64) bool {
	i, found := slices.BinarySearch(s.SeenContent, fp)
	if !found {
		s.SeenContent = slices.Insert(s.SeenContent, i, fp)
	}
	return !found
}

// contentFingerprint is the eight bytes of a content id the fold keeps. A content id is
// already a SHA-256 in hex, so its first sixteen digits serve as they are; anything else
// in the field (not written by this build) is hashed.
func contentFingerprint(c ContentID) uint64 {
	if len(c) == 2*sha256.Size {
		var b [8]byte
		if _, err := hex.Decode(b[:], []byte(c[:16])); err == nil {
			return binary.BigEndian.Uint64(b[:])
		}
	}
	sum := sha256.Sum256([]byte("content id\x00" + string(c)))
	return binary.BigEndian.Uint64(sum[:8])
}

// fingerprint identifies an event for the duplicate rule: type, stepName and eventAt,
// and the provider's status when the event states one. A type of a provider other than
// Allpass does not name its status alone (Sumsub's applicantReviewed is GREEN or RED), so
// two events of one type and time with different statuses are two events; an Allpass
// event states none, and hashes exactly as before providers.
func fingerprint(e *Event) uint64 {
	h := sha256.New()
	h.Write([]byte(e.Type))
	h.Write([]byte{0})
	h.Write([]byte(e.StepName))
	h.Write([]byte{0})
	var t [12]byte
	binary.BigEndian.PutUint64(t[:8], uint64(e.EventAt.Unix()))
	binary.BigEndian.PutUint32(t[8:], uint32(e.EventAt.Nanosecond()))
	h.Write(t[:])
	if e.ProviderStatus != "" {
		h.Write([]byte{0})
		h.Write([]byte(e.ProviderStatus))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return binary.BigEndian.Uint64(sum[:8])
}

// appendNew appends the values not already in list, keeping first-seen order.
func appendNew(list []string, vals ...string) []string {
	for _, v := range vals {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
