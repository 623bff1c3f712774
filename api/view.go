package api

import (
	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/reconcile"
)

// The response bodies are the types of api/client, so the API and its Go client share
// one definition of the wire form (DESIGN.md section 7, openapi.yaml). These build them
// from the domain: "none" is null, lists are never null, times are RFC 3339 UTC.

func newStateView(s domain.State) client.State {
	v := client.State{
		ApplicantID:    s.ApplicantID,
		AppKey:         s.AppKey,
		ExternalUserID: strPtr(s.ExternalUserID),
		Status:         strPtr(s.Status),
		LastEventAt:    client.Time(s.LastEventAt),
		LastSeq:        s.LastSeq,
		Events:         s.Events,
		StepsPassed:    nonNil(s.StepsPassed),
		Flags:          nonNil(s.Flags),
		Warnings:       nonNil(s.Warnings),
		Anomalies:      s.Anomalies,
		Digest:         s.Digest.String(),
		Erased:         s.Erased,
	}
	if s.Status != domain.StatusNone {
		v.StatusAt = timePtr(s.StatusAt)
	}
	if !s.ReconciledAt.IsZero() {
		v.ReconciledAt = timePtr(s.ReconciledAt)
	}
	return v
}

func newEventView(r domain.Record) client.Event {
	return client.Event{
		Seq:           r.Seq,
		Type:          r.Type,
		Origin:        r.Origin.OrDefault(),
		EventAt:       client.Time(r.EventAt),
		EventAtSource: r.EventAtSource,
		ReceivedAt:    client.Time(r.ReceivedAt),
		Outcome:       r.Outcome,
		From:          strPtr(r.From),
		To:            strPtr(r.To),
		StepName:      strPtr(r.StepName),
		Warnings:      nonNil(r.Warnings),
	}
}

func newAnomalyViews(rs []domain.Record) []client.Anomaly {
	out := make([]client.Anomaly, len(rs))
	for i, r := range rs {
		out[i] = client.Anomaly{
			ApplicantID:    r.ApplicantID,
			AppKey:         r.AppKey,
			ExternalUserID: strPtr(r.ExternalUserID),
			Event:          newEventView(r),
		}
	}
	return out
}

func newChangeViews(cs []domain.Change) []client.Change {
	out := make([]client.Change, len(cs))
	for i, c := range cs {
		out[i] = client.Change{
			Seq:            c.Seq,
			ApplicantID:    c.ApplicantID,
			AppKey:         c.AppKey,
			ExternalUserID: strPtr(c.ExternalUserID),
			From:           strPtr(c.From),
			To:             string(c.To),
			At:             client.Time(c.At),
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

func newVerifyView(r domain.VerifyResult) client.Verify {
	v := client.Verify{Checkpoint: r.Checkpoint, LogLast: r.LogLast, Applicants: r.Applicants, Events: r.Events,
		Differences: make([]client.Difference, len(r.Differences))}
	for i, d := range r.Differences {
		v.Differences[i] = client.Difference{Kind: d.Kind, ApplicantID: strPtr(d.ApplicantID), Log: d.Log, Projection: d.Projection}
	}
	return v
}

// NewReconcileView is a check's report in the wire form, as the API answers it and
// kycstate reconcile prints it offline.
func NewReconcileView(r reconcile.Report) client.Reconcile {
	v := client.Reconcile{ApplicantID: r.ApplicantID, AppKey: r.AppKey, Action: string(r.Action), DryRun: r.DryRun,
		Projection: client.ReconcileProjection{Status: strPtr(r.ProjectionStatus), StatusAt: timePtr(r.ProjectionStatusAt)},
		OpenAPI:    client.ReconcileOpenAPI{Status: strPtr(r.OpenAPIStatus), UpdatedAt: timePtr(r.OpenAPIUpdatedAt)},
		Error:      strPtr(r.Error)}
	if r.Seq != 0 {
		seq := r.Seq
		v.Seq = &seq
	}
	return v
}
