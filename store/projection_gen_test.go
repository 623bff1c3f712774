package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// genLog makes a synthetic event log of about events events over applicants applicants,
// in stream order, with the mix a real Allpass feed has: mostly regular lifecycles with
// steps passed, plus retried deliveries (duplicates), out-of-order deliveries (stale),
// transitions the table does not list (irregular), annotations with warnings, event
// names Allpass may add later (unknown), externalUserIds that change or are omitted, and
// events of different applicants interleaved. Stored holds the JSON the log would keep.
// The same seed always gives the same log.
func genLog(seed uint64, applicants, events int) []domain.Event {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	apps := []domain.AppKey{genUUID(rng), genUUID(rng)}
	base := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

	type applicant struct {
		id      domain.ApplicantID
		app     domain.AppKey
		ext     domain.ExternalUserID
		step    int // position in the lifecycle script
		last    time.Time
		history []domain.Event
	}
	script := []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventStepPassed,
		domain.EventStepPassed, domain.EventCompleted, domain.EventInReview, domain.EventApproved}
	annotations := []domain.EventType{domain.EventDuplicateDocument, domain.EventExpiredDocument,
		domain.EventAdditionalDocumentStepErr, domain.EventDuplicateEmail, domain.EventDuplicatePhone}
	statuses := []domain.EventType{domain.EventCreated, domain.EventIncomplete, domain.EventInProgress,
		domain.EventInReview, domain.EventOnHold, domain.EventCompleted, domain.EventApproved, domain.EventRejected}
	steps := []string{"IDENTITY", "SELFIE", "PROOF_OF_ADDRESS", "QUESTIONNAIRE"}
	warnings := []string{"LOW_QUALITY", "GLARE", "NAME_MISMATCH"}

	pool := make([]*applicant, applicants)
	for i := range pool {
		a := &applicant{id: domain.ApplicantID(genUUID(rng)), app: apps[rng.IntN(len(apps))]}
		if rng.IntN(10) > 0 {
			a.ext = domain.ExternalUserID(fmt.Sprintf("user-%d", rng.IntN(applicants*2)))
		}
		pool[i] = a
	}
	// Applicants are active in an overlapping window that moves through the pool, as
	// sign-ups spread over time; a few old ones come back (re-reviews).
	window := max(1, min(applicants, 64))
	out := make([]domain.Event, 0, events)
	now := base
	for seq := uint64(1); len(out) < events; seq++ {
		pos := int(uint64(len(out)) * uint64(applicants) / uint64(events))
		var a *applicant
		if rng.IntN(50) == 0 {
			a = pool[rng.IntN(max(1, pos+1))]
		} else {
			a = pool[min(applicants-1, max(0, pos-window/2+rng.IntN(window)))]
		}
		now = now.Add(time.Duration(1+rng.IntN(3000)) * time.Millisecond)
		e := domain.Event{V: domain.StoredVersion, Provider: "allpass", AppKey: a.app, ApplicantID: a.id,
			ExternalUserID: a.ext, EventAt: now, EventAtSource: domain.SourcePayloadUpdatedAt,
			ReceivedAt: now.Add(time.Duration(rng.IntN(900)) * time.Millisecond)}
		switch r := rng.IntN(100); {
		case r < 6 && len(a.history) > 0: // a retried delivery of an earlier event
			old := a.history[rng.IntN(len(a.history))]
			e.Type, e.StepName, e.Warnings, e.EventAt = old.Type, old.StepName, old.Warnings, old.EventAt
		case r < 11 && !a.last.IsZero(): // an older status event delivered late
			e.Type = statuses[rng.IntN(len(statuses))]
			e.EventAt = a.last.Add(-time.Duration(1+rng.IntN(60)) * time.Second)
		case r < 15: // a transition the table may not list
			e.Type = statuses[rng.IntN(len(statuses))]
		case r < 22:
			e.Type = annotations[rng.IntN(len(annotations))]
			e.Warnings = []string{warnings[rng.IntN(len(warnings))]}
		case r < 24:
			e.Type = "applicantLevelChanged"
		default:
			e.Type = script[a.step%len(script)]
			a.step++
			if a.step%len(script) == 0 && rng.IntN(2) == 0 {
				a.step = 1 // flow restart: back to IN_PROGRESS
			}
		}
		if e.Type == domain.EventStepPassed && e.StepName == "" {
			e.StepName = steps[rng.IntN(len(steps))]
		}
		if e.Type.Kind() == domain.KindStatus && rng.IntN(8) == 0 {
			e.Warnings = []string{warnings[rng.IntN(len(warnings))]}
		}
		switch r := rng.IntN(100); {
		case r < 3:
			a.ext = domain.ExternalUserID(fmt.Sprintf("user-%d", rng.IntN(applicants*2)))
			e.ExternalUserID = a.ext
		case r < 8:
			e.ExternalUserID = "" // payload without externalUserId
		}
		if e.Type.Kind() == domain.KindStatus && e.EventAt.After(a.last) {
			a.last = e.EventAt
		}
		e.Payload = json.RawMessage(fmt.Sprintf(`{"type":%q,"id":%q,"appKey":%q,"n":%d}`, e.Type, e.ApplicantID, e.AppKey, seq))
		e.Seq = seq
		stored, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		e.Stored = stored
		a.history = append(a.history, e)
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
