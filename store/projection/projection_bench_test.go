package projection

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
//	go test ./store/projection -run '^$' -bench BenchmarkBuilder -benchtime 3x
func BenchmarkBuilder(b *testing.B) {
	for _, n := range []int{20_000, 200_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			events := genLog(80, n/10, n)
			exp := foldLog(events)
			dir := b.TempDir()
			// Each baseline runs right after each build, so that a machine busier or
			// quieter at one moment weighs on both alike.
			var puts, fold time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				path := filepath.Join(dir, fmt.Sprintf("built-%d.db", i))
				buildFile(b, path, events, 0, 0, 1000)
				b.StopTimer()
				os.Remove(path)
				puts += rawPuts(b, filepath.Join(dir, fmt.Sprintf("raw-%d.db", i)), exp)
				start := time.Now()
				foldLog(events)
				fold += time.Since(start)
				b.StartTimer()
			}
			rate := float64(n*b.N) / b.Elapsed().Seconds()
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
// measured in the same run, batch for batch in turn with Apply: a bare bbolt Update
// putting the same number of pre-encoded records, with its fsync. x-raw-update is
// Apply's rate over the baseline's.
//
//	go test ./store/projection -run '^$' -bench BenchmarkApplyBatch
func BenchmarkApplyBatch(b *testing.B) {
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			const applicants, warm = 5_000, 20_000
			g := newGen(81, applicants, warm+batch*max(b.N, 1))
			dir := b.TempDir()
			p := mustOpen(b, filepath.Join(dir, "live.db"), Options{})
			f := domain.NewFolder()
			if _, err := p.Apply(g.next(warm), f); err != nil {
				b.Fatal(err)
			}
			raw := openRaw(b, filepath.Join(dir, "raw.db"), warm)
			batches := make([][]domain.Event, b.N)
			encoded := make([][][]byte, b.N)
			for i := range batches {
				batches[i] = g.next(batch)
				for _, e := range batches[i] {
					_, rec := f.Apply(domain.State{}, e)
					encoded[i] = append(encoded[i], appendRecord(nil, &rec))
				}
			}
			var rawTook time.Duration
			b.ResetTimer()
			for i := range b.N {
				if _, err := p.Apply(batches[i], f); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				start := time.Now()
				rawBatch(b, raw, batches[i], encoded[i])
				rawTook += time.Since(start)
				b.StartTimer()
			}
			rate := float64(batch*b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(float64(batch*b.N)/rawTook.Seconds(), "raw-update-events/s")
			b.ReportMetric(rate/(float64(batch*b.N)/rawTook.Seconds()), "x-raw-update")
		})
	}
}

// openRaw opens a bare bbolt file whose history bucket holds warm records.
func openRaw(tb testing.TB, path string, warm int) *bolt.DB {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{InitialMmapSize: initialMmapSize, FreelistType: bolt.FreelistMapType})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	filler := make([]byte, 250)
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
	return db
}

// rawBatch puts a batch's pre-encoded records in one bbolt Update (and fsync).
func rawBatch(tb testing.TB, db *bolt.DB, events []domain.Event, encoded [][]byte) {
	tb.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHistory)
		h.FillPercent = 1.0
		for j, v := range encoded {
			if err := h.Put(seqKey(events[j].Seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
