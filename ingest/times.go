package ingest

import (
	"time"

	"github.com/kycstate/kycstate/domain"
)

// Defaults of the trusted time window (DESIGN.md sections 3 and 15): ingest.max_clock_skew
// and ingest.max_event_age.
const (
	// DefaultMaxClockSkew is how far ahead of its receive time an event's time may be:
	// clocks that disagree by minutes are ordinary, a time further ahead is not the
	// event's.
	DefaultMaxClockSkew = 5 * time.Minute
	// DefaultMaxEventAge is how old an unauthenticated time may be: past Allpass's ten
	// retries (hours), so a genuine retry keeps its envelope time.
	DefaultMaxEventAge = 7 * 24 * time.Hour
)

// timeBounds fills in the defaults of b's unset limits.
func timeBounds(b domain.TimeBounds) domain.TimeBounds {
	if b.MaxClockSkew <= 0 {
		b.MaxClockSkew = DefaultMaxClockSkew
	}
	if b.MaxEventAge <= 0 {
		b.MaxEventAge = DefaultMaxEventAge
	}
	return b
}

// trustTime bounds the time of an event its provider's adapter has opened, before it is
// appended: every webhook, of whichever provider, and every reprocessed reject passes
// here, so no provider can bring in a time the window does not trust. Whether the time
// is authenticated follows from where the adapter took it (domain.TimeSourceAuthenticated).
func trustTime(ev *domain.Event, b domain.TimeBounds) {
	domain.BoundTime(ev, b, domain.TimeSourceAuthenticated(ev.EventAtSource))
}
