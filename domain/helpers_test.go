package domain_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

const (
	testApp       domain.AppKey      = "71f2c0c6-c720-423b-8df0-7763102ad57e"
	testApplicant domain.ApplicantID = "0b5b6c2e-3f55-4a4e-9a53-6d1f1c7f2a10"
)

// t0 is an arbitrary fixed instant; tests never read the clock.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

// at returns t0 shifted by d seconds.
func at(d int) time.Time { return t0.Add(time.Duration(d) * time.Second) }

// The event catalogue of DESIGN.md section 2, spelled out here rather than taken from
// the package constants so that a typo there fails a test.
var (
	statusTargets = map[domain.EventType]domain.Status{
		"applicantCreated":    "INIT",
		"applicantIncomplete": "INCOMPLETE",
		"applicantInProgress": "IN_PROGRESS",
		"applicantOnHold":     "ON_HOLD",
		"applicantInReview":   "IN_REVIEW",
		"applicantCompleted":  "COMPLETED",
		"applicantApproved":   "APPROVED",
		"applicantRejected":   "REJECTED",
	}
	annotationTypes = []domain.EventType{
		"applicantStepPassed", "applicantDuplicateDocument", "expiredDocument",
		"additionalDocumentStepError", "applicantDuplicateEmail", "applicantDuplicatePhone",
	}
	unknownTypes = []domain.EventType{"applicantLevelChanged", "applicantDeleted", ""}
)

// lifecycleColumns and lifecycleTable are the table of DESIGN.md section 5, written out
// cell by cell: one row per current status ("-" is "no status yet"), one column per
// status event, in lifecycleColumns order.
//
//	A  a regular transition: applied
//	=  the applicant already has that status: applied
//	I  a source the table does not list: applied and flagged irregular
var lifecycleColumns = []domain.EventType{
	"applicantCreated", "applicantIncomplete", "applicantInProgress", "applicantOnHold",
	"applicantInReview", "applicantCompleted", "applicantApproved", "applicantRejected",
}

const lifecycleTable = `
from         Created Incomplete InProgress OnHold InReview Completed Approved Rejected
-            A       I          I          I      I        I         I        I
INIT         =       A          A          I      I        I         I        I
INCOMPLETE   I       =          A          A      I        I         I        I
IN_PROGRESS  I       A          =          A      A        A         A        A
IN_REVIEW    I       I          I          A      =        A         A        A
ON_HOLD      I       A          A          =      A        A         A        A
COMPLETED    I       I          I          A      A        =         A        A
APPROVED     I       A          A          I      I        I         =        A
REJECTED     I       A          A          I      I        I         A        =
`

// lifecycleGrid parses lifecycleTable: grid[from][event] is 'A', '=' or 'I'.
func lifecycleGrid(tb testing.TB) map[domain.Status]map[domain.EventType]byte {
	tb.Helper()
	lines := strings.Split(strings.TrimSpace(lifecycleTable), "\n")
	header := strings.Fields(lines[0])[1:]
	if len(header) != len(lifecycleColumns) {
		tb.Fatalf("table header has %d columns, want %d", len(header), len(lifecycleColumns))
	}
	for i, h := range header {
		if string(lifecycleColumns[i]) != "applicant"+h {
			tb.Fatalf("table column %d is %q, want %q", i, h, lifecycleColumns[i])
		}
	}
	grid := map[domain.Status]map[domain.EventType]byte{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != len(lifecycleColumns)+1 {
			tb.Fatalf("table row %q has %d fields", line, len(f))
		}
		from := domain.Status(f[0])
		if from == "-" {
			from = ""
		}
		grid[from] = map[domain.EventType]byte{}
		for i, c := range f[1:] {
			grid[from][lifecycleColumns[i]] = c[0]
		}
	}
	if len(grid) != 9 {
		tb.Fatalf("table has %d rows, want 9", len(grid))
	}
	return grid
}

var allOutcomes = []domain.Outcome{"duplicate", "stale", "applied", "irregular", "annotated", "unknown"}

