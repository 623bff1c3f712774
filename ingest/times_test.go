package ingest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"go.uber.org/zap"
)

// TestEventTimeBounds: a webhook's time outside the trusted window (DESIGN.md section
// 15) is stored as the receive time, source received, flagged clock_skew; inside it,
// and for an old time the payload's signature covers, the time is kept.
func TestEventTimeBounds(t *testing.T) {
	received := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return received }
	iso := func(at time.Time) string { return at.Format("2006-01-02T15:04:05.000Z") }
	cases := []struct {
		name      string
		updatedAt string // the payload's time; "" for none
		envTime   string
		times     domain.TimeBounds
		wantAt    time.Time
		wantSrc   string
		flagged   bool
	}{
		{"signed time a year ahead", iso(received.AddDate(1, 0, 0)), iso(received), domain.TimeBounds{}, received, domain.SourceReceived, true},
		{"signed time four minutes ahead", iso(received.Add(4 * time.Minute)), "", domain.TimeBounds{}, received.Add(4 * time.Minute), domain.SourcePayloadUpdatedAt, false},
		{"envelope time 30 days old", "", iso(received.AddDate(0, 0, -30)), domain.TimeBounds{}, received, domain.SourceReceived, true},
		{"envelope time ten minutes ahead", "", iso(received.Add(10 * time.Minute)), domain.TimeBounds{}, received, domain.SourceReceived, true},
		{"envelope time six days old", "", iso(received.AddDate(0, 0, -6)), domain.TimeBounds{}, received.AddDate(0, 0, -6), domain.SourceEnvelopeTime, false},
		{"signed time 30 days old", iso(received.AddDate(0, 0, -30)), iso(received), domain.TimeBounds{}, received.AddDate(0, 0, -30), domain.SourcePayloadUpdatedAt, false},
		{"envelope time two hours old, max age 1h", "", iso(received.Add(-2 * time.Hour)), domain.TimeBounds{MaxEventAge: time.Hour}, received, domain.SourceReceived, true},
		{"signed time 2m ahead, max skew 1m", iso(received.Add(2 * time.Minute)), "", domain.TimeBounds{MaxClockSkew: time.Minute}, received, domain.SourceReceived, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *HandlerConfig) { cfg.Now, cfg.Times = clock, c.times })
			fields := payload(e.cbc, 200+i, "applicantApproved")
			if c.updatedAt != "" {
				fields["updatedAt"] = c.updatedAt
			}
			body, sig := seal(t, e.cbc, fields, c.envTime)
			a := e.post(t, "/webhooks/allpass/cbc", body, sig)
			if a.status != 200 {
				t.Fatalf("%d %s", a.status, a.raw)
			}
			ev := e.eventAt(t, a.seq)
			wantFlag := domain.TimeFlag("")
			if c.flagged {
				wantFlag = domain.TimeFlagClockSkew
			}
			if !ev.EventAt.Equal(c.wantAt) || ev.EventAtSource != c.wantSrc || ev.TimeFlag != wantFlag || !ev.ReceivedAt.Equal(received) {
				t.Fatalf("stored eventAt %v from %s, flag %q; want %v from %s, flag %q",
					ev.EventAt, ev.EventAtSource, ev.TimeFlag, c.wantAt, c.wantSrc, wantFlag)
			}
			if c.flagged != bytes.Contains(ev.Stored, []byte(`"timeFlag":"clock_skew"`)) {
				t.Fatalf("stored message %s", ev.Stored)
			}
		})
	}
}

// TestReprocessBoundsTime: a reprocessed reject's time is bounded as its webhook's would
// have been, from the receive time the reject kept.
func TestReprocessBoundsTime(t *testing.T) {
	v := mustVectors(t)
	good, _ := mustApps(t, v)
	wrong := *good
	wrong.Keys = []allpass.Keys{{Secret: good.Keys[0].Secret, HMAC: bytes.Repeat([]byte{7}, 32)}}
	received := time.Now().UTC().Add(-72 * time.Hour).Truncate(time.Millisecond)
	e := newEnv(t, func(c *HandlerConfig) {
		c.Apps, c.Now = []*allpass.App{&wrong}, func() time.Time { return received }
	})
	fields := payload(good, 300, "applicantApproved")
	fields["updatedAt"] = received.AddDate(1, 0, 0).Format(time.RFC3339)
	body, sig := seal(t, good, fields, "")
	if a := e.post(t, "/webhooks/allpass/cbc", body, sig); a.status != 401 {
		t.Fatalf("under the wrong key: %d %s", a.status, a.raw)
	}
	res, err := Reprocess(context.Background(), e.events, ReprocessConfig{Apps: []*allpass.App{good}, Logger: zap.NewNop()}, 1)
	if err != nil || res.Recovered != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	ev := e.eventAt(t, e.lastSeq(t))
	if !ev.EventAt.Equal(received) || ev.EventAtSource != domain.SourceReceived || ev.TimeFlag != domain.TimeFlagClockSkew {
		t.Fatalf("reprocessed: eventAt %v from %s, flag %q; want %v from received, clock_skew", ev.EventAt, ev.EventAtSource, ev.TimeFlag, received)
	}
}
