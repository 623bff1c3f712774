package projection

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// scrubLog is a log of version 3 applicants (their externalUserId sealed, the blind
// index computed by the projection's Indexer: memIndexer), each folded in several
// batches (so each state was written, and freed, more than once), and then the erasure
// of the last one.
func scrubLog(applicants int) (events []domain.Event, victimIndex string) {
	app := domain.AppKey("0a000000-0000-4000-8000-000000000001")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	types := []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventCompleted, domain.EventApproved}
	var seq uint64
	for k, typ := range types {
		for i := range applicants {
			seq++
			events = append(events, domain.Event{Seq: seq, V: domain.StoredVersion, Provider: "allpass", AppKey: app,
				ApplicantID:          domain.ApplicantID(fmt.Sprintf("0b000000-0000-4000-8000-%012d", i)),
				SealedExternalUserID: domain.SealedExternalUserID(fmt.Sprintf("sealed(user-%d,%d)", i, k)),
				Type:                 typ, EventAt: base.Add(time.Duration(k*applicants+i) * time.Second),
				EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: base})
		}
	}
	victim := events[len(events)-1]
	seq++
	events = append(events, domain.Event{Seq: seq, V: domain.StoredVersion, Provider: "allpass", Origin: domain.OriginOperator,
		AppKey: app, ApplicantID: victim.ApplicantID, Type: domain.EventErased, EventAt: base.Add(24 * time.Hour),
		EventAtSource: domain.SourceReceived, ReceivedAt: base})
	return events, string(testIndex(app, domain.ExternalUserID(fmt.Sprintf("user-%d", applicants-1))))
}

// After an erasure the file's live pages hold no blind index of the applicant, but
// pages bbolt freed do (the test shows it, so it can fail); after Scrub no page of the
// file holds it, the projection serves as before, and the file grew by little.
func TestScrubLeavesNoFreedIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	p := mustOpen(t, path, Options{Indexer: newMemIndexer()})
	events, index := scrubLog(400)
	applyBatches(t, p, events[:len(events)-1], 3, 40)
	if !bytes.Contains(readFile(t, path), []byte(index)) {
		t.Fatal("the blind index is not in the file before the erasure: the test shows nothing")
	}
	applyBatches(t, p, events[len(events)-1:], 3, 1)
	st, _, err := p.State(events[len(events)-1].ApplicantID)
	if err != nil || !st.Erased || st.ExternalUserIndex != "" {
		t.Fatalf("erased state: %+v, %v", st, err)
	}
	if !bytes.Contains(readFile(t, path), []byte(index)) {
		t.Fatal("no freed page holds the erased index without a scrub: the test shows nothing")
	}
	want := dump(t, p)

	res, err := p.Scrub(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scrub: %+v", res)
	if res.FreePages == 0 || res.JunkPages < res.FreePages {
		t.Fatalf("scrub stats: %+v", res)
	}
	if bytes.Contains(readFile(t, path), []byte(index)) {
		t.Fatalf("after Scrub the file still holds the erased index (%+v)", res)
	}
	if res.FileGrowth > int64(res.FreePages/8+16)*int64(os.Getpagesize()) {
		t.Fatalf("scrub grew the file by %d bytes for %d free pages", res.FileGrowth, res.FreePages)
	}
	sameDump(t, want, dump(t, p))
	p.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketScrub) != nil {
			t.Error("the scrub's junk bucket is left behind")
		}
		return nil
	})
	// Served and written as before.
	applyBatches(t, p, []domain.Event{{Seq: events[len(events)-1].Seq + 1, V: domain.StoredVersion, Provider: "allpass",
		AppKey: events[0].AppKey, ApplicantID: events[0].ApplicantID, Type: domain.EventRejected,
		EventAt: events[len(events)-1].EventAt, EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: events[0].ReceivedAt}}, 1, 1)
	if st, _, err := p.State(events[0].ApplicantID); err != nil || st.Status != domain.StatusRejected {
		t.Fatalf("state after scrub and apply: %+v, %v", st, err)
	}
}

// A read open since before the erasure holds its freed pages: Scrub waits for it, and
// says so when it outlasts the wait, rather than report pages it could not reach.
func TestScrubWaitsForOpenReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	p := mustOpen(t, path, Options{Indexer: newMemIndexer()})
	events, _ := scrubLog(50)
	applyBatches(t, p, events[:len(events)-1], 5, 20)
	tx, err := p.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	applyBatches(t, p, events[len(events)-1:], 5, 1)
	if _, err := p.Scrub(50 * time.Millisecond); domain.KindOf(err) != domain.KindUnavailable {
		tx.Rollback()
		t.Fatalf("scrub with a read open over the erasure: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Scrub(10 * time.Second)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	tx.Rollback()
	if err := <-done; err != nil {
		t.Fatalf("scrub once the read ended: %v", err)
	}
}

func TestScrubReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	mustOpen(t, path, Options{}).Close()
	ro := mustOpen(t, path, Options{ReadOnly: true})
	if _, err := ro.Scrub(time.Second); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("scrub of a read-only projection: %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
