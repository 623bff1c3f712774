package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// Replays and untrusted times through the binary (DESIGN.md section 15, issue 21 point 1,
// issue 22 hole 3). Helpers here are prefixed sec.

// secIso is how Allpass writes times.
const secIso = "2006-01-02T15:04:05.000Z"

// secSealBare seals a webhook whose payload carries no time of its own, so that the
// envelope time (which no signature covers) is the event's time unless it is distrusted.
func secSealBare(t *testing.T, s *binService, applicant, typ string, envTime time.Time, extra map[string]any) hook {
	t.Helper()
	pl := map[string]any{"type": typ, "id": applicant, "appKey": string(s.app.AppKey), "externalUserId": "user-" + applicant[:8]}
	for k, v := range extra {
		pl[k] = v
	}
	plain, err := json.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	body, sig, err := allpass.Seal(s.app.Method, s.app.Keys[0], plain, envTime.UTC().Format(secIso), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return hook{applicant: applicant, typ: typ, body: body, sig: sig}
}

// secWithEnvelopeTime is h with its envelope time replaced and its data and signature as
// they were: a captured webhook resent by someone who can read raw bodies but holds no key.
func secWithEnvelopeTime(t *testing.T, h hook, at time.Time) hook {
	t.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal(h.body, &env); err != nil {
		t.Fatal(err)
	}
	env["time"], _ = json.Marshal(at.UTC().Format(secIso))
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	h.body = body
	return h
}

// secCaughtUp waits until the read API has applied seq and returns the applicant's state.
func secCaughtUp(t *testing.T, s *binService, applicant string, seq uint64) client.State {
	t.Helper()
	url := fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, applicant, seq)
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, h, body := secGet(t, http.MethodGet, url, map[string]string{"Authorization": "Bearer " + s.reader})
		got, _ := strconv.ParseUint(h.Get("X-Kycstate-Seq"), 10, 64)
		if code == http.StatusOK && got >= seq {
			var st client.State
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatalf("GET %s: %v in %s", url, err, body)
			}
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, projection at %d, want %d: %s", url, code, got, seq, body)
		}
		if code != http.StatusOK {
			time.Sleep(100 * time.Millisecond) // minSeq holds a 200; anything else comes back at once
		}
	}
}

