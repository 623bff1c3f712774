package domain

import "time"

// TimeFlag marks an event whose own time was not trusted.
type TimeFlag string

// TimeFlagClockSkew: the event's time lay outside the window ingest trusts (TimeBounds),
// so the event was stored with its receive time instead.
const TimeFlagClockSkew TimeFlag = "clock_skew"

// TimeBounds are the limits ingest puts on an event's own time (DESIGN.md sections 3 and
// 15: ingest.max_clock_skew and ingest.max_event_age).
type TimeBounds struct {
	// MaxClockSkew is how far after its receive time an event's time may lie. A time
	// further ahead is never trusted, signed or not: one updatedAt a year ahead would
	// otherwise make every later status event of the applicant stale.
	MaxClockSkew time.Duration
	// MaxEventAge is how far before its receive time an unauthenticated time may lie.
	// It is past Allpass's ten retries, so a genuine retry keeps its time, while a
	// captured webhook replayed with an old envelope time cannot reorder history. An
	// authenticated time older than this is kept: it is the provider's word.
	MaxEventAge time.Duration
}

// Trusted reports whether an event received at receivedAt may be ordered by eventAt:
// eventAt is at most MaxClockSkew after receivedAt and, when no signature covers it
// (authenticated false), at most MaxEventAge before it. Both ends are inclusive.
func (b TimeBounds) Trusted(eventAt, receivedAt time.Time, authenticated bool) bool {
	if eventAt.After(receivedAt.Add(b.MaxClockSkew)) {
		return false
	}
	return authenticated || !eventAt.Before(receivedAt.Add(-b.MaxEventAge))
}

// BoundTime replaces an untrusted event time (Trusted) by the receive time: EventAt =
// ReceivedAt, EventAtSource SourceReceived, TimeFlag TimeFlagClockSkew. A trusted time is
// left as it is. Whether the time is authenticated is the provider's to say; for the
// sources of this package, TimeSourceAuthenticated says. BoundTime is pure, and applying
// it twice changes nothing more than applying it once.
func BoundTime(e *Event, b TimeBounds, authenticated bool) {
	if b.Trusted(e.EventAt, e.ReceivedAt, authenticated) {
		return
	}
	e.EventAt, e.EventAtSource, e.TimeFlag = e.ReceivedAt, SourceReceived, TimeFlagClockSkew
}

// TimeSourceAuthenticated reports whether a time taken from source is covered by the
// provider's signature. Allpass's envelope `time` is not (its MAC covers `data`, its tag
// the ciphertext); a time read from the payload is, and so is the receive time, which is
// ours. Another provider's signed body times are authenticated too.
func TimeSourceAuthenticated(source string) bool { return source != SourceEnvelopeTime }
