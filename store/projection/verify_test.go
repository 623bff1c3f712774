package projection

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

func TestVerifyAgrees(t *testing.T) {
	events := genLog(60, 1500, 6000)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events, 60, 300)
	res, err := verify(context.Background(), readEvents(events), 6000, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differences) != 0 {
		t.Fatalf("differences on a faithful projection: %v", res.Differences)
	}
	if res.Events != 6000 || res.Applicants != len(foldLog(events).states) || res.Checkpoint != 6000 || res.LogLast != 6000 {
		t.Fatalf("result %+v", res)
	}
}

// A projection behind the log (the projector has not caught up) is compared up to its
// checkpoint: not a difference.
func TestVerifyBehindLog(t *testing.T) {
	events := genLog(61, 100, 2000)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events[:1500], 61, 300)
	res, err := verify(context.Background(), readEvents(events), 2000, p)
	if err != nil || len(res.Differences) != 0 || res.Events != 1500 {
		t.Fatalf("verify behind the log: %+v, %v", res, err)
	}
}

// A projection that advances while Verify reads the log is compared as of the
// checkpoint Verify started from.
func TestVerifyWhileApplying(t *testing.T) {
	events := genLog(62, 100, 3000)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events[:2000], 62, 300)
	applied := false
	read := func(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
		if !applied {
			applied = true
			if _, err := p.Apply(events[2000:], domain.NewFolder()); err != nil {
				return err
			}
		}
		return readEvents(events)(ctx, from, batch, fn)
	}
	res, err := verify(context.Background(), read, 2000, p)
	if err != nil || len(res.Differences) != 0 || res.Checkpoint != 2000 || res.Events != 2000 {
		t.Fatalf("verify while applying: %+v, %v", res, err)
	}
}

func TestVerifyFindsDifferences(t *testing.T) {
	events := genLog(63, 200, 3000)
	exp := foldLog(events)
	path := filepath.Join(t.TempDir(), "p.db")
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, events, 63, 300)
	p.Close()

	// Pick three applicants with at least two events.
	var ids []domain.ApplicantID
	for id, st := range exp.states {
		if st.Events >= 2 {
			ids = append(ids, id)
		}
		if len(ids) == 3 {
			break
		}
	}
	changed, dropped, shortened := ids[0], ids[1], ids[2]
	extra := domain.ApplicantID("ffffffff-ffff-4fff-bfff-ffffffffffff")
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStates)
		st, err := decodeState(b.Get([]byte(changed)))
		if err != nil {
			return err
		}
		st.Digest[0] ^= 1
		if err := b.Put([]byte(changed), appendState(nil, &st)); err != nil {
			return err
		}
		copied := st
		copied.ApplicantID = extra
		if err := b.Put([]byte(extra), appendState(nil, &copied)); err != nil {
			return err
		}
		// Same digest, one event fewer: only the count can tell.
		st, err = decodeState(b.Get([]byte(shortened)))
		if err != nil {
			return err
		}
		st.Seqs = st.Seqs[:len(st.Seqs)-1]
		st.Events--
		st.LastSeq = st.Seqs[len(st.Seqs)-1]
		if err := b.Put([]byte(shortened), appendState(nil, &st)); err != nil {
			return err
		}
		return b.Delete([]byte(dropped))
	})
	p = mustOpen(t, path, Options{ReadOnly: true})
	res, err := verify(context.Background(), readEvents(events), 3000, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[domain.ApplicantID]domain.DifferenceKind{changed: domain.DiffDigest, dropped: domain.DiffMissing, shortened: domain.DiffCount, extra: domain.DiffExtra}
	if len(res.Differences) != len(want) {
		t.Fatalf("differences %v, want %v", res.Differences, want)
	}
	for _, d := range res.Differences {
		if want[d.ApplicantID] != d.Kind {
			t.Fatalf("difference %v, want kind %s for %s", d, want[d.ApplicantID], d.ApplicantID)
		}
		if !strings.Contains(d.String(), string(d.ApplicantID)) || !strings.Contains(d.String(), string(d.Kind)) {
			t.Fatalf("String() = %q", d.String())
		}
	}
}

// A projection that claims sequences the log does not have (a log recreated, a file
// from another cluster) is a difference, and so is every applicant it folded beyond.
func TestVerifyProjectionAheadOfLog(t *testing.T) {
	events := genLog(64, 50, 1000)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events, 64, 200)
	res, err := verify(context.Background(), readEvents(events[:900]), 900, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Differences) < 2 || res.Differences[0].Kind != domain.DiffCheckpoint {
		t.Fatalf("differences %v; want the checkpoint first, then applicants", res.Differences)
	}
}

func TestVerifyLogError(t *testing.T) {
	events := genLog(65, 5, 100)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events, 65, 50)
	down := errors.New("log down")
	read := func(context.Context, uint64, int, func([]domain.Event) error) error { return down }
	if _, err := verify(context.Background(), read, 100, p); !errors.Is(err, down) || !isKind(err, domain.KindUnavailable) {
		t.Fatalf("verify with a failing log: %v", err)
	}
}
