package domain_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

var propertySeeds = []uint64{1, 2, 3, 5, 8, 13, 21, 34}

// TestFoldMatchesModel folds seeded random logs and checks every outcome and the final
// decision state against the naive model of DESIGN.md section 5; across the seeds every
// one of the six outcomes must occur, so the generator cannot quietly stop exercising one.
func TestFoldMatchesModel(t *testing.T) {
	seen := map[domain.Outcome]int{}
	for _, seed := range propertySeeds {
		events := randomLog(t, rand.New(rand.NewPCG(seed, 1)), 300)
		_, recs := checkAgainstModel(t, events)
		for _, r := range recs {
			seen[r.Outcome]++
		}
	}
	for _, o := range allOutcomes {
		if seen[o] == 0 {
			t.Errorf("no %q outcome in %d generated logs: %v", o, len(propertySeeds), seen)
		}
	}
}

// TestFoldDeterministic: the same log folded twice, with a fresh Folder and with one that
// has already folded another applicant, yields the same bytes for state and history.
func TestFoldDeterministic(t *testing.T) {
	reused := domain.NewFolder()
	for _, seed := range propertySeeds {
		r := rand.New(rand.NewPCG(seed, 2))
		events := randomLog(t, r, 300)
		s1, recs1 := fold(events)

		var s2 domain.State
		var recs2 []domain.Record
		for _, e := range events {
			var rec domain.Record
			s2, rec = reused.Apply(s2, e)
			recs2 = append(recs2, rec)
		}
		if a, b := mustJSON(t, s1), mustJSON(t, s2); !bytes.Equal(a, b) {
			t.Fatalf("seed %d: state differs between folds\n%s\n%s", seed, a, b)
		}
		if a, b := mustJSON(t, recs1), mustJSON(t, recs2); !bytes.Equal(a, b) {
			t.Fatalf("seed %d: history differs between folds", seed)
		}
		// Leave the reused Folder positioned somewhere arbitrary for the next seed.
		for range 5 {
			reused.Apply(domain.State{}, randomLog(t, r, 1)[0])
		}
	}
}

// TestRedeliveryInvariance inserts exact copies of earlier events anywhere after their
// originals, as Allpass retries and JetStream redeliveries do, and replays (an event
// with a content id resent under another time, as a captured webhook with a new envelope
// time): the decision part of the final state and the outcome of every original event
// stay the same, every copy is a duplicate or stale, and every replay a duplicate.
func TestRedeliveryInvariance(t *testing.T) {
	for _, seed := range propertySeeds {
		r := rand.New(rand.NewPCG(seed, 3))
		events := randomLog(t, r, 150)
		want, wantRecs := fold(events)

		type item struct {
			e    domain.Event
			orig int // index in events, or -1 for a copy
		}
		items := make([]item, len(events))
		for i, e := range events {
			items[i] = item{e, i}
		}
		copies := 1 + r.IntN(40)
		for range copies {
			i := r.IntN(len(items))
			j := i + 1 + r.IntN(len(items)-i)
			c := items[i].e
			if c.ContentID != "" && r.IntN(2) == 0 {
				c = replayed(t, c, 0, c.EventAt.Add(time.Duration(r.IntN(1<<20)-1<<19)*time.Second))
			}
			items = slices.Insert(items, j, item{c, -1})
		}
		redelivered := make([]domain.Event, len(items))
		for i, it := range items {
			redelivered[i] = it.e
		}
		renumber(redelivered)
		got, recs := checkAgainstModel(t, redelivered)

		if a, b := mustJSON(t, decisionOf(got)), mustJSON(t, decisionOf(want)); !bytes.Equal(a, b) {
			t.Fatalf("seed %d, %d copies: decision state changed\n got %s\nwant %s", seed, copies, a, b)
		}
		if got.Events != len(events)+copies {
			t.Errorf("seed %d: Events %d, want %d", seed, got.Events, len(events)+copies)
		}
		for k, it := range items {
			switch {
			case it.orig >= 0 && recs[k].Outcome != wantRecs[it.orig].Outcome:
				t.Fatalf("seed %d: original event %d became %q, was %q", seed, it.orig, recs[k].Outcome, wantRecs[it.orig].Outcome)
			case it.orig < 0 && recs[k].Outcome != domain.OutcomeDuplicate && recs[k].Outcome != domain.OutcomeStale:
				t.Fatalf("seed %d: a re-delivered %s got %q", seed, it.e.Type, recs[k].Outcome)
			case it.orig < 0 && it.e.ContentID != "" && recs[k].Outcome != domain.OutcomeDuplicate:
				t.Fatalf("seed %d: a replayed %s got %q", seed, it.e.Type, recs[k].Outcome)
			}
		}
	}
}

