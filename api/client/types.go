package client

import (
	"time"

	"github.com/kycstate/kycstate/domain"
)

// The response bodies of the read API (DESIGN.md section 7, api/openapi.yaml). The API
// encodes these very types, so a field added there is a field here. They are views, not
// the domain types: domain.State carries the fold's bookkeeping, and the wire form is a
// contract that must not change when the store's does. "None" is null (a nil pointer),
// lists are never null, times are RFC 3339 UTC.

// State is one applicant's state: GET /v1/applicants/{id}.
type State struct {
	ApplicantID domain.ApplicantID `json:"applicantId"`
	AppKey      domain.AppKey      `json:"appKey"`
	// Provider is the KYC provider whose applicant this is (DESIGN.md section 13): an
	// applicant is (provider, appKey, applicantId).
	Provider       domain.Provider `json:"provider"`
	ExternalUserID *string         `json:"externalUserId"` // null: Allpass never sent one
	Status         *string         `json:"status"`         // null: no status event applied yet
	// ProviderStatus is the provider's own status as its latest applied status event
	// stated it, verbatim; null for Allpass, whose events state none.
	ProviderStatus *string  `json:"providerStatus"`
	StatusAt       *Time    `json:"statusAt"` // eventAt of the latest applied status event; null with status
	LastEventAt    Time     `json:"lastEventAt"`
	LastSeq        uint64   `json:"lastSeq"`
	Events         int      `json:"events"`
	StepsPassed    []string `json:"stepsPassed"`
	Flags          []string `json:"flags"`
	Warnings       []string `json:"warnings"`
	Anomalies      int      `json:"anomalies"`
	Digest         string   `json:"digest"`
	Erased         bool     `json:"erased"`       // personal data erased (DESIGN.md section 11)
	ReconciledAt   *Time    `json:"reconciledAt"` // eventAt of the latest reconciled event; null: never
}

// Event is one line of an applicant's history.
type Event struct {
	Seq      uint64           `json:"seq"`
	Provider domain.Provider  `json:"provider"`
	Type     domain.EventType `json:"type"`
	// ProviderStatus is the provider's own status as this event stated it, verbatim;
	// null when it states none (every Allpass event, a provider's annotations).
	ProviderStatus *string        `json:"providerStatus"`
	Origin         domain.Origin  `json:"origin"` // webhook, openapi or operator
	EventAt        Time           `json:"eventAt"`
	EventAtSource  string         `json:"eventAtSource"`
	ReceivedAt     Time           `json:"receivedAt"`
	Outcome        domain.Outcome `json:"outcome"`
	From           *string        `json:"from"` // null: no status before
	To             *string        `json:"to"`   // null: still no status after
	StepName       *string        `json:"stepName"`
	Warnings       []string       `json:"warnings"`
	// TimeFlag is "clock_skew" when the event's own time lay outside the window ingest
	// trusts and eventAt is the receive time (eventAtSource "received"; DESIGN.md
	// section 15); null otherwise.
	TimeFlag *string `json:"timeFlag"`
}

// History is one page of GET /v1/applicants/{id}/history.
type History struct {
	ApplicantID domain.ApplicantID `json:"applicantId"`
	Provider    domain.Provider    `json:"provider"`
	Events      []Event            `json:"events"`
	Next        *uint64            `json:"next"` // null: this page is the last
}

// Anomaly is an irregular event with the applicant it belongs to.
type Anomaly struct {
	ApplicantID    domain.ApplicantID `json:"applicantId"`
	AppKey         domain.AppKey      `json:"appKey"`
	ExternalUserID *string            `json:"externalUserId"`
	Event
}

// Anomalies is one page of GET /v1/anomalies.
type Anomalies struct {
	Anomalies []Anomaly `json:"anomalies"`
	Next      *uint64   `json:"next"` // null: this page is the last
}

// Applicants is one page of GET /v1/applicants.
type Applicants struct {
	Applicants []State `json:"applicants"`
	Next       *string `json:"next"` // null: this page is the last
}

// Change is one status change of the feed.
type Change struct {
	Seq            uint64             `json:"seq"`
	ApplicantID    domain.ApplicantID `json:"applicantId"`
	AppKey         domain.AppKey      `json:"appKey"`
	Provider       domain.Provider    `json:"provider"`
	ExternalUserID *string            `json:"externalUserId"`
	From           *string            `json:"from"` // null: the applicant's first status
	To             string             `json:"to"`
	At             Time               `json:"at"`
}

