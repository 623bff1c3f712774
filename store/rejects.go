package store

import (
	"context"
	"time"
)

// Reject is a refused webhook kept so that nothing is lost to a misconfigured key.
type Reject struct {
	Seq        uint64            `json:"seq,omitempty"`
	App        string            `json:"app"`    // the {app} path segment, "" for the generic path
	Reason     string            `json:"reason"` // the error code answered
	Message    string            `json:"message"`
	Status     int               `json:"status"` // HTTP status answered
	Body       string            `json:"body"`
	Headers    map[string]string `json:"headers"` // the headers that matter (x-allpass-signature, content-type)
	RemoteAddr string            `json:"remoteAddr"`
	ReceivedAt time.Time         `json:"receivedAt"`
}

// Reject appends r to KYC_REJECTS on kyc.rejects.<reason>.
func (l *EventLog) Reject(ctx context.Context, r Reject) error { panic("TODO") }

// Rejects calls fn for each kept reject in order, starting at sequence from.
func (l *EventLog) Rejects(ctx context.Context, from uint64, fn func(Reject) error) error {
	panic("TODO")
}
