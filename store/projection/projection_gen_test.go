package projection

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// genLog makes a synthetic event log of about events events over applicants applicants,
// in stream order, with the mix a real Allpass feed has: mostly regular lifecycles with
// steps passed, plus retried deliveries (duplicates), out-of-order deliveries (stale),
// transitions the table does not list (irregular), annotations with warnings, event
// names Allpass may add later (unknown), externalUserIds that change or are omitted, and
// events of different applicants interleaved. The first quarter of the log has no
// content ids, as a log written before them; after it every event has one, replays of
// captured webhooks (an earlier content id under a new time) come in, and a few times
// are flagged. Stored holds the JSON the log would keep. The same seed always gives the
// same log.
func genLog(seed uint64, applicants, events int) []domain.Event {
	return newGen(seed, applicants, events).next(events)
}

// gen produces genLog's events a batch at a time, so that a log of millions of events
// need not be held in memory (each applicant keeps only its last few events, for
// retried deliveries).
type gen struct {
	rng        *rand.Rand
	applicants int
	events     int // the planned length of the log, which paces the window
	made       int
	now        time.Time
	pool       []*genApplicant
}

type genApplicant struct {
	id     domain.ApplicantID
	app    domain.AppKey
	ext    domain.ExternalUserID
	step   int // position in the lifecycle script
	last   time.Time
	recent []genSent // the last few events, for retried deliveries
}

// genSent is what a retried delivery repeats.
type genSent struct {
	typ      domain.EventType
	step     string
	warnings []string
	at       time.Time
	cid      domain.ContentID
}

var (
	genScript = []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventStepPassed,
		domain.EventStepPassed, domain.EventCompleted, domain.EventInReview, domain.EventApproved}
	genAnnotations = []domain.EventType{domain.EventDuplicateDocument, domain.EventExpiredDocument,
		domain.EventAdditionalDocumentStepErr, domain.EventDuplicateEmail, domain.EventDuplicatePhone}
	genStatuses = []domain.EventType{domain.EventCreated, domain.EventIncomplete, domain.EventInProgress,
		domain.EventInReview, domain.EventOnHold, domain.EventCompleted, domain.EventApproved, domain.EventRejected}
	genSteps    = []string{"IDENTITY", "SELFIE", "PROOF_OF_ADDRESS", "QUESTIONNAIRE"}
	genWarnings = []string{"LOW_QUALITY", "GLARE", "NAME_MISMATCH"}
)

func newGen(seed uint64, applicants, events int) *gen {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	apps := []domain.AppKey{genUUID(rng), genUUID(rng)}
	g := &gen{rng: rng, applicants: applicants, events: events,
		now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC), pool: make([]*genApplicant, applicants)}
	for i := range g.pool {
		a := &genApplicant{id: domain.ApplicantID(genUUID(rng)), app: apps[rng.IntN(len(apps))]}
		if rng.IntN(10) > 0 {
			a.ext = domain.ExternalUserID(fmt.Sprintf("user-%d", rng.IntN(applicants*2)))
		}
		g.pool[i] = a
	}
	return g
}

