package store

import (
	"context"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// SchemaVersion of the projection file. A file with another version is refused with a
// KindConflict error that says to run `kycstate rebuild`.
const SchemaVersion = 1

// Change is one status change, the unit of the change feed (/v1/changes).
type Change struct {
	Seq            uint64                `json:"seq"`
	ApplicantID    domain.ApplicantID    `json:"applicantId"`
	AppKey         domain.AppKey         `json:"appKey"`
	ExternalUserID domain.ExternalUserID `json:"externalUserId"`
	From           domain.Status         `json:"from"`
	To             domain.Status         `json:"to"`
	At             time.Time             `json:"at"` // the event's eventAt
}

// ProjectionOptions tunes opening the file.
type ProjectionOptions struct {
	LockTimeout time.Duration // how long to wait for another process's lock; default 1 s
	ReadOnly    bool
}

// Projection is the bbolt file folded from the event log: current state per applicant,
// history by stream sequence, indexes by externalUserId and status, anomalies, the change
// feed and the checkpoint. Reads return copies and never block the writer.
type Projection struct{}

// OpenProjection opens or creates the file. A file locked by another process gives a
// KindConflict error saying it is in use; an unknown schema version, KindConflict saying
// to rebuild.
func OpenProjection(path string, opts ProjectionOptions) (*Projection, error) { panic("TODO") }

// Close closes the file. Safe to call twice.
func (p *Projection) Close() error { panic("TODO") }

// Path returns the file's path.
func (p *Projection) Path() string { panic("TODO") }

// Checkpoint returns the last stream sequence applied (0 for a new file).
func (p *Projection) Checkpoint() uint64 { panic("TODO") }

// Apply folds events (in stream order) with f and commits states, history, indexes,
// anomalies, changes and the new checkpoint in one bbolt transaction. Events at or below
// the checkpoint are skipped, so replaying a batch after a crash applies nothing twice.
// Only after the commit does Checkpoint advance and waiters wake. It returns the records
// written, in order.
func (p *Projection) Apply(events []domain.Event, f *domain.Folder) ([]domain.Record, error) {
	panic("TODO")
}

// WaitFor blocks until the checkpoint reaches seq or ctx ends; it returns the checkpoint.
func (p *Projection) WaitFor(ctx context.Context, seq uint64) uint64 { panic("TODO") }

// State returns an applicant's current state.
func (p *Projection) State(id domain.ApplicantID) (domain.State, bool, error) { panic("TODO") }

// History returns up to limit records of an applicant with seq > after, in order, and
// the seq to continue from (0 when there are no more).
func (p *Projection) History(id domain.ApplicantID, after uint64, limit int) ([]domain.Record, uint64, error) {
	panic("TODO")
}

// ByExternalUserID returns the applicants carrying ext (of app, if app is not empty).
func (p *Projection) ByExternalUserID(ext domain.ExternalUserID, app domain.AppKey, limit int) ([]domain.State, error) {
	panic("TODO")
}

// ByStatus returns up to limit applicants in status s, ordered by applicant id, after the
// cursor (an applicant id, "" from the start), and the next cursor ("" at the end).
func (p *Projection) ByStatus(s domain.Status, cursor domain.ApplicantID, limit int) ([]domain.State, domain.ApplicantID, error) {
	panic("TODO")
}

// Anomalies returns up to limit irregular events with seq > after, and the next cursor.
func (p *Projection) Anomalies(after uint64, limit int) ([]domain.Record, uint64, error) {
	panic("TODO")
}

// Changes returns up to limit status changes with seq > after, in stream order.
func (p *Projection) Changes(after uint64, limit int) ([]Change, error) { panic("TODO") }

// Digests calls fn for every applicant with its digest, in applicant id order.
func (p *Projection) Digests(fn func(domain.ApplicantID, domain.Digest) error) error {
	panic("TODO")
}
