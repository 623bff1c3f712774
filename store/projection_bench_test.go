package store

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkBuilder measures the bulk load (fold, encode, write history/changes/
// anomalies append-only and states/indexes in key order, one fsync) over n events of
// n/10 applicants, in events/s, beside two baselines measured in the same run over the
// same events:
//
//   - raw-puts: bbolt alone writing the bytes the build writes to history and states
//     (pre-encoded, sequential keys, same chunking, no fsync until the end): the floor
//     the storage engine sets;
//   - fold: the domain fold alone, in memory.
//
// x-raw-puts and x-fold are the builder's rate over each baseline's (1.0 = no overhead).
//
//	go test ./store -run '^$' -bench BenchmarkBuilder -benchtime 3x
func BenchmarkBuilder(b *testing.B) {
	for _, n := range []int{20_000, 200_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			events := genLog(80, n/10, n)
			dir := b.TempDir()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				path := filepath.Join(dir, fmt.Sprintf("built-%d.db", i))
				buildFile(b, path, events, 0, 0, 1000)
				b.StopTimer()
				os.Remove(path)
				b.StartTimer()
			}
			rate := float64(n*b.N) / b.Elapsed().Seconds()
			b.StopTimer()

			exp := foldLog(events)
			var puts time.Duration
			for i := range b.N {
				puts += rawPuts(b, filepath.Join(dir, fmt.Sprintf("raw-%d.db", i)), exp)
			}
			start := time.Now()
			for range b.N {
				foldLog(events)
			}
			fold := time.Since(start)

			b.ReportMetric(rate, "events/s")
			b.ReportMetric(float64(n*b.N)/puts.Seconds(), "raw-puts-events/s")
			b.ReportMetric(rate/(float64(n*b.N)/puts.Seconds()), "x-raw-puts")
			b.ReportMetric(rate/(float64(n*b.N)/fold.Seconds()), "x-fold")
		})
	}
}

// rawPuts writes the encoded history records and final states of exp with bbolt alone,
// as the Builder chunks them, and returns the time taken (encoding excluded).
func rawPuts(tb testing.TB, path string, exp folded) time.Duration {
	tb.Helper()
	type kv struct{ k, v []byte }
	hist := make([]kv, len(exp.records))
	for i := range exp.records {
		hist[i] = kv{seqKey(exp.records[i].Seq), appendRecord(nil, &exp.records[i])}
	}
	ids := make([]domain.ApplicantID, 0, len(exp.states))
	for id := range exp.states {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	states := make([]kv, len(ids))
	for i, id := range ids {
		rec := stateRec{State: exp.states[id]}
		for _, r := range exp.history[id] {
			rec.Seqs = append(rec.Seqs, r.Seq)
		}
		states[i] = kv{[]byte(id), appendState(nil, &rec)}
	}

	start := time.Now()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, InitialMmapSize: initialMmapSize, FreelistType: bolt.FreelistMapType})
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(hist); i += defaultChunkEvents {
		err := db.Update(func(tx *bolt.Tx) error {
			h, err := tx.CreateBucketIfNotExists(bucketHistory)
			if err != nil {
				return err
			}
			h.FillPercent = 1.0
			for _, e := range hist[i:min(len(hist), i+defaultChunkEvents)] {
				if err := h.Put(e.k, e.v); err != nil {
					return err
				}
			}
			if i+defaultChunkEvents < len(hist) {
				return nil
			}
			s, err := tx.CreateBucketIfNotExists(bucketStates)
			if err != nil {
				return err
			}
			for _, e := range states {
				if err := s.Put(e.k, e.v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := db.Sync(); err != nil {
		tb.Fatal(err)
	}
	db.Close()
	took := time.Since(start)
	os.Remove(path)
	return took
}

// BenchmarkApplyBatch measures the live path: one Apply (one bbolt transaction with its
// fsync) per batch, on a file that already holds 20,000 events, beside a baseline
// measured in the same run: a bare bbolt Update putting the same number of pre-encoded
// records per transaction, with its fsync. x-raw-update is Apply's rate over the
// baseline's.
//
//	go test ./store -run '^$' -bench BenchmarkApplyBatch
func BenchmarkApplyBatch(b *testing.B) {
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			const applicants, warm = 5_000, 20_000
			g := newGen(81, applicants, warm+batch*max(b.N, 1))
			dir := b.TempDir()
			p := mustOpen(b, filepath.Join(dir, "live.db"), ProjectionOptions{})
			f := domain.NewFolder()
			if _, err := p.Apply(g.next(warm), f); err != nil {
				b.Fatal(err)
			}
			batches := make([][]domain.Event, b.N)
			for i := range batches {
				batches[i] = g.next(batch)
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := p.Apply(batches[i], f); err != nil {
					b.Fatal(err)
				}
			}
			rate := float64(batch*b.N) / b.Elapsed().Seconds()
			b.StopTimer()

			raw := rawUpdates(b, filepath.Join(dir, "raw.db"), batches, warm)
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(float64(batch*b.N)/raw.Seconds(), "raw-update-events/s")
			b.ReportMetric(rate/(float64(batch*b.N)/raw.Seconds()), "x-raw-update")
		})
	}
}

// rawUpdates puts the batches' records, pre-encoded, one bbolt Update (and fsync) per
// batch, into a file pre-filled with warm records, and returns the time the batches took.
func rawUpdates(tb testing.TB, path string, batches [][]domain.Event, warm int) time.Duration {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{InitialMmapSize: initialMmapSize, FreelistType: bolt.FreelistMapType})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	f := domain.NewFolder()
	encoded := make([][][]byte, len(batches))
	for i, evs := range batches {
		for _, e := range evs {
			_, rec := f.Apply(domain.State{}, e)
			encoded[i] = append(encoded[i], appendRecord(nil, &rec))
		}
	}
	filler := encoded[0][0]
	if err := db.Update(func(tx *bolt.Tx) error {
		h, err := tx.CreateBucket(bucketHistory)
		if err != nil {
			return err
		}
		h.FillPercent = 1.0
		for s := range warm {
			if err := h.Put(seqKey(uint64(s+1)), filler); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	for i, recs := range encoded {
		err := db.Update(func(tx *bolt.Tx) error {
			h := tx.Bucket(bucketHistory)
			h.FillPercent = 1.0
			for j, v := range recs {
				if err := h.Put(seqKey(batches[i][j].Seq), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return time.Since(start)
}