// next returns the next n events of the log.
func (g *gen) next(n int) []domain.Event {
	rng, applicants := g.rng, g.applicants
	// Applicants are active in an overlapping window that moves through the pool, as
	// sign-ups spread over time; a few old ones come back (re-reviews).
	window := max(1, min(applicants, 64))
	out := make([]domain.Event, 0, n)
	for len(out) < n {
		g.made++
		seq := uint64(g.made)
		pos := int(uint64(g.made-1) * uint64(applicants) / uint64(max(g.events, g.made)))
		var a *genApplicant
		if rng.IntN(50) == 0 {
			a = g.pool[rng.IntN(max(1, pos+1))]
		} else {
			a = g.pool[min(applicants-1, max(0, pos-window/2+rng.IntN(window)))]
		}
		g.now = g.now.Add(time.Duration(1+rng.IntN(3000)) * time.Millisecond)
		now := g.now
		e := domain.Event{V: domain.StoredVersion, Provider: "allpass", AppKey: a.app, ApplicantID: a.id,
			ExternalUserID: a.ext, EventAt: now, EventAtSource: domain.SourcePayloadUpdatedAt,
			ReceivedAt: now.Add(time.Duration(rng.IntN(900)) * time.Millisecond)}
		if g.made > g.events/4 {
			e.ContentID = domain.ContentID(fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()))
		}
		switch r := rng.IntN(100); {
		case r < 6 && len(a.recent) > 0: // a retried delivery of an earlier event
			old := a.recent[rng.IntN(len(a.recent))]
			e.Type, e.StepName, e.Warnings, e.EventAt, e.ContentID = old.typ, old.step, old.warnings, old.at, old.cid
		case r < 8 && len(a.recent) > 0 && a.recent[0].cid != "": // a captured webhook replayed later
			old := a.recent[0]
			e.Type, e.StepName, e.Warnings, e.ContentID = old.typ, old.step, old.warnings, old.cid
			e.EventAtSource = domain.SourceEnvelopeTime
		case r < 11 && !a.last.IsZero(): // an older status event delivered late
			e.Type = genStatuses[rng.IntN(len(genStatuses))]
			e.EventAt = a.last.Add(-time.Duration(1+rng.IntN(60)) * time.Second)
		case r < 15: // a transition the table may not list
			e.Type = genStatuses[rng.IntN(len(genStatuses))]
		case r < 22:
			e.Type = genAnnotations[rng.IntN(len(genAnnotations))]
			e.Warnings = []string{genWarnings[rng.IntN(len(genWarnings))]}
		case r < 24:
			e.Type = "applicantLevelChanged"
		default:
			e.Type = genScript[a.step%len(genScript)]
			a.step++
			if a.step%len(genScript) == 0 && rng.IntN(2) == 0 {
				a.step = 1 // flow restart: back to IN_PROGRESS
			}
		}
		if e.Type == domain.EventStepPassed && e.StepName == "" {
			e.StepName = genSteps[rng.IntN(len(genSteps))]
		}
		if e.Type.Class() == domain.ClassStatus && rng.IntN(8) == 0 {
			e.Warnings = []string{genWarnings[rng.IntN(len(genWarnings))]}
		}
		switch r := rng.IntN(100); {
		case r < 3:
			a.ext = domain.ExternalUserID(fmt.Sprintf("user-%d", rng.IntN(applicants*2)))
			e.ExternalUserID = a.ext
		case r < 8:
			e.ExternalUserID = "" // payload without externalUserId
		}
		if e.ContentID != "" && rng.IntN(40) == 0 { // a time outside the trusted window
			e.EventAt, e.EventAtSource, e.TimeFlag = e.ReceivedAt, domain.SourceReceived, domain.TimeFlagClockSkew
		}
		if e.Type.Class() == domain.ClassStatus && e.EventAt.After(a.last) {
			a.last = e.EventAt
		}
		e.Payload = json.RawMessage(fmt.Sprintf(`{"type":%q,"id":%q,"appKey":%q,"n":%d}`, e.Type, e.ApplicantID, e.AppKey, seq))
		e.Seq = seq
		stored, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		e.Stored = stored
		if len(a.recent) == 4 {
			a.recent = append(a.recent[:0], a.recent[1:]...)
		}
		a.recent = append(a.recent, genSent{e.Type, e.StepName, e.Warnings, e.EventAt, e.ContentID})
		out = append(out, e)
	}
	return out
}

func genUUID(rng *rand.Rand) domain.AppKey {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return domain.AppKey(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// foldLog folds events in memory with the domain fold: the expected projection.
type folded struct {
	states  map[domain.ApplicantID]domain.State
	history map[domain.ApplicantID][]domain.Record
	records []domain.Record // every record, in stream order
}

func foldLog(events []domain.Event) folded {
	f := domain.NewFolder()
	out := folded{states: map[domain.ApplicantID]domain.State{}, history: map[domain.ApplicantID][]domain.Record{}}
	for _, e := range events {
		s, rec := f.Apply(out.states[e.ApplicantID], e)
		out.states[e.ApplicantID] = s
		out.history[e.ApplicantID] = append(out.history[e.ApplicantID], rec)
		out.records = append(out.records, rec)
	}
	return out
}

// The generated log holds what the tests built on it rely on: events with and without
// content ids, flagged times, and replays (a content id again under a new time), each
// replay folding to a duplicate.
func TestGenLogHasReplays(t *testing.T) {
	events := genLog(40, 200, 4000)
	f := foldLog(events)
	var withCID, flagged, replays int
	for i, e := range events {
		if e.ContentID != "" {
			withCID++
		}
		if e.TimeFlag != "" {
			flagged++
		}
		if e.EventAtSource == domain.SourceEnvelopeTime {
			replays++
			if f.records[i].Outcome != domain.OutcomeDuplicate {
				t.Fatalf("replay at seq %d folded to %q", e.Seq, f.records[i].Outcome)
			}
		}
	}
	if withCID == 0 || withCID == len(events) || flagged == 0 || replays == 0 {
		t.Fatalf("%d of %d events with a content id, %d flagged, %d replays", withCID, len(events), flagged, replays)
	}
}
