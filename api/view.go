package api

import (
	"github.com/kycstate/kycstate/domain"
)

// The response bodies. They are views, not the domain types: domain.State carries the
// fold's internal bookkeeping, and the wire form is a contract (DESIGN.md section 7,
// openapi.yaml) that must not change when the store's does. "None" is null, lists are
// never null, times are RFC 3339 UTC.

// stateView is one applicant's state.
type stateView struct {
	ApplicantID    domain.ApplicantID `json:"applicantId"`
	AppKey         domain.AppKey      `json:"appKey"`
	ExternalUserID *string            `json:"externalUserId"` // null: Allpass never sent one
	Status         *string            `json:"status"`         // null: no status event applied yet
	StatusAt       *Time              `json:"statusAt"`       // eventAt of the latest applied status event; null with status
	LastEventAt    Time               `json:"lastEventAt"`
	LastSeq        uint64             `json:"lastSeq"`
	Events         int                `json:"events"`
	StepsPassed    []string           `json:"stepsPassed"`
	Flags          []string           `json:"flags"`
	Warnings       []string           `json:"warnings"`
	Anomalies      int                `json:"anomalies"`
	Digest         string             `json:"digest"`
}

func newStateView(s domain.State) stateView {
	v := stateView{
		ApplicantID:    s.ApplicantID,
		AppKey:         s.AppKey,
		ExternalUserID: strPtr(s.ExternalUserID),
		Status:         strPtr(s.Status),
		LastEventAt:    Time(s.LastEventAt),
		LastSeq:        s.LastSeq,
		Events:         s.Events,
		StepsPassed:    nonNil(s.StepsPassed),
		Flags:          nonNil(s.Flags),
		Warnings:       nonNil(s.Warnings),
		Anomalies:      s.Anomalies,
		Digest:         s.Digest.String(),
	}
	if s.Status != domain.StatusNone {
		v.StatusAt = timePtr(s.StatusAt)
	}
	return v
}

func newStateViews(ss []domain.State) []stateView {
	out := make([]stateView, len(ss))
	for i, s := range ss {
		out[i] = newStateView(s)
	}
	return out
}

// eventView is one line of an applicant's history.
type eventView struct {
	Seq           uint64           `json:"seq"`
	Type          domain.EventType `json:"type"`
	EventAt       Time             `json:"eventAt"`
	EventAtSource string           `json:"eventAtSource"`
	ReceivedAt    Time             `json:"receivedAt"`
	Outcome       domain.Outcome   `json:"outcome"`
	From          *string          `json:"from"` // null: no status before
	To            *string          `json:"to"`   // null: still no status after
	StepName      *string          `json:"stepName"`
	Warnings      []string         `json:"warnings"`
}

func newEventView(r domain.Record) eventView {
	return eventView{
		Seq:           r.Seq,
		Type:          r.Type,
		EventAt:       Time(r.EventAt),
		EventAtSource: r.EventAtSource,
		ReceivedAt:    Time(r.ReceivedAt),
		Outcome:       r.Outcome,
		From:          strPtr(r.From),
		To:            strPtr(r.To),
		StepName:      strPtr(r.StepName),
		Warnings:      nonNil(r.Warnings),
	}
}

type historyView struct {
	ApplicantID domain.ApplicantID `json:"applicantId"`
	Events      []eventView        `json:"events"`
	Next        *uint64            `json:"next"` // null: this page is the last
}

// anomalyView is an irregular event with the applicant it belongs to.
type anomalyView struct {
	ApplicantID    domain.ApplicantID `json:"applicantId"`
	AppKey         domain.AppKey      `json:"appKey"`
	ExternalUserID *string            `json:"externalUserId"`
	eventView
}

type anomaliesView struct {
	Anomalies []anomalyView `json:"anomalies"`
	Next      *uint64       `json:"next"` // null: this page is the last
}

func newAnomalyViews(rs []domain.Record) []anomalyView {
	out := make([]anomalyView, len(rs))
	for i, r := range rs {
		out[i] = anomalyView{
			ApplicantID:    r.ApplicantID,
			AppKey:         r.AppKey,
			ExternalUserID: strPtr(r.ExternalUserID),
			eventView:      newEventView(r),
		}
	}
	return out
}

type applicantsView struct {
	Applicants []stateView `json:"applicants"`
	Next       *string     `json:"next"` // null: this page is the last
}

// changeView is one status change of the feed.
type changeView struct {
	Seq            uint64             `json:"seq"`
	ApplicantID    domain.ApplicantID `json:"applicantId"`
	AppKey         domain.AppKey      `json:"appKey"`
	ExternalUserID *string            `json:"externalUserId"`
	From           *string            `json:"from"` // null: the applicant's first status
	To             string             `json:"to"`
	At             Time               `json:"at"`
}

type changesView struct {
	Changes []changeView `json:"changes"`
	// Next is the stream position to pass as ?after next time; never null.
	Next uint64 `json:"next"`
}

func newChangeViews(cs []domain.Change) []changeView {
	out := make([]changeView, len(cs))
	for i, c := range cs {
		out[i] = changeView{
			Seq:            c.Seq,
			ApplicantID:    c.ApplicantID,
			AppKey:         c.AppKey,
			ExternalUserID: strPtr(c.ExternalUserID),
			From:           strPtr(c.From),
			To:             string(c.To),
			At:             Time(c.At),
		}
	}
	return out
}

func uintPtr(n uint64) *uint64 {
	if n == 0 {
		return nil
	}
	return &n
}

// verifyView is what GET /v1/verify found: domain.VerifyResult in the wire form.
type verifyView struct {
	Checkpoint  uint64           `json:"checkpoint"`
	LogLast     uint64           `json:"logLast"`
	Applicants  int              `json:"applicants"`
	Events      uint64           `json:"events"`
	Differences []differenceView `json:"differences"`
}

// differenceView is one disagreement between the log and the projection.
type differenceView struct {
	Kind        domain.DifferenceKind `json:"kind"`
	ApplicantID *string               `json:"applicantId"` // null: the checkpoint, not an applicant
	Log         string                `json:"log"`
	Projection  string                `json:"projection"`
}

func newVerifyView(r domain.VerifyResult) verifyView {
	v := verifyView{Checkpoint: r.Checkpoint, LogLast: r.LogLast, Applicants: r.Applicants, Events: r.Events,
		Differences: make([]differenceView, len(r.Differences))}
	for i, d := range r.Differences {
		v.Differences[i] = differenceView{Kind: d.Kind, ApplicantID: strPtr(d.ApplicantID), Log: d.Log, Projection: d.Projection}
	}
	return v
}