// TestApplyDoesNotMutate: Apply leaves its input state alone, including the spare
// capacity of its slices, and the state it returns shares no backing array with it.
func TestApplyDoesNotMutate(t *testing.T) {
	withRoom := func(vals ...string) []string { return append(make([]string, 0, 16), vals...) }
	s := domain.State{
		ApplicantID: testApplicant, AppKey: testApp, Status: "IN_PROGRESS", StatusAt: at(0),
		Events: 3, LastSeq: 3,
		StepsPassed: withRoom("document"), Flags: withRoom("expiredDocument"), Warnings: withRoom("glare"),
		Seen: append(make([]uint64, 0, 16), 10, 20, 30), SeenContent: append(make([]uint64, 0, 16), 10, 20),
	}
	snapshot := deepCopy(s)
	f := domain.NewFolder()
	for _, e := range []domain.Event{
		ev(t, 4, "applicantStepPassed", at(10), withStep("selfie"), withWarnings("lowQuality")),
		ev(t, 5, "applicantDuplicateEmail", at(20), withWarnings("w2")),
		ev(t, 6, "applicantApproved", at(30), withWarnings("w3")),
		ev(t, 7, "applicantCreated", at(40)),
	} {
		next, _ := f.Apply(s, e)
		if !reflect.DeepEqual(s, snapshot) {
			t.Fatalf("%s modified its input:\n got %+v\nwant %+v", e.Type, s, snapshot)
		}
		for name, pair := range map[string][2][]string{
			"StepsPassed": {s.StepsPassed, next.StepsPassed},
			"Flags":       {s.Flags, next.Flags},
			"Warnings":    {s.Warnings, next.Warnings},
		} {
			in, out := pair[0][:cap(pair[0])], pair[1][:cap(pair[1])]
			if slices.ContainsFunc(in[len(pair[0]):], func(v string) bool { return v != "" }) {
				t.Errorf("%s: Apply wrote into the spare capacity of the input's %s", e.Type, name)
			}
			if len(in) > 0 && len(out) > 0 && &in[0] == &out[0] {
				t.Errorf("%s: the returned %s shares its backing array with the input", e.Type, name)
			}
		}
		for name, pair := range map[string][2][]uint64{
			"Seen":        {s.Seen, next.Seen},
			"SeenContent": {s.SeenContent, next.SeenContent},
		} {
			in, out := pair[0][:cap(pair[0])], pair[1][:cap(pair[1])]
			if slices.ContainsFunc(in[len(pair[0]):], func(v uint64) bool { return v != 0 }) {
				t.Errorf("%s: Apply wrote into the spare capacity of the input's %s", e.Type, name)
			}
			if len(out) > 0 && &in[0] == &out[0] {
				t.Errorf("%s: the returned %s shares its backing array with the input", e.Type, name)
			}
		}
	}

	// Along a whole log, no step changes the state it was given.
	events := randomLog(t, rand.New(rand.NewPCG(9, 9)), 200)
	var cur domain.State
	for i, e := range events {
		before := deepCopy(cur)
		next, _ := f.Apply(cur, e)
		if !reflect.DeepEqual(cur, before) {
			t.Fatalf("event %d (%s) modified its input state", i, e.Type)
		}
		cur = next
	}
}

// TestFoldInPlaceEqualsApply: Fold, which changes the state it is given, gives the same
// states and records as Apply along whole logs, with one Folder for both (they share
// its hasher) and with the lists of the state in place grown as they go.
func TestFoldInPlaceEqualsApply(t *testing.T) {
	for _, seed := range propertySeeds {
		events := randomLog(t, rand.New(rand.NewPCG(seed, 4)), 300)
		checkFoldInPlace(t, events)
	}
}

