package eventlog

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/projection"
)

// A rebuild asks for the blind index of every applicant with a sealed externalUserId
// (version 3 events store none). With the ring's snapshot it fetches no data key one by
// one: KYC_KEYS is read once, in order; an applicant whose key came after the snapshot
// is fetched once. The rebuilt projection finds every applicant by its index but the
// erased one, whose key is gone.
func TestRebuildFetchesAKeyPerApplicantAtMostOnce(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	ctx := context.Background()
	l := keyedLog(t, c, testMasterA)
	const applicants = 40
	for n := range 3 * applicants {
		logAppend(t, l, logNth(n, applicants)) // interleaved: applicants take turns
	}
	erased := logApplicant(7)
	if _, err := l.Keys().BeginErasure(ctx, logApp(0), erased, "test", "t"); err != nil {
		t.Fatal(err)
	}
	if err := l.Keys().DestroyKey(ctx, logApp(0), erased); err != nil {
		t.Fatal(err)
	}

	fresh := keyedLog(t, c, testMasterA) // another process: nothing cached
	snap, err := fresh.Keys().Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Len() != applicants {
		t.Fatalf("snapshot holds %d applicants, want %d", snap.Len(), applicants)
	}
	late := logApplicant(applicants) // its key is made after the snapshot
	logAppend(t, l, logEvent(logApp(0), late, domain.EventCreated, 999))

	before := fresh.Keys().fetches.Load()
	path := filepath.Join(t.TempDir(), "projection.db")
	if err := projection.Rebuild(ctx, fresh, path, projection.RebuildOptions{Indexer: snap}); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Keys().fetches.Load() - before; got != 1 {
		t.Fatalf("the rebuild fetched %d data keys one by one, want 1 (the applicant made after the snapshot)", got)
	}

	p, err := projection.Open(path, projection.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for n := 0; n <= applicants; n++ {
		id := logApplicant(n)
		idx := l.Keys().Index(logApp(0), domain.ExternalUserID("user-"+string(id[:8])))
		got, err := p.ByExternalUserIndex(func(domain.AppKey) domain.ExternalUserIndex { return idx }, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		found := len(got) == 1 && got[0].ApplicantID == id
		if found != (id != erased) {
			t.Fatalf("applicant %d (erased %v) found by its index: %v", n, id == erased, found)
		}
	}
}
