package domain_test

import (
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func TestBoundTime(t *testing.T) {
	b := domain.TimeBounds{MaxClockSkew: 5 * time.Minute, MaxEventAge: 168 * time.Hour}
	recv := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const payload, envelope = domain.SourcePayloadUpdatedAt, domain.SourceEnvelopeTime
	for _, c := range []struct {
		name    string
		at      time.Time
		source  string
		trusted bool
	}{
		{"signed time a year ahead", recv.AddDate(1, 0, 0), payload, false},
		{"signed time at the skew limit", recv.Add(5 * time.Minute), payload, true},
		{"signed time just past the skew limit", recv.Add(5*time.Minute + time.Nanosecond), payload, false},
		{"unsigned time just past the skew limit", recv.Add(5*time.Minute + time.Nanosecond), envelope, false},
		{"signed time 30 days old: the provider's word", recv.AddDate(0, 0, -30), payload, true},
		{"unsigned time 30 days old", recv.AddDate(0, 0, -30), envelope, false},
		{"unsigned time at the age limit", recv.Add(-168 * time.Hour), envelope, true},
		{"unsigned time just past the age limit", recv.Add(-168*time.Hour - time.Nanosecond), envelope, false},
		{"unsigned time a minute old", recv.Add(-time.Minute), envelope, true},
		{"the receive time", recv, domain.SourceReceived, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := domain.Event{EventAt: c.at, EventAtSource: c.source, ReceivedAt: recv}
			domain.BoundTime(&ev, b, domain.TimeSourceAuthenticated(c.source))
			want := domain.Event{EventAt: c.at, EventAtSource: c.source, ReceivedAt: recv}
			if !c.trusted {
				want.EventAt, want.EventAtSource, want.TimeFlag = recv, domain.SourceReceived, domain.TimeFlagClockSkew
			}
			if !ev.EventAt.Equal(want.EventAt) || ev.EventAtSource != want.EventAtSource || ev.TimeFlag != want.TimeFlag {
				t.Fatalf("got %v %q %q, want %v %q %q", ev.EventAt, ev.EventAtSource, ev.TimeFlag,
					want.EventAt, want.EventAtSource, want.TimeFlag)
			}
			again := ev
			domain.BoundTime(&again, b, domain.TimeSourceAuthenticated(again.EventAtSource))
			if again.EventAt != ev.EventAt || again.EventAtSource != ev.EventAtSource || again.TimeFlag != ev.TimeFlag {
				t.Fatalf("a second BoundTime changed %+v to %+v", ev, again)
			}
		})
	}
}

func TestTimeSourceAuthenticated(t *testing.T) {
	for _, s := range []string{domain.SourcePayloadUpdatedAt, domain.SourcePayloadCreatedAt,
		domain.SourcePayloadTime, domain.SourcePayloadTimestamp, domain.SourceReceived} {
		if !domain.TimeSourceAuthenticated(s) {
			t.Errorf("%s: not authenticated", s)
		}
	}
	if domain.TimeSourceAuthenticated(domain.SourceEnvelopeTime) {
		t.Error("the envelope time is authenticated")
	}
}