// ev builds an event for testApplicant with its stored bytes, as the log would hold it.
func ev(tb testing.TB, seq uint64, t domain.EventType, eventAt time.Time, opts ...func(*domain.Event)) domain.Event {
	tb.Helper()
	e := domain.Event{
		V: domain.StoredVersion, Provider: "allpass", AppKey: testApp, ApplicantID: testApplicant,
		Type: t, EventAt: eventAt, EventAtSource: domain.SourcePayloadUpdatedAt,
		ReceivedAt: eventAt.Add(2 * time.Second), Seq: seq,
	}
	for _, o := range opts {
		o(&e)
	}
	seal(tb, &e)
	return e
}

func withStep(name string) func(*domain.Event) { return func(e *domain.Event) { e.StepName = name } }
func withWarnings(w ...string) func(*domain.Event) {
	return func(e *domain.Event) { e.Warnings = w }
}
func withExt(x domain.ExternalUserID) func(*domain.Event) {
	return func(e *domain.Event) { e.ExternalUserID = x }
}
func withApplicant(id domain.ApplicantID) func(*domain.Event) {
	return func(e *domain.Event) { e.ApplicantID = id }
}

// seal fills Payload and Stored the way ingest and the log do.
func seal(tb testing.TB, e *domain.Event) {
	tb.Helper()
	payload := map[string]any{"type": e.Type, "id": e.ApplicantID, "appKey": e.AppKey,
		"updatedAt": e.EventAt.Format(time.RFC3339Nano)}
	if e.ExternalUserID != "" {
		payload["externalUserId"] = e.ExternalUserID
	}
	if e.StepName != "" {
		payload["stepName"] = e.StepName
	}
	if len(e.Warnings) > 0 {
		payload["warnings"] = e.Warnings
	}
	e.Payload = mustJSON(tb, payload)
	e.Stored = mustJSON(tb, e)
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal %T: %v", v, err)
	}
	return b
}

// fold folds events from the empty state with one Folder, returning every record.
func fold(events []domain.Event) (domain.State, []domain.Record) {
	f := domain.NewFolder()
	var s domain.State
	recs := make([]domain.Record, 0, len(events))
	for _, e := range events {
		var r domain.Record
		s, r = f.Apply(s, e)
		recs = append(recs, r)
	}
	return s, recs
}

// renumber gives events consecutive stream sequences from 1, as the log would.
func renumber(events []domain.Event) {
	for i := range events {
		events[i].Seq = uint64(i + 1)
	}
}

// randomLog generates one applicant's log: mostly forward-moving status events, with
// out-of-order and equal timestamps, exact re-deliveries, replays (an earlier event's
// content id under a new time), annotations with repeated steps and warnings, unknown
// names and a changing externalUserId, so that every outcome occurs. Most events carry a
// content id of their own; about one in six has none, as events stored before content ids.
func randomLog(tb testing.TB, r *rand.Rand, n int) []domain.Event {
	tb.Helper()
	statusTypes := lifecycleColumns
	steps := []string{"", "selfie", "document", "poa", "liveness"}
	warnings := []string{"lowQuality", "glare", "nameMismatch"}
	exts := []domain.ExternalUserID{"", "", "user-17", "user-17", "user-17", "user-42"}

	out := make([]domain.Event, 0, n)
	clock := 0
	for len(out) < n {
		if len(out) > 0 && r.IntN(100) < 8 {
			out = append(out, out[r.IntN(len(out))]) // exact re-delivery
			continue
		}
		if len(out) > 0 && r.IntN(100) < 5 {
			// A replay: the same authenticated bytes with another envelope time.
			if orig := out[r.IntN(len(out))]; orig.ContentID != "" {
				clock += r.IntN(3600) - 600
				out = append(out, replayed(tb, orig, 0, at(clock)))
				continue
			}
		}
		switch p := r.IntN(100); {
		case p < 12:
			clock -= r.IntN(600) // out of order
		case p < 22: // same instant as the previous event
		default:
			clock += 1 + r.IntN(120)
		}
		var t domain.EventType
		switch p := r.IntN(100); {
		case len(out) == 0 && p < 70:
			t = "applicantCreated"
		case p < 50:
			t = statusTypes[r.IntN(len(statusTypes))]
		case p < 92:
			t = annotationTypes[r.IntN(len(annotationTypes))]
		default:
			t = unknownTypes[r.IntN(len(unknownTypes))]
		}
		var opts []func(*domain.Event)
		if t == "applicantStepPassed" || r.IntN(4) == 0 {
			opts = append(opts, withStep(steps[r.IntN(len(steps))]))
		}
		if r.IntN(3) == 0 {
			var w []string
			for _, x := range warnings {
				if r.IntN(2) == 0 {
					w = append(w, x)
				}
			}
			opts = append(opts, withWarnings(w...))
		}
		opts = append(opts, withExt(exts[r.IntN(len(exts))]))
		if r.IntN(6) != 0 {
			opts = append(opts, withCID(domain.ContentID(fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()))))
		}
		out = append(out, ev(tb, 0, t, at(clock), opts...))
	}
	renumber(out)
	return out
}

