package domain

import "time"

// Change is one status change, the unit of the change feed (/v1/changes).
type Change struct {
	Seq            uint64         `json:"seq"`
	ApplicantID    ApplicantID    `json:"applicantId"`
	AppKey         AppKey         `json:"appKey"`
	Provider       Provider       `json:"provider"` // the applicant's (State.Provider)
	ExternalUserID ExternalUserID `json:"externalUserId"`
	// SealedExternalUserID replaces ExternalUserID when the applicant's id is sealed.
	SealedExternalUserID SealedExternalUserID `json:"sealedExt,omitempty"`
	From                 Status               `json:"from"`
	To                   Status               `json:"to"`
	At                   time.Time            `json:"at"` // the event's eventAt
}
