package projection

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// sealLog turns events into what a keyed log holds (stored version 2): the id replaced
// by a stand-in sealed form and a blind index of (appKey, id), as the key ring makes.
func sealLog(events []domain.Event) []domain.Event {
	out := make([]domain.Event, len(events))
	for i, e := range events {
		if e.ExternalUserID != "" {
			e.ExternalUserIndex = testIndex(e.AppKey, e.ExternalUserID)
			e.SealedExternalUserID = domain.SealedExternalUserID(fmt.Sprintf("sealed(%s,%d)", e.ExternalUserID, e.Seq))
			e.ExternalUserID = ""
		}
		e.Stored, _ = json.Marshal(e)
		out[i] = e
	}
	return out
}

func testIndex(app domain.AppKey, ext domain.ExternalUserID) domain.ExternalUserIndex {
	return domain.ExternalUserIndex(fmt.Sprintf("ix:%s:%s", app, ext))
}

// Sealed ids are found by their blind index, in the live and the bulk path alike (the
// same bytes in every bucket); an erasure takes the applicant out of the index for good.
func TestSealedExternalUserIndex(t *testing.T) {
	events := sealLog(genLog(11, 60, 1500))
	exp := foldLog(events)
	dir := t.TempDir()
	p := mustOpen(t, filepath.Join(dir, "live.db"), Options{})
	applyBatches(t, p, events, 3, 40)
	built := filepath.Join(dir, "built.db")
	buildFile(t, built, events, 300, 20, 77)
	sameDump(t, dumpFile(t, built), dump(t, p))

	found := 0
	for id, st := range exp.states {
		if st.ExternalUserIndex == "" {
			continue
		}
		if st.ExternalUserID != "" {
			t.Fatalf("%s holds its id in clear and sealed", id)
		}
		for _, app := range []domain.AppKey{"", st.AppKey} {
			got, err := p.ByExternalUserIndex(func(domain.AppKey) domain.ExternalUserIndex { return st.ExternalUserIndex }, app, 0)
			if err != nil {
				t.Fatal(err)
			}
			hit := false
			for _, g := range got {
				hit = hit || g.ApplicantID == id
			}
			if !hit {
				t.Fatalf("%s not found by its index (app %q): %v", id, app, got)
			}
		}
		if byClear, _ := p.ByExternalUserID(domain.ExternalUserID(st.ExternalUserIndex), "", 0); len(byClear) != 0 {
			t.Fatalf("the clear index holds the blind one")
		}
		found++
	}
	if found == 0 {
		t.Fatal("no applicant with a sealed id")
	}

	// Erase one: it leaves the blind index, its state keeps status and digest.
	var victim domain.State
	for _, st := range exp.states {
		if st.ExternalUserIndex != "" {
			victim = st
			break
		}
	}
	erase := domain.Event{V: domain.StoredVersion, Provider: "allpass", Origin: domain.OriginOperator,
		AppKey: victim.AppKey, ApplicantID: victim.ApplicantID, Type: domain.EventErased,
		EventAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), EventAtSource: domain.SourceReceived,
		Seq: events[len(events)-1].Seq + 1}
	erase.Stored, _ = json.Marshal(erase)
	if _, err := p.Apply([]domain.Event{erase}, domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	got, _ := p.ByExternalUserIndex(func(domain.AppKey) domain.ExternalUserIndex { return victim.ExternalUserIndex }, "", 0)
	for _, g := range got {
		if g.ApplicantID == victim.ApplicantID {
			t.Fatal("erased applicant still found by its index")
		}
	}
	st, _, _ := p.State(victim.ApplicantID)
	if !st.Erased || st.SealedExternalUserID != "" || st.Status != victim.Status || st.Events != victim.Events+1 {
		t.Fatalf("erased state: %+v", st)
	}
	built2 := filepath.Join(dir, "built2.db")
	buildFile(t, built2, append(events, erase), 0, 0, 500)
	sameDump(t, dumpFile(t, built2), dump(t, p))
}

// States pages through every applicant in id order.
func TestStatesPages(t *testing.T) {
	events := genLog(5, 37, 400)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events, 1, 50)
	var all []domain.ApplicantID
	cursor := domain.ApplicantKey("")
	for {
		page, next, err := p.States(cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			all = append(all, s.ApplicantID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != len(foldLog(events).states) {
		t.Fatalf("%d applicants paged, want %d", len(all), len(foldLog(events).states))
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("not in id order at %d", i)
		}
	}
}
