package store

import (
	"context"
	"time"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// Stream and subject names (DESIGN.md sections 3 and 4).
const (
	EventStream    = "KYC_EVENTS"
	EventSubjects  = "kyc.events.>"
	RejectStream   = "KYC_REJECTS"
	RejectSubjects = "kyc.rejects.>"
)

// LogConfig holds the stream settings that come from configuration.
type LogConfig struct {
	Replicas        int           // 1 embedded, 3 on a cluster
	DuplicateWindow time.Duration // default 24h
	RejectsMaxBytes int64         // size bound of KYC_REJECTS, default 256 MiB
	AppendTimeout   time.Duration // how long Append waits for the PubAck, default 5 s
}

// EventLog is the JetStream stream of webhooks.
type EventLog struct{}

// OpenEventLog creates or updates KYC_EVENTS and KYC_REJECTS idempotently. Settings of an
// existing stream that differ from cfg are logged, not overwritten.
func OpenEventLog(ctx context.Context, c *Conn, cfg LogConfig, log *zap.Logger) (*EventLog, error) {
	panic("TODO")
}

// Subject returns kyc.events.allpass.<appKey>.<applicantId>. Both ids must already be
// validated UUIDs; Subject refuses anything else with KindInvalid.
func Subject(app domain.AppKey, id domain.ApplicantID) (string, error) { panic("TODO") }

// Append stores ev with the Nats-Msg-Id msgID and returns its sequence once the stream
// has acknowledged it (PubAck). dup is true when the stream recognised msgID inside its
// duplicate window; seq is then the original's. Errors: KindUnavailable when the stream
// cannot confirm in time (the caller must not claim the write), KindInvalid for bad ids.
// On success ev.Seq and ev.Stored are set.
func (l *EventLog) Append(ctx context.Context, ev *domain.Event, msgID string) (seq uint64, dup bool, err error) {
	panic("TODO")
}

// LastSeq returns the last sequence in the stream (0 when empty).
func (l *EventLog) LastSeq(ctx context.Context) (uint64, error) { panic("TODO") }

// Applicant returns one applicant's events in stream order (a subject-filtered read).
func (l *EventLog) Applicant(ctx context.Context, app domain.AppKey, id domain.ApplicantID) ([]domain.Event, error) {
	panic("TODO")
}

// Read calls fn for every event from sequence from (inclusive) up to the last sequence at
// the time of the call, in order, in batches of at most batch events. It stops at the first
// error fn returns.
func (l *EventLog) Read(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
	panic("TODO")
}

// Follow delivers every event from sequence from on, in order, without gaps or repeats, in
// batches bounded by maxBatch and by maxWait since the batch's first event, until ctx ends.
// It survives reconnects by resuming after the last event it delivered. fn's error stops it.
func (l *EventLog) Follow(ctx context.Context, from uint64, maxBatch int, maxWait time.Duration, fn func([]domain.Event) error) error {
	panic("TODO")
}

// DecodeEvent parses a stored message. seq and data are kept in the event.
func DecodeEvent(seq uint64, data []byte) (domain.Event, error) { panic("TODO") }
