package store

import (
	"context"

	"github.com/kycstate/kycstate/domain"
)

// Builder writes a projection file from sequence 1 as a bulk load: it folds events in
// memory in bounded chunks and writes each chunk in key order in one large transaction,
// with no fsync until Finish. The file it builds is identical, byte for byte in every
// bucket's contents, to one built by Projection.Apply over the same events.
type Builder struct{}

// NewBuilder starts a new file at path (removed first if it exists).
func NewBuilder(path string) (*Builder, error) { panic("TODO") }

// Add folds a batch of events (in stream order).
func (b *Builder) Add(events []domain.Event) error { panic("TODO") }

// Finish writes what is buffered, syncs the file once and closes it.
func (b *Builder) Finish() error { panic("TODO") }

// Abort closes and removes the partial file.
func (b *Builder) Abort() error { panic("TODO") }

// Rebuild folds the whole log into path+".rebuild" and renames it over path, atomically:
// a crash before the rename leaves the old file serving. progress, if not nil, is called
// now and then with the sequence reached and the last sequence.
func Rebuild(ctx context.Context, log *EventLog, path string, progress func(done, total uint64)) error {
	panic("TODO")
}