func checkFoldInPlace(t *testing.T, events []domain.Event) {
	t.Helper()
	f := domain.NewFolder()
	var applied, inPlace domain.State
	for i, e := range events {
		var want domain.Record
		applied, want = f.Apply(applied, e)
		got := f.Fold(&inPlace, &e)
		if a, b := mustJSON(t, want), mustJSON(t, got); !bytes.Equal(a, b) {
			t.Fatalf("event %d (%s): Fold's record\n%s\nApply's\n%s", i, e.Type, b, a)
		}
		if a, b := mustJSON(t, applied), mustJSON(t, inPlace); !bytes.Equal(a, b) {
			t.Fatalf("event %d (%s): Fold's state\n%s\nApply's\n%s", i, e.Type, b, a)
		}
	}
}

func deepCopy(s domain.State) domain.State {
	s.StepsPassed = slices.Clone(s.StepsPassed)
	s.Flags = slices.Clone(s.Flags)
	s.Warnings = slices.Clone(s.Warnings)
	s.Seen = slices.Clone(s.Seen)
	s.SeenContent = slices.Clone(s.SeenContent)
	return s
}

// decodeEvents turns fuzz bytes into up to 48 events of one applicant, three bytes each:
// the type (0xff: an exact copy of an earlier event instead), a signed step of the clock
// in seconds, and bits choosing stepName, warnings, externalUserId, a sub-second part and
// (0x80) the previous event's content id instead of one of its own, as a replay has. The
// odd events with 0x80 and no previous id carry none, as events stored before content ids.
func decodeEvents(tb testing.TB, data []byte) []domain.Event {
	tb.Helper()
	types := slices.Concat(lifecycleColumns, annotationTypes, unknownTypes)
	steps := []string{"", "selfie", "document", "poa"}
	warnings := [][]string{nil, {"glare"}, {"lowQuality", "glare"}, {"nameMismatch"}}
	exts := []domain.ExternalUserID{"", "user-1", "user-2", "user-1"}
	var events []domain.Event
	clock := 0
	for ; len(data) >= 3 && len(events) < 48; data = data[3:] {
		b0, b1, b2 := data[0], data[1], data[2]
		if b0 == 0xff && len(events) > 0 {
			events = append(events, events[int(b1)%len(events)])
			continue
		}
		clock += int(int8(b1))
		eventAt := at(clock)
		if b2&0x40 != 0 {
			eventAt = eventAt.Add(500 * time.Millisecond)
		}
		c := domain.ContentID(fmt.Sprintf("c%d", len(events)))
		if b2&0x80 != 0 {
			c = ""
			if len(events) > 0 {
				c = events[len(events)-1].ContentID
			}
		}
		events = append(events, ev(tb, 0, types[int(b0)%len(types)], eventAt,
			withStep(steps[b2&3]), withWarnings(warnings[b2>>2&3]...), withExt(exts[b2>>4&3]), withCID(c)))
	}
	renumber(events)
	return events
}

// FuzzApply folds fuzzed event sequences: no panic, exactly one of the six outcomes per
// event and the model's decisions, the same bytes when folded twice, Refold agreeing,
// and Fold in place agreeing with Apply.
func FuzzApply(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 10, 0, 2, 10, 0, 8, 5, 1, 8, 5, 2, 5, 10, 0, 4, 10, 4, 6, 10, 0})   // a happy path
	f.Add([]byte{6, 0, 0, 0, 0xf0, 0, 2, 20, 0x11, 0xff, 1, 0, 3, 0xfb, 0, 0xff, 0, 0}) // out of order, copies
	f.Add([]byte{14, 0, 0x7f, 15, 0, 0, 16, 1, 0x20, 7, 3, 0, 0xff, 2, 0, 1, 0, 0x40})  // unknowns first
	f.Add([]byte{0, 0, 0, 2, 10, 0, 8, 5, 0, 7, 5, 0, 6, 5, 0, 6, 9, 0x80, 6, 9, 0x80}) // replays
	f.Fuzz(func(t *testing.T, data []byte) {
		events := decodeEvents(t, data)
		s, recs := checkAgainstModel(t, events)
		s2, recs2 := fold(events)
		if !bytes.Equal(mustJSON(t, s), mustJSON(t, s2)) || !bytes.Equal(mustJSON(t, recs), mustJSON(t, recs2)) {
			t.Fatal("folding the same events twice gave different bytes")
		}
		if got := domain.NewFolder().Refold(recs); !bytes.Equal(mustJSON(t, got), mustJSON(t, s)) {
			t.Fatalf("Refold\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, s))
		}
		checkFoldInPlace(t, events)
	})
}