// Changes is one answer of GET /v1/changes.
type Changes struct {
	Changes []Change `json:"changes"`
	// Next is the stream position to pass as ?after next time; never null.
	Next uint64 `json:"next"`
}

// Verify is what GET /v1/verify found: domain.VerifyResult in the wire form.
type Verify struct {
	Checkpoint uint64 `json:"checkpoint"`
	LogLast    uint64 `json:"logLast"`
	Applicants int    `json:"applicants"`
	Events     uint64 `json:"events"`
	// Of Events: signed under the log key, unsigned (stored before the log key existed),
	// unauthenticated (the MAC fails: each is also a difference).
	Signed          uint64       `json:"signed"`
	Unsigned        uint64       `json:"unsigned"`
	Unauthenticated uint64       `json:"unauthenticated"`
	Differences     []Difference `json:"differences"`
	// OK is the verdict: no difference, no unauthenticated event.
	OK bool `json:"ok"`
}

// Difference is one disagreement between the log and the projection.
type Difference struct {
	Kind        domain.DifferenceKind `json:"kind"`
	ApplicantID *string               `json:"applicantId"` // null: the checkpoint, not an applicant
	Log         string                `json:"log"`
	Projection  string                `json:"projection"`
}

// Result is the answer in domain terms, as `kycstate verify` prints it offline too.
func (v Verify) Result() domain.VerifyResult {
	res := domain.VerifyResult{Checkpoint: v.Checkpoint, LogLast: v.LogLast, Applicants: v.Applicants, Events: v.Events,
		Signed: v.Signed, Unsigned: v.Unsigned, Unauthenticated: v.Unauthenticated}
	for _, d := range v.Differences {
		vd := domain.VerifyDifference{Kind: d.Kind, Log: d.Log, Projection: d.Projection}
		if d.ApplicantID != nil {
			vd.ApplicantID = domain.ApplicantID(*d.ApplicantID)
		}
		res.Differences = append(res.Differences, vd)
	}
	return res
}

// Erasure is the answer of POST /v1/applicants/{id}/erase.
type Erasure struct {
	ApplicantID domain.ApplicantID `json:"applicantId"`
	Erased      bool               `json:"erased"` // always true: applicantErased is in the log
	Seq         uint64             `json:"seq"`    // of the applicantErased event
	// KeyDestroyed: the data key is gone. Pending: its destruction did not complete yet;
	// it is retried until it does (kycstate_erasures_pending).
	KeyDestroyed bool `json:"keyDestroyed"`
	Pending      bool `json:"pending"`
}

// Reconcile is the report of one check against Allpass's Open API:
// POST /v1/applicants/{id}/reconcile (DESIGN.md section 10).
type Reconcile struct {
	ApplicantID domain.ApplicantID `json:"applicantId"`
	AppKey      domain.AppKey      `json:"appKey"`
	// Action is appended, in_sync, not_found or error.
	Action     string              `json:"action"`
	Projection ReconcileProjection `json:"projection"`
	OpenAPI    ReconcileOpenAPI    `json:"openApi"`
	Seq        *uint64             `json:"seq"`   // the appended event's sequence; null: nothing appended
	Error      *string             `json:"error"` // what failed; null on success
	// DryRun is true for ?dryRun=true: nothing was appended, Action says what was found.
	DryRun bool `json:"dryRun,omitempty"`
}

// ReconcileProjection is the projection's side of a check.
type ReconcileProjection struct {
	Status   *string `json:"status"` // null: no status yet
	StatusAt *Time   `json:"statusAt"`
}

// ReconcileOpenAPI is the Open API's side of a check; null fields when it answered none.
type ReconcileOpenAPI struct {
	Status    *string `json:"status"`
	UpdatedAt *Time   `json:"updatedAt"`
}

// Health is the body of /healthz and of a ready /readyz.
type Health struct {
	Status string `json:"status"`
}

// Time is a time encoded as RFC 3339 in UTC, with as many fractional digits as it has.
type Time time.Time

// MarshalJSON writes the RFC 3339 UTC form.
func (t Time) MarshalJSON() ([]byte, error) {
	return t.appendJSON(make([]byte, 0, len(time.RFC3339Nano)+2)), nil
}

func (t Time) appendJSON(b []byte) []byte {
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// UnmarshalJSON reads an RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	var v time.Time
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Time(v)
	return nil
}

// Time returns t as a time.Time.
func (t Time) Time() time.Time { return time.Time(t) }
