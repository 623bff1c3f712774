package domain

import "context"

// EventSource is a log of stored events that can be read from any sequence: the event
// log implements it, and a projection is rebuilt and verified from one without knowing
// what stores it.
type EventSource interface {
	// LastSeq returns the sequence of the last event in the log, 0 when it is empty.
	// Errors: KindUnavailable when the log does not answer.
	LastSeq(ctx context.Context) (uint64, error)

	// Read calls fn for every event from sequence from (inclusive) up to the last
	// sequence at the time of the call, in batches of at most batch events, and returns
	// when it has delivered the last one.
	//
	// Guarantees: sequences strictly increase, within a batch and across batches; no
	// event is delivered twice; no event the log holds in the range is skipped (a jump
	// in sequence means the log holds nothing in between). Each event carries the fold's
	// inputs and Stored; Raw and Sealed may be left out. fn owns each slice it receives.
	//
	// Errors: fn's error as it is (Read stops at the first); ctx.Err() when ctx ends;
	// KindInvalid for a batch below 1; KindInternal for a stored message that is not an
	// event; KindConflict for one in a format version this build does not read;
	// KindUnavailable when the log stops delivering.
	Read(ctx context.Context, from uint64, batch int, fn func([]Event) error) error
}