// realisticLog interleaves many applicants' plausible journeys, in stream order, for the
// benchmark: creation, steps, review, a decision, sometimes a restart and a re-review, and
// about one Allpass retry in ten.
func realisticLog(tb testing.TB, r *rand.Rand, applicants int) []domain.Event {
	tb.Helper()
	var journeys [][]domain.Event
	for i := range applicants {
		id := domain.ApplicantID(fmt.Sprintf("%08x-0000-4000-8000-%012x", r.Uint32(), i))
		ext := withExt(domain.ExternalUserID(fmt.Sprintf("user-%d", i)))
		clock := r.IntN(86400)
		var j []domain.Event
		add := func(t domain.EventType, opts ...func(*domain.Event)) {
			clock += 1 + r.IntN(300)
			opts = append(opts, withApplicant(id), ext)
			e := ev(tb, 0, t, at(clock), opts...)
			j = append(j, e)
			if r.IntN(10) == 0 {
				j = append(j, e) // Allpass retry of the same delivery
			}
		}
		add("applicantCreated")
		add("applicantInProgress")
		for _, s := range []string{"document", "selfie", "liveness", "poa"} {
			add("applicantStepPassed", withStep(s))
		}
		if r.IntN(5) == 0 {
			add("expiredDocument", withWarnings("documentExpired"))
			add("applicantOnHold")
		}
		add("applicantCompleted")
		add("applicantInReview")
		if r.IntN(4) == 0 {
			add("applicantRejected", withWarnings("nameMismatch"))
			add("applicantInProgress")
			add("applicantStepPassed", withStep("document"))
			add("applicantCompleted")
		}
		add("applicantApproved")
		journeys = append(journeys, j)
	}
	var out []domain.Event
	for len(journeys) > 0 {
		k := r.IntN(len(journeys))
		out = append(out, journeys[k][0])
		if journeys[k] = journeys[k][1:]; len(journeys[k]) == 0 {
			journeys = slices.Delete(journeys, k, k+1)
		}
	}
	renumber(out)
	return out
}

// decision is the part of a state that the fold's rules decide; the event count, the
// digest and the last sequence count deliveries and so legitimately differ between a log
// and the same log with re-deliveries.
type decision struct {
	Status         domain.Status
	StatusAt       time.Time
	StepsPassed    []string
	Flags          []string
	Warnings       []string
	Anomalies      int
	ExternalUserID domain.ExternalUserID
}

func decisionOf(s domain.State) decision {
	return decision{s.Status, s.StatusAt, s.StepsPassed, s.Flags, s.Warnings, s.Anomalies, s.ExternalUserID}
}

// model is an independent, deliberately naive statement of DESIGN.md section 5, used to
// check the fold's decisions on generated and fuzzed logs.
type model struct {
	grid     map[domain.Status]map[domain.EventType]byte
	d        decision
	seen     map[string]bool
	contents map[domain.ContentID]bool // every content id folded (section 15)
}

func newModel(tb testing.TB) *model {
	return &model{grid: lifecycleGrid(tb),
		d:    decision{StepsPassed: []string{}, Flags: []string{}, Warnings: []string{}},
		seen: map[string]bool{}, contents: map[domain.ContentID]bool{}}
}