// secHistory returns an applicant's history by stream sequence.
func secHistory(t *testing.T, s *binService, applicant string) map[uint64]client.Event {
	t.Helper()
	var page client.History
	url := fmt.Sprintf("%s/v1/applicants/%s/history?limit=500", s.apiURL, applicant)
	if code, body := getJSON(t, url, s.auditor, &page); code != http.StatusOK || page.Next != nil {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	out := map[uint64]client.Event{}
	for _, e := range page.Events {
		out[e.Seq] = e
	}
	return out
}

func secStatus(st client.State) string {
	if st.Status == nil {
		return "none"
	}
	return *st.Status
}

// TestSecurityReplayNewEnvelopeTime: a captured applicantApproved (no time in its
// payload) resent with its data and signature and a new envelope time cannot turn the
// REJECTED applicant APPROVED: not seconds later, not after the stream's duplicate window
// has forgotten it (2 s here), and not twenty times more. A genuine new approval still
// applies, so the rule holds back only the replay.
func TestSecurityReplayNewEnvelopeTime(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	s.extra = "nats: { duplicate_window: 2s }\n"
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p := s.start(t)
	defer p.mustTerm(t)

	applicant := newID()
	start := time.Now().Add(-5 * time.Minute)
	var captured hook
	var last answer
	for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantCompleted", "applicantApproved", "applicantRejected"} {
		h := secSealBare(t, s, applicant, typ, start.Add(time.Duration(i)*time.Minute), nil)
		if typ == "applicantApproved" {
			captured = h
		}
		last = mustPost(t, s.ingestURL, s.app.Name, h)
	}
	if st := secCaughtUp(t, s, applicant, last.seq); secStatus(st) != "REJECTED" {
		t.Fatalf("before the replay: %s, want REJECTED", secStatus(st))
	}

	// checkReplay posts a replay and requires it changed nothing: either the stream
	// still knew it, or it was stored and folded a duplicate.
	checkReplay := func(h hook, what string) answer {
		t.Helper()
		a := mustPost(t, s.ingestURL, s.app.Name, h)
		if st := secCaughtUp(t, s, applicant, max(a.seq, last.seq)); secStatus(st) != "REJECTED" {
			t.Fatalf("%s: status %s, want REJECTED", what, secStatus(st))
		}
		if !a.dup {
			if e, ok := secHistory(t, s, applicant)[a.seq]; !ok || e.Outcome != domain.OutcomeDuplicate {
				t.Fatalf("%s: stored at %d with outcome %q, want duplicate", what, a.seq, e.Outcome)
			}
		}
		return a
	}

	// Seconds later, with today's envelope time.
	checkReplay(secWithEnvelopeTime(t, captured, time.Now()), "replayed seconds later")

	// Once the stream has forgotten the message id: resent until the stream stores it
	// (answer duplicate:false), which proves the window is behind us.
	deadline := time.Now().Add(60 * time.Second)
	for {
		a := checkReplay(secWithEnvelopeTime(t, captured, time.Now()), "replayed past the duplicate window")
		if !a.dup {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream still recognises the replay a minute after a 2 s duplicate window")
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Twenty more copies, each with another envelope time, some a year ahead.
	var maxSeq uint64
	for i := range 20 {
		at := time.Now().Add(time.Duration(i) * time.Second)
		if i%5 == 4 {
			at = at.AddDate(1, 0, 0)
		}
		a := mustPost(t, s.ingestURL, s.app.Name, secWithEnvelopeTime(t, captured, at))
		maxSeq = max(maxSeq, a.seq)
	}
	if st := secCaughtUp(t, s, applicant, maxSeq); secStatus(st) != "REJECTED" {
		t.Fatalf("after twenty more copies: %s, want REJECTED", secStatus(st))
	}
	for seq, e := range secHistory(t, s, applicant) {
		if seq > last.seq && e.Outcome != domain.OutcomeDuplicate {
			t.Errorf("replay stored at %d folded to %q, want duplicate", seq, e.Outcome)
		}
	}

	// A genuine new decision (sealed anew: a new IV) is a new event and applies.
	a := mustPost(t, s.ingestURL, s.app.Name, secSealBare(t, s, applicant, "applicantApproved", time.Now(), nil))
	if st := secCaughtUp(t, s, applicant, a.seq); secStatus(st) != "APPROVED" {
		t.Fatalf("a genuine new approval: %s, want APPROVED", secStatus(st))
	}
}

// TestSecurityEventTimeOutsideWindow: a payload updatedAt a year ahead is stored as the
// receive time (eventAtSource received, timeFlag clock_skew), so the applicant's next
// genuine status event applies instead of being stale; and an envelope time 30 days old
// on a payload without a time is replaced alike.
func TestSecurityEventTimeOutsideWindow(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	defer p.mustTerm(t)

	applicant := newID()
	now := time.Now()
	mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], applicant, "applicantCreated", "", now.Add(-2*time.Minute), "t1"))
	ahead := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], applicant, "applicantInProgress", "", now.AddDate(1, 0, 0), "t2"))
	old := mustPost(t, s.ingestURL, s.app.Name, secSealBare(t, s, applicant, "applicantStepPassed", now.AddDate(0, 0, -30), map[string]any{"stepName": "SELFIE"}))
	later := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], applicant, "applicantCompleted", "", time.Now().Add(time.Second), "t3"))
	if st := secCaughtUp(t, s, applicant, later.seq); secStatus(st) != "COMPLETED" {
		t.Fatalf("the status event after a skewed one: %s, want COMPLETED", secStatus(st))
	}
	hist := secHistory(t, s, applicant)
	for _, c := range []struct {
		name string
		seq  uint64
	}{{"payload updatedAt a year ahead", ahead.seq}, {"envelope time 30 days old", old.seq}} {
		e := hist[c.seq]
		if e.EventAtSource != domain.SourceReceived || e.TimeFlag == nil || *e.TimeFlag != string(domain.TimeFlagClockSkew) ||
			!time.Time(e.EventAt).Equal(time.Time(e.ReceivedAt)) {
			flag := "null"
			if e.TimeFlag != nil {
				flag = *e.TimeFlag
			}
			t.Errorf("%s: eventAt %v (%s), received %v, timeFlag %s; want the receive time, received, clock_skew",
				c.name, time.Time(e.EventAt), e.EventAtSource, time.Time(e.ReceivedAt), flag)
		}
	}
	if e := hist[later.seq]; e.Outcome != domain.OutcomeApplied || e.TimeFlag != nil || e.EventAtSource != domain.SourcePayloadUpdatedAt {
		t.Errorf("the later genuine event: outcome %q from %s, want applied from its payload, unflagged", e.Outcome, e.EventAtSource)
	}
}
