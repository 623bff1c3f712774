package projection

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	bolt "go.etcd.io/bbolt"
)

// testdata/schema3 holds a stream and a projection as kycstate wrote them at schema 3,
// before other providers (testdata/schema3/fixture_test.go made them with that build):
// Allpass events sealed at stored version 2, and the projection file's buckets, key by
// key, folded up to three events short of the stream's end.

// schema3Stream reads the fixture's stored events with this build's decoder.
func schema3Stream(t *testing.T) []domain.Event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "schema3", "stream.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []domain.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			t.Fatalf("stream line %q", sc.Text())
		}
		seq, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		data, err := base64.StdEncoding.DecodeString(fields[2])
		if err != nil {
			t.Fatal(err)
		}
		ev, err := eventlog.DecodeEvent(seq, data)
		if err != nil {
			t.Fatalf("seq %d as main stored it does not decode: %v", seq, err)
		}
		if want, _ := eventlog.Subject(ev.AppKey, ev.ApplicantID); fields[1] != want {
			t.Fatalf("seq %d on %s; this build's subject for it is %s", seq, fields[1], want)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// schema3File writes the fixture's projection into a bbolt file, bucket by bucket, as
// main left it.
func schema3File(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "schema3", "projection.txt"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "schema3.db")
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		var bk *bolt.Bucket
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if name, ok := strings.CutPrefix(line, "bucket "); ok {
				if bk, err = tx.CreateBucket([]byte(name)); err != nil {
					return err
				}
				continue
			}
			kh, vh, _ := strings.Cut(line, " ")
			k, err1 := hex.DecodeString(kh)
			v, err2 := hex.DecodeString(vh)
			if err1 != nil || err2 != nil || bk == nil {
				t.Fatalf("projection line %q", line)
			}
			if err := bk.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	return path
}

// foldStates folds events afresh with this build: every applicant's state and history,
// by applicant key.
func foldStates(events []domain.Event) (map[domain.ApplicantKey]domain.State, map[domain.ApplicantKey][]domain.Record) {
	f := domain.NewFolder()
	states := map[domain.ApplicantKey]domain.State{}
	hist := map[domain.ApplicantKey][]domain.Record{}
	for _, e := range events {
		k := e.Key()
		s, rec := f.Apply(states[k], e)
		states[k], hist[k] = s, append(hist[k], rec)
	}
	return states, hist
}

