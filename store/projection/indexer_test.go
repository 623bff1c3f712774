package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// sealLogV3 turns events into what a version 3 log holds: the id sealed (a stand-in
// that names it), and no blind index: the projection asks its Indexer.
func sealLogV3(events []domain.Event) []domain.Event {
	out := make([]domain.Event, len(events))
	for i, e := range events {
		e.V = domain.StoredVersion
		if e.ExternalUserID != "" {
			e.SealedExternalUserID = domain.SealedExternalUserID(fmt.Sprintf("sealed(%s,%d)", e.ExternalUserID, e.Seq))
			e.ExternalUserID = ""
		}
		e.Stored, _ = json.Marshal(e)
		out[i] = e
	}
	return out
}

// memIndexer opens sealLogV3's stand-ins, counting the questions per applicant. Erased
// applicants have no key (KindNotFound); while down, it answers KindUnavailable.
type memIndexer struct {
	mu     sync.Mutex
	calls  map[domain.ApplicantID]int
	erased map[domain.ApplicantID]bool
	down   bool
}

func newMemIndexer() *memIndexer {
	return &memIndexer{calls: map[domain.ApplicantID]int{}, erased: map[domain.ApplicantID]bool{}}
}

func (m *memIndexer) SealedIndex(_ context.Context, _ domain.Provider, app domain.AppKey, id domain.ApplicantID, s domain.SealedExternalUserID) (domain.ExternalUserIndex, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[id]++
	switch {
	case m.down:
		return "", domain.E("test", domain.KindUnavailable, "key store down")
	case m.erased[id]:
		return "", domain.E("test", domain.KindNotFound, "erased")
	}
	inner, ok := strings.CutPrefix(string(s), "sealed(")
	if !ok {
		return "", domain.E("test", domain.KindInternal, "does not open")
	}
	ext := inner[:strings.LastIndex(inner, ",")]
	return testIndex(app, domain.ExternalUserID(ext)), nil
}

func (m *memIndexer) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.calls {
		n += c
	}
	return n
}

// latestExt is the externalUserId an applicant's state holds after the fold (the
// latest one a known event carried), from the unsealed log.
func latestExt(events []domain.Event) map[domain.ApplicantID]domain.ExternalUserID {
	out := map[domain.ApplicantID]domain.ExternalUserID{}
	for id, st := range foldLog(events).states {
		if st.ExternalUserID != "" {
			out[id] = st.ExternalUserID
		}
	}
	return out
}

// Version 3 events carry the externalUserId sealed and no blind index: the projection
// asks the Indexer, keeps the index in the state and the lookup bucket, and none in
// history. The live path and the bulk path write the same bytes; an applicant whose key
// is gone gets no index; a key store that does not answer fails the batch, which
// applies nothing, and the retry applies it.
func TestSealedIndexFromIndexer(t *testing.T) {
	clear := genLog(12, 80, 2000)
	events := sealLogV3(clear)
	want := latestExt(clear)
	var gone domain.ApplicantID
	for id := range want {
		gone = id
		break
	}
	dir := t.TempDir()
	ix := newMemIndexer()
	ix.erased[gone] = true
	p := mustOpen(t, filepath.Join(dir, "live.db"), Options{Indexer: ix})
	applyBatches(t, p, events, 3, 40)
	live := dump(t, p)

	for _, c := range []struct {
		name                                   string
		chunkEvents, chunkApplicants, addBatch int
		parkBudget                             int
	}{
		{"default chunks", 0, 0, 1000, 0},
		{"small chunks, states spilled", 97, 11, 33, 20 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			bix := newMemIndexer()
			bix.erased[gone] = true
			path := filepath.Join(t.TempDir(), "built.db")
			buildFileIndexed(t, path, events, bix, c.chunkEvents, c.chunkApplicants, c.addBatch, c.parkBudget)
			sameDump(t, live, dumpFile(t, path))
			if c.chunkEvents == 0 {
				// One chunk: each applicant with a sealed id is asked about once.
				for id, n := range bix.calls {
					if n != 1 {
						t.Fatalf("%s asked %d times in one chunk", id, n)
					}
				}
			}
		})
	}

	for id, ext := range want {
		st, _, err := p.State(id)
		if err != nil {
			t.Fatal(err)
		}
		idx := testIndex(st.AppKey, ext)
		got, err := p.ByExternalUserIndex(func(domain.AppKey) domain.ExternalUserIndex { return idx }, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		hit := false
		for _, g := range got {
			hit = hit || g.ApplicantID == id
		}
		switch {
		case id == gone && (hit || st.ExternalUserIndex != ""):
			t.Fatalf("%s has no key, yet has an index: %+v", id, st)
		case id != gone && (!hit || st.ExternalUserIndex != idx):
			t.Fatalf("%s not found by its index %s: state %+v", id, idx, st)
		}
		recs, _, err := p.History(id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.ExternalUserIndex != "" {
				t.Fatalf("history record %d of a version 3 event holds an index", r.Seq)
			}
		}
	}
	// Asked only when a state's sealed id changed in a batch: never more than once per
	// applicant and batch, and not for applicants whose events brought no id.
	if n := ix.total(); n == 0 || n > len(events) {
		t.Fatalf("%d questions for %d events", n, len(events))
	}

	// The key store down: the batch fails whole, nothing applied; then it applies.
	more := sealLogV3(genLog(13, 5, 30))
	for i := range more {
		more[i].Seq = events[len(events)-1].Seq + uint64(i) + 1
		more[i].Stored, _ = json.Marshal(more[i])
	}
	ix.down = true
	cp := p.Checkpoint()
	if _, err := p.Apply(more, domain.NewFolder()); domain.KindOf(err) != domain.KindUnavailable || p.Checkpoint() != cp {
		t.Fatalf("Apply with the key store down: %v, checkpoint %d -> %d", err, cp, p.Checkpoint())
	}
	ix.down = false
	if _, err := p.Apply(more, domain.NewFolder()); err != nil || p.Checkpoint() != more[len(more)-1].Seq {
		t.Fatalf("Apply after the key store came back: %v", err)
	}
}
