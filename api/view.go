package api

import (
	"context"

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
		Provider:       providerOf(s.Provider),
		ExternalUserID: strPtr(s.ExternalUserID),
		Status:         strPtr(s.Status),
		ProviderStatus: strPtr(s.ProviderStatus),
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
		Seq:            r.Seq,
		Provider:       providerOf(r.Provider),
		Type:           r.Type,
		ProviderStatus: strPtr(r.ProviderStatus),
		Origin:         r.Origin.OrDefault(),
		EventAt:        client.Time(r.EventAt),
		EventAtSource:  r.EventAtSource,
		ReceivedAt:     client.Time(r.ReceivedAt),
		Outcome:        r.Outcome,
		From:           strPtr(r.From),
		To:             strPtr(r.To),
		StepName:       strPtr(r.StepName),
		Warnings:       nonNil(r.Warnings),
		TimeFlag:       strPtr(r.TimeFlag),
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
			Provider:       providerOf(c.Provider),
			ExternalUserID: strPtr(c.ExternalUserID),
			From:           strPtr(c.From),
			To:             string(c.To),
			At:             client.Time(c.At),
		}
	}
	return out
}

// providerOf is the provider to show: one the projection stored before providers were
// recorded is empty, and was Allpass's.
func providerOf(p domain.Provider) domain.Provider { return domain.ProviderOf(string(p)) }

func uintPtr(n uint64) *uint64 {
	if n == 0 {
		return nil
	}
	return &n
}

func newVerifyView(r domain.VerifyResult) client.Verify {
	v := client.Verify{Checkpoint: r.Checkpoint, LogLast: r.LogLast, Applicants: r.Applicants, Events: r.Events,
		Signed: r.Signed, Unsigned: r.Unsigned, Unauthenticated: r.Unauthenticated,
		Differences: make([]client.Difference, len(r.Differences)), OK: len(r.Differences) == 0 && r.Unauthenticated == 0}
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

// The views below open sealed externalUserIds (stored version 2) as they are built: the
// projection keeps them sealed, and only an answer on its way out holds one in clear.

// Keys opens sealed externalUserIds at the edge and hashes externalUserIds for lookups
// (DESIGN.md section 11): the projection holds neither a key nor an id in clear. The
// event log's key ring (eventlog.Keyring) implements it.
type Keys interface {
	// OpenProviderExternalUserID opens a sealed id of applicant (provider, app, id): every
	// provider's applicant has its own data key (DESIGN.md section 13). Errors: KindNotFound
	// when the applicant's key is destroyed or was never made (the id is gone: shown as
	// null); KindUnavailable when the key store does not answer; KindInternal when the
	// value does not open (tampered, or moved from another applicant).
	OpenProviderExternalUserID(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserID, error)
	// Index is the blind index of (app, ext), as the sealed events carry it.
	Index(app domain.AppKey, ext domain.ExternalUserID) domain.ExternalUserIndex
}

// externalUserID returns the id to show for a state: in clear (an applicant whose latest
// id came in a version 1 event), opened from its sealed form, or null (none, or erased).
func (s *server) externalUserID(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID, clear domain.ExternalUserID, sealed domain.SealedExternalUserID) (*string, error) {
	if clear != "" {
		return strPtr(clear), nil
	}
	if sealed == "" {
		return nil, nil
	}
	if s.keys == nil {
		return nil, domain.E("api.externalUserId", domain.KindUnavailable, "this node has no key ring to open externalUserIds")
	}
	ext, err := s.keys.OpenProviderExternalUserID(ctx, domain.ProviderOf(string(p)), app, id, sealed)
	if domain.KindOf(err) == domain.KindNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strPtr(ext), nil
}

// stateView is newStateView with the externalUserId opened.
func (s *server) stateView(ctx context.Context, st domain.State) (client.State, error) {
	v := newStateView(st)
	ext, err := s.externalUserID(ctx, st.Provider, st.AppKey, st.ApplicantID, st.ExternalUserID, st.SealedExternalUserID)
	v.ExternalUserID = ext
	return v, err
}

func (s *server) stateViews(ctx context.Context, ss []domain.State) ([]client.State, error) {
	out := make([]client.State, len(ss))
	for i, st := range ss {
		v, err := s.stateView(ctx, st)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// openState fills st.ExternalUserID from its sealed form, for the console, which shows
// domain states.
func (s *server) openState(ctx context.Context, st domain.State) (domain.State, error) {
	var err error
	st.ExternalUserID, err = s.openedID(ctx, st.Provider, st.AppKey, st.ApplicantID, st.ExternalUserID, st.SealedExternalUserID)
	return st, err
}

// openedID is externalUserID in the domain's form, for the console's rows: "" for none,
// or for an erased applicant's.
func (s *server) openedID(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID,
	clear domain.ExternalUserID, sealed domain.SealedExternalUserID) (domain.ExternalUserID, error) {
	ext, err := s.externalUserID(ctx, p, app, id, clear, sealed)
	if ext == nil || err != nil {
		return "", err
	}
	return domain.ExternalUserID(*ext), nil
}

func (s *server) changeViews(ctx context.Context, cs []domain.Change) ([]client.Change, error) {
	out := newChangeViews(cs)
	for i, c := range cs {
		ext, err := s.externalUserID(ctx, c.Provider, c.AppKey, c.ApplicantID, c.ExternalUserID, c.SealedExternalUserID)
		if err != nil {
			return nil, err
		}
		out[i].ExternalUserID = ext
	}
	return out, nil
}

func (s *server) anomalyViews(ctx context.Context, rs []domain.Record) ([]client.Anomaly, error) {
	out := newAnomalyViews(rs)
	for i, r := range rs {
		ext, err := s.externalUserID(ctx, r.Provider, r.AppKey, r.ApplicantID, r.ExternalUserID, r.SealedExternalUserID)
		if err != nil {
			return nil, err
		}
		out[i].ExternalUserID = ext
	}
	return out, nil
}