// A projection and a stream written before providers (schema 3) are read and folded by
// this build exactly as they were: every state and history record as this build folds
// the stream, as Allpass's. A writable open raises the file to schema 4 without a
// rebuild, and it then folds the rest of the stream and other providers' applicants,
// one sharing an Allpass applicant's id, to what a file folded from scratch holds.
func TestSchema3ProjectionAndStream(t *testing.T) {
	events := schema3Stream(t)
	path := schema3File(t)
	if got := fileSchema(t, path); got != 3 {
		t.Fatalf("fixture schema %d", got)
	}
	folded := events[:len(events)-3]

	// Read-only, as a query node of the new build serving the old file before it writes.
	ro := mustOpen(t, path, Options{ReadOnly: true})
	if ro.Checkpoint() != folded[len(folded)-1].Seq {
		t.Fatalf("checkpoint %d, want %d", ro.Checkpoint(), folded[len(folded)-1].Seq)
	}
	states, hist := foldStates(folded)
	for key, want := range states {
		if want.Provider != domain.ProviderAllpass || key != domain.ApplicantKey(want.ApplicantID) {
			t.Fatalf("the fold of a stream written by main: provider %q, key %q", want.Provider, key)
		}
		got, found, err := ro.State(want.ApplicantID)
		if err != nil || !found || !reflect.DeepEqual(got, want) {
			t.Fatalf("applicant %s: main's projection holds\n%+v (%v, %v)\nthis build folds\n%+v", key, got, found, err, want)
		}
		recs, _, err := ro.History(want.ApplicantID, 0, 0)
		if err != nil || !reflect.DeepEqual(recs, hist[key]) {
			t.Fatalf("applicant %s history: %v\n got %+v\nwant %+v", key, err, recs, hist[key])
		}
		byID, err := ro.ApplicantsByID(want.ApplicantID)
		if err != nil || len(byID) != 1 || !reflect.DeepEqual(byID[0], want) {
			t.Fatalf("ApplicantsByID(%s) = %d states, %v", want.ApplicantID, len(byID), err)
		}
	}
	if res, err := verify(context.Background(), readEvents(events), events[len(events)-1].Seq, ro); err != nil || len(res.Differences) != 0 {
		t.Fatalf("verify of main's projection against main's stream: %+v, %v", res.Differences, err)
	}
	ro.Close()
	if got := fileSchema(t, path); got != 3 {
		t.Fatalf("a read-only open raised the schema to %d", got)
	}

	// Writable: raised to schema 4, then the rest of the stream and other providers.
	const shared = "0d4c1c8e-6f7e-4e43-9a42-3f2a1f9f0c11" // an Allpass applicant's id in the fixture
	if _, ok := states[shared]; !ok {
		t.Fatal("fixture lost its shared applicant")
	}
	last := events[len(events)-1]
	extIdx := folded[0].ExternalUserIndex // Allpass applicant 0's blind index (user-1)
	if extIdx == "" {
		t.Fatal("fixture event has no blind index")
	}
	more := slices.Clone(events[len(events)-3:])
	for i, p := range []struct {
		provider domain.Provider
		app, id  string
		typ      domain.EventType
		status   string
	}{
		{domain.ProviderVeriff, "ve", shared, "submitted", "submitted"},
		{domain.ProviderSumsub, "ss", "5cb56e8e0a975a35f333cb83", "applicantCreated", "init"},
		{domain.ProviderVeriff, "ve", shared, "decision", "approved"},
	} {
		at := last.EventAt.Add(time.Duration(i+1) * time.Minute)
		ev := domain.Event{V: domain.StoredVersion, Provider: string(p.provider), Origin: domain.OriginWebhook,
			AppKey: domain.AppKey(p.app), ApplicantID: domain.ApplicantID(p.id), Type: p.typ, ProviderStatus: p.status,
			EventAt: at, EventAtSource: "payload.time", ReceivedAt: at, Seq: last.Seq + uint64(i) + 1,
			ContentID: domain.NewContentID(string(p.provider), p.app, []byte(strconv.Itoa(i)))}
		if p.provider == domain.ProviderVeriff {
			ev.ExternalUserIndex, ev.SealedExternalUserID = "ve-index-of-user-1", "sealed"
		}
		ev.Stored, _ = eventlog.EncodeEvent(&ev)
		more = append(more, ev)
	}
	all := append(slices.Clone(events), more[3:]...)

	rw := mustOpen(t, path, Options{})
	var stamped uint64
	rw.db.View(func(tx *bolt.Tx) error {
		stamped, _ = keySeq(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	if stamped != SchemaVersion {
		t.Fatalf("schema %d after a writable open, want %d", stamped, SchemaVersion)
	}
	f := domain.NewFolder()
	for _, ev := range more {
		if _, err := rw.Apply([]domain.Event{ev}, f); err != nil {
			t.Fatal(err)
		}
	}
	fresh := mustOpen(t, filepath.Join(t.TempDir(), "fresh.db"), Options{})
	if _, err := fresh.Apply(all, domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	states, _ = foldStates(all)
	for key, want := range states {
		for name, p := range map[string]*Projection{"upgraded": rw, "fresh": fresh} {
			got, found, err := p.StateOf(key)
			if err != nil || !found || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: applicant %s\n got %+v (%v, %v)\nwant %+v", name, key, got, found, err, want)
			}
		}
	}
	if res, err := verify(context.Background(), readEvents(all), all[len(all)-1].Seq, rw); err != nil || len(res.Differences) != 0 || res.Applicants != len(states) {
		t.Fatalf("verify of the upgraded file: %d applicants, %+v, %v", res.Applicants, res.Differences, err)
	}

	// One id, two providers: two applicants, found together by id and apart by provider.
	byID, err := rw.ApplicantsByID(shared)
	if err != nil || len(byID) != 2 || byID[0].Provider != domain.ProviderAllpass || byID[1].Provider != domain.ProviderVeriff ||
		byID[1].Status != domain.StatusApproved || byID[1].ProviderStatus != "approved" {
		t.Fatalf("ApplicantsByID(shared) = %+v, %v", byID, err)
	}
	if st, found, err := rw.Applicant(domain.ProviderVeriff, "", shared); err != nil || !found || st.Key() != "veriff.ve."+shared {
		t.Fatalf("Applicant(veriff, \"\", shared) = %q, %v, %v", st.Key(), found, err)
	}
	if st, found, err := rw.Applicant(domain.ProviderAllpass, "", shared); err != nil || !found || st.Provider != domain.ProviderAllpass {
		t.Fatalf("Applicant(allpass, shared) = %+v, %v, %v", st, found, err)
	}
	if _, found, err := rw.Applicant(domain.ProviderSumsub, "", shared); err != nil || found {
		t.Fatalf("Applicant(sumsub, shared) found %v, %v", found, err)
	}
	// The blind index finds one person across providers: the apps bucket lists both apps.
	index := func(a domain.AppKey) domain.ExternalUserIndex {
		if a == "ve" {
			return "ve-index-of-user-1"
		}
		return extIdx
	}
	found, err := rw.ByExternalUserIndex(index, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var provs []domain.Provider
	for _, st := range found {
		provs = append(provs, st.Provider)
	}
	if len(found) != 3 || !slices.Contains(provs, domain.ProviderVeriff) {
		t.Fatalf("ByExternalUserIndex across providers found %v", provs)
	}
	// A status page may end on another provider's applicant: its cursor is its key.
	page, next, err := rw.ByStatus(domain.StatusApproved, "", 1)
	if err != nil || len(page) != 1 {
		t.Fatalf("ByStatus page: %d, %v", len(page), err)
	}
	for next != "" {
		page, next, err = rw.ByStatus(domain.StatusApproved, next, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, perr := domain.ParseApplicantKey(string(page[0].Key())); perr != nil {
			t.Fatalf("cursor %q does not parse back: %v", page[0].Key(), perr)
		}
	}
}