func (m *model) apply(tb testing.TB, e domain.Event) domain.Outcome {
	tb.Helper()
	key := fmt.Sprintf("%s\x00%s\x00%d", e.Type, e.StepName, e.EventAt.UnixNano())
	repeated := e.ContentID != "" && m.contents[e.ContentID]
	if e.ContentID != "" {
		m.contents[e.ContentID] = true
	}
	if repeated || m.seen[key] {
		return "duplicate"
	}
	to, isStatus := statusTargets[e.Type]
	if isStatus && m.d.Status != "" && e.EventAt.Before(m.d.StatusAt) {
		return "stale"
	}
	m.seen[key] = true
	isAnnotation := slices.Contains(annotationTypes, e.Type)
	if !isStatus && !isAnnotation {
		return "unknown"
	}
	if e.ExternalUserID != "" {
		m.d.ExternalUserID = e.ExternalUserID
	}
	for _, w := range e.Warnings {
		if !slices.Contains(m.d.Warnings, w) {
			m.d.Warnings = append(m.d.Warnings, w)
		}
	}
	if isAnnotation {
		switch {
		case e.Type != "applicantStepPassed":
			if !slices.Contains(m.d.Flags, string(e.Type)) {
				m.d.Flags = append(m.d.Flags, string(e.Type))
			}
		case e.StepName != "" && !slices.Contains(m.d.StepsPassed, e.StepName):
			m.d.StepsPassed = append(m.d.StepsPassed, e.StepName)
		}
		return "annotated"
	}
	cell := m.grid[m.d.Status][e.Type]
	m.d.Status, m.d.StatusAt = to, e.EventAt
	if cell == 'I' {
		m.d.Anomalies++
		return "irregular"
	}
	return "applied"
}

// checkAgainstModel folds events and asserts every outcome and the final decision state
// equal the model's, that each event got exactly one of the six outcomes, and that the
// fold's bookkeeping (count, sequence, digest chain, from/to) is consistent.
func checkAgainstModel(tb testing.TB, events []domain.Event) (domain.State, []domain.Record) {
	tb.Helper()
	s, recs := fold(events)
	if len(events) == 0 {
		if !reflect.DeepEqual(s, domain.State{}) || len(recs) != 0 {
			tb.Fatalf("folding nothing gave %+v, %d records", s, len(recs))
		}
		return s, recs
	}
	if len(recs) != len(events) {
		tb.Fatalf("%d records for %d events", len(recs), len(events))
	}
	m := newModel(tb)
	var prev domain.Status
	for i, r := range recs {
		if !slices.Contains(allOutcomes, r.Outcome) {
			tb.Fatalf("event %d (%s): outcome %q is not one of the six", i, events[i].Type, r.Outcome)
		}
		if want := m.apply(tb, events[i]); r.Outcome != want {
			tb.Fatalf("event %d (%s at %s, status %q since %s): outcome %q, want %q",
				i, events[i].Type, events[i].EventAt, r.From, m.d.StatusAt, r.Outcome, want)
		}
		if r.From != prev {
			tb.Fatalf("event %d: from %q, want %q", i, r.From, prev)
		}
		moves := r.Outcome == "applied" || r.Outcome == "irregular"
		if !moves && r.To != r.From {
			tb.Fatalf("event %d: outcome %q moved %q -> %q", i, r.Outcome, r.From, r.To)
		}
		prev = r.To
		if r.Seq != events[i].Seq {
			tb.Fatalf("event %d: record seq %d, want %d", i, r.Seq, events[i].Seq)
		}
	}
	if got, want := mustJSON(tb, decisionOf(s)), mustJSON(tb, m.d); !bytes.Equal(got, want) {
		tb.Fatalf("final decision state\n got %s\nwant %s", got, want)
	}
	if s.Events != len(events) {
		tb.Fatalf("Events = %d, want %d", s.Events, len(events))
	}
	if len(events) > 0 && s.LastSeq != events[len(events)-1].Seq {
		tb.Fatalf("LastSeq = %d, want %d", s.LastSeq, events[len(events)-1].Seq)
	}
	return s, recs
}
