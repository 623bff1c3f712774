package domain

// Pending is one event on its way into the event log, for a log that appends several at
// once (ingest's group commit): what to append under which message id, and, once the
// log has answered, where it went. The log sets exactly one of Seq (with Duplicate) or
// Err for every Pending it is given; Seq is only ever set from the stream's own
// acknowledgement of that message, so a Pending with Seq > 0 and no Err is durably in
// the log.
type Pending struct {
	Event *Event
	MsgID string
	// Stored is the event's stored form when the log prepared it ahead of the write (the
	// log's Prepare), so that the write itself only carries bytes; nil until then.
	Stored []byte

	Seq       uint64 // the event's stream sequence; the original's when Duplicate
	Duplicate bool   // the stream already held MsgID inside its duplicate window
	Err       error  // the append is not confirmed; see the log's Append for the kinds
}
