package projection

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

func mustOpen(tb testing.TB, path string, opts Options) *Projection {
	tb.Helper()
	p, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// applyBatches applies events in batches of random sizes from 1 to maxBatch.
func applyBatches(tb testing.TB, p *Projection, events []domain.Event, seed uint64, maxBatch int) []domain.Record {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	f := domain.NewFolder()
	var all []domain.Record
	for len(events) > 0 {
		n := min(len(events), 1+rng.IntN(maxBatch))
		recs, err := p.Apply(events[:n], f)
		if err != nil {
			tb.Fatalf("Apply(seq %d..%d): %v", events[0].Seq, events[n-1].Seq, err)
		}
		all = append(all, recs...)
		events = events[n:]
	}
	return all
}

type kv struct{ k, v []byte }

// dump copies every bucket's keys and values.
func dump(tb testing.TB, p *Projection) map[string][]kv {
	tb.Helper()
	out := map[string][]kv{}
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			list := []kv{}
			err := b.ForEach(func(k, v []byte) error {
				list = append(list, kv{bytes.Clone(k), bytes.Clone(v)})
				return nil
			})
			out[string(name)] = list
			return err
		})
	})
	if err != nil {
		tb.Fatalf("dump: %v", err)
	}
	return out
}

func dumpFile(tb testing.TB, path string) map[string][]kv {
	tb.Helper()
	p, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	defer p.Close()
	return dump(tb, p)
}

// sameDump reports the first difference between two dumps.
func sameDump(tb testing.TB, want, got map[string][]kv) {
	tb.Helper()
	for name := range want {
		w, g := want[name], got[name]
		for i := range min(len(w), len(g)) {
			if !bytes.Equal(w[i].k, g[i].k) || !bytes.Equal(w[i].v, g[i].v) {
				tb.Fatalf("bucket %s entry %d: want %x=%x, got %x=%x", name, i, w[i].k, w[i].v, g[i].k, g[i].v)
			}
		}
		if len(w) != len(g) {
			tb.Fatalf("bucket %s: want %d entries, got %d", name, len(w), len(g))
		}
	}
	if len(want) != len(got) {
		tb.Fatalf("want %d buckets, got %d", len(want), len(got))
	}
}

func isKind(err error, k domain.ErrorKind) bool { return err != nil && domain.KindOf(err) == k }

// TestGenLogMix guards the generator: the tests below prove little if the synthetic log
// lacks any outcome or never changes an externalUserId.
func TestGenLogMix(t *testing.T) {
	events := genLog(1, 300, 5000)
	exp := foldLog(events)
	count := map[domain.Outcome]int{}
	for _, r := range exp.records {
		count[r.Outcome]++
	}
	for _, o := range []domain.Outcome{domain.OutcomeDuplicate, domain.OutcomeStale, domain.OutcomeApplied,
		domain.OutcomeIrregular, domain.OutcomeAnnotated, domain.OutcomeUnknown} {
		if count[o] < 20 {
			t.Errorf("outcome %s: %d events, want a real share (mix %v)", o, count[o], count)
		}
	}
	extChanged := 0
	for _, h := range exp.history {
		for i := 1; i < len(h); i++ {
			if h[i].ExternalUserID != "" && h[i-1].ExternalUserID != "" && h[i].ExternalUserID != h[i-1].ExternalUserID {
				extChanged++
			}
		}
	}
	if extChanged < 10 {
		t.Errorf("%d externalUserId changes, want some", extChanged)
	}
}

func TestApplyReadsWhatTheFoldSays(t *testing.T) {
	events := genLog(2, 200, 3000)
	exp := foldLog(events)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	recs := applyBatches(t, p, events, 2, 300)

	if !reflect.DeepEqual(recs, exp.records) {
		t.Fatalf("Apply returned %d records, not the fold's %d", len(recs), len(exp.records))
	}
	if got := p.Checkpoint(); got != events[len(events)-1].Seq {
		t.Fatalf("Checkpoint = %d, want %d", got, events[len(events)-1].Seq)
	}
	for id, want := range exp.states {
		got, ok, err := p.State(id)
		if err != nil || !ok {
			t.Fatalf("State(%s) = %v, %v", id, ok, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("State(%s):\n got %+v\nwant %+v", id, got, want)
		}
		hist, next, err := p.History(id, 0, 0)
		if err != nil || next != 0 {
			t.Fatalf("History(%s) next=%d err=%v", id, next, err)
		}
		if !reflect.DeepEqual(hist, exp.history[id]) {
			t.Fatalf("History(%s): %d records differ from the fold's %d", id, len(hist), len(exp.history[id]))
		}
		// Refolding the stored history gives the state back: point-in-time reads rely on it.
		if re := domain.NewFolder().Refold(hist); !reflect.DeepEqual(re, want) {
			t.Fatalf("Refold(History(%s)) differs from the state", id)
		}
	}
	if _, ok, err := p.State("9b1c1f9e-0000-4000-8000-000000000000"); ok || err != nil {
		t.Fatalf("State(unknown) = %v, %v; want not found, no error", ok, err)
	}

	t.Run("history pages", func(t *testing.T) {
		for id, want := range exp.history {
			var got []domain.Record
			after := uint64(0)
			for pages := 0; ; pages++ {
				page, next, err := p.History(id, after, 3)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if next == 0 {
					break
				}
				if next != page[len(page)-1].Seq || pages > len(want) {
					t.Fatalf("History(%s) next = %d after page ending %d", id, next, page[len(page)-1].Seq)
				}
				after = next
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("History(%s) by pages of 3: %d records, want %d", id, len(got), len(want))
			}
			// after between two seqs starts at the next one.
			mid := want[len(want)/2].Seq
			page, _, _ := p.History(id, mid-1, 1)
			if len(page) != 1 || page[0].Seq != mid {
				t.Fatalf("History(%s, after %d, 1) = %v, want seq %d", id, mid-1, page, mid)
			}
		}
	})

	t.Run("by status", func(t *testing.T) {
		for _, s := range domain.Statuses() {
			var want []domain.ApplicantID
			for id, st := range exp.states {
				if st.Status == s {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			var got []domain.ApplicantID
			cursor := domain.ApplicantKey("")
			for {
				page, next, err := p.ByStatus(s, cursor, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range page {
					if st.Status != s || !reflect.DeepEqual(st, exp.states[st.ApplicantID]) {
						t.Fatalf("ByStatus(%s) returned %s in %s", s, st.ApplicantID, st.Status)
					}
					got = append(got, st.ApplicantID)
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("ByStatus(%s): %d applicants, want %d", s, len(got), len(want))
			}
			all, next, err := p.ByStatus(s, "", 0)
			if err != nil || next != "" || len(all) != len(want) {
				t.Fatalf("ByStatus(%s, limit 0) = %d, %q, %v", s, len(all), next, err)
			}
		}
		if _, _, err := p.ByStatus("NOPE", "", 1); !isKind(err, domain.KindInvalid) {
			t.Fatalf("ByStatus(NOPE) err = %v, want KindInvalid", err)
		}
	})

	t.Run("by externalUserId", func(t *testing.T) {
		byExt := map[domain.ExternalUserID][]domain.ApplicantID{}
		for id, st := range exp.states {
			if st.ExternalUserID != "" {
				byExt[st.ExternalUserID] = append(byExt[st.ExternalUserID], id)
			}
		}
		if len(byExt) < 50 {
			t.Fatalf("only %d externalUserIds", len(byExt))
		}
		for ext, want := range byExt {
			slices.Sort(want)
			got, err := p.ByExternalUserID(ext, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]domain.ApplicantID, len(got))
			for i, st := range got {
				ids[i] = st.ApplicantID
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("ByExternalUserID(%s) = %v, want %v", ext, ids, want)
			}
			app := exp.states[want[0]].AppKey
			inApp, err := p.ByExternalUserID(ext, app, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range inApp {
				if st.AppKey != app {
					t.Fatalf("ByExternalUserID(%s, %s) returned app %s", ext, app, st.AppKey)
				}
			}
			if len(inApp) == 0 {
				t.Fatalf("ByExternalUserID(%s, %s) found nothing", ext, app)
			}
		}
		// "user-1" must not match "user-10": the key separator ends the value.
		for ext := range byExt {
			got, _ := p.ByExternalUserID(ext[:len(ext)-1], "", 0)
			for _, st := range got {
				if st.ExternalUserID != ext[:len(ext)-1] {
					t.Fatalf("ByExternalUserID(%s) returned %s", ext[:len(ext)-1], st.ExternalUserID)
				}
			}
		}
		if got, err := p.ByExternalUserID("nobody", "", 0); err != nil || len(got) != 0 {
			t.Fatalf("ByExternalUserID(nobody) = %v, %v", got, err)
		}
	})

	t.Run("anomalies", func(t *testing.T) {
		var want []domain.Record
		for _, r := range exp.records {
			if r.Outcome == domain.OutcomeIrregular {
				want = append(want, r)
			}
		}
		var got []domain.Record
		after := uint64(0)
		for {
			page, next, err := p.Anomalies(after, 5)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == 0 {
				break
			}
			after = next
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("Anomalies: %d records, want %d", len(got), len(want))
		}
	})

	t.Run("changes", func(t *testing.T) {
		var want []domain.Change
		for _, r := range exp.records {
			if r.StatusChanged() {
				st := exp.states[r.ApplicantID]
				want = append(want, domain.Change{Seq: r.Seq, ApplicantID: r.ApplicantID, AppKey: r.AppKey, Provider: domain.ProviderAllpass,
					From: r.From, To: r.To, At: r.EventAt, ExternalUserID: extAt(exp.history[r.ApplicantID], r.Seq, st)})
			}
		}
		var got []domain.Change
		after := uint64(0)
		for {
			page, err := p.Changes(after, 11)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Changes: %d, want %d", len(got), len(want))
		}
	})

	t.Run("digests", func(t *testing.T) {
		var ids []domain.ApplicantKey
		err := p.Digests(func(id domain.ApplicantKey, d domain.Digest) error {
			if d != exp.states[domain.ApplicantID(id)].Digest {
				return fmt.Errorf("digest of %s differs", id)
			}
			ids = append(ids, id)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(exp.states) || !slices.IsSorted(ids) {
			t.Fatalf("Digests visited %d applicants (sorted %v), want %d", len(ids), slices.IsSorted(ids), len(exp.states))
		}
		stop := errors.New("stop")
		if err := p.Digests(func(domain.ApplicantKey, domain.Digest) error { return stop }); err != stop {
			t.Fatalf("Digests did not return fn's error: %v", err)
		}
	})
}

// extAt is the applicant's externalUserId right after the event at seq: the last one any
// event up to seq carried.
func extAt(hist []domain.Record, seq uint64, _ domain.State) domain.ExternalUserID {
	var ext domain.ExternalUserID
	for _, r := range hist {
		if r.Seq > seq {
			break
		}
		if r.ExternalUserID != "" && r.Outcome != domain.OutcomeDuplicate && r.Outcome != domain.OutcomeStale {
			ext = r.ExternalUserID
		}
	}
	return ext
}

// Digests must see every applicant even when there are more than one read chunk.
func TestDigestsAcrossChunks(t *testing.T) {
	events := genLog(3, 2500, 5000)
	exp := foldLog(events)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events, 3, 500)
	n := 0
	var last domain.ApplicantKey
	if err := p.Digests(func(id domain.ApplicantKey, d domain.Digest) error {
		if id <= last || d != exp.states[domain.ApplicantID(id)].Digest {
			return fmt.Errorf("applicant %s out of order or wrong digest", id)
		}
		last = id
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(exp.states) || n <= 1024 {
		t.Fatalf("Digests visited %d applicants, want %d (> one chunk)", n, len(exp.states))
	}
}

func TestReadsReturnCopies(t *testing.T) {
	events := genLog(4, 20, 400)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	applyBatches(t, p, events, 4, 50)
	before := dump(t, p)

	var id domain.ApplicantID
	var st domain.State
	for _, e := range events {
		s, _, _ := p.State(e.ApplicantID)
		if len(s.Warnings) > 0 && len(s.StepsPassed) > 0 {
			id, st = e.ApplicantID, s
			break
		}
	}
	if id == "" {
		t.Fatal("no applicant with warnings and steps")
	}
	st.StepsPassed[0], st.Warnings[0], st.Seen[0] = "MUTATED", "MUTATED", 0
	hist, _, _ := p.History(id, 0, 0)
	for i := range hist {
		hist[i].Warnings = append(hist[i].Warnings[:0], "MUTATED")
		hist[i].Digest[0] ^= 0xff
	}
	changes, _ := p.Changes(0, 0)
	changes[0].To = "MUTATED"
	anom, _, _ := p.Anomalies(0, 0)
	anom[0].Outcome = "MUTATED"

	again, _, _ := p.State(id)
	if slices.Contains(again.StepsPassed, "MUTATED") || slices.Contains(again.Warnings, "MUTATED") || again.Seen[0] == 0 {
		t.Fatalf("mutating a returned state changed the stored one: %+v", again)
	}
	sameDump(t, before, dump(t, p))
}

func TestApplySkipsWhatIsApplied(t *testing.T) {
	events := genLog(5, 30, 600)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	f := domain.NewFolder()
	if _, err := p.Apply(events[:400], f); err != nil {
		t.Fatal(err)
	}
	before := dump(t, p)
	recs, err := p.Apply(events[:400], f)
	if err != nil || len(recs) != 0 {
		t.Fatalf("re-Apply = %d records, %v; want none", len(recs), err)
	}
	recs, err = p.Apply(events[100:300], f)
	if err != nil || len(recs) != 0 {
		t.Fatalf("re-Apply of a middle part = %d records, %v; want none", len(recs), err)
	}
	sameDump(t, before, dump(t, p))

	// A batch overlapping the checkpoint applies only the new part.
	recs, err = p.Apply(events[350:], f)
	if err != nil || len(recs) != 200 || recs[0].Seq != events[400].Seq {
		t.Fatalf("overlapping Apply = %d records from %v, %v; want 200 from %d", len(recs), recs[0].Seq, err, events[400].Seq)
	}
	ref := mustOpen(t, filepath.Join(t.TempDir(), "ref.db"), Options{})
	if _, err := ref.Apply(events, domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	sameDump(t, dump(t, ref), dump(t, p))
	if recs, err := p.Apply(nil, f); err != nil || recs != nil {
		t.Fatalf("Apply(nil) = %v, %v", recs, err)
	}
}

// A failure between folding and committing (here injected just before the commit) leaves
// the file and the checkpoint exactly as they were, and a retry applies the batch once.
func TestApplyFaultBeforeCommit(t *testing.T) {
	events := genLog(6, 40, 900)
	dir := t.TempDir()
	p := mustOpen(t, filepath.Join(dir, "p.db"), Options{})
	f := domain.NewFolder()
	if _, err := p.Apply(events[:300], f); err != nil {
		t.Fatal(err)
	}
	before := dump(t, p)
	cp := p.Checkpoint()

	woke := make(chan uint64, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { woke <- p.WaitFor(ctx, cp+1) }()

	fault := errors.New("disk on fire")
	calls := 0
	p.beforeCommit = func() error { calls++; return fault }
	recs, err := p.Apply(events[300:600], f)
	if !errors.Is(err, fault) || recs != nil {
		t.Fatalf("Apply with a fault = %d records, %v; want the fault", len(recs), err)
	}
	if calls != 1 {
		t.Fatalf("hook ran %d times", calls)
	}
	if p.Checkpoint() != cp {
		t.Fatalf("checkpoint moved to %d on a failed commit", p.Checkpoint())
	}
	sameDump(t, before, dump(t, p))
	select {
	case got := <-woke:
		t.Fatalf("a waiter woke (at %d) on a failed commit", got)
	case <-time.After(50 * time.Millisecond):
	}
	// The same file, reopened, holds the pre-fault state too.
	p.Close()
	if got := <-woke; got != cp {
		t.Fatalf("waiter released by Close at %d, want %d", got, cp)
	}
	p = mustOpen(t, filepath.Join(dir, "p.db"), Options{})
	if p.Checkpoint() != cp {
		t.Fatalf("reopened checkpoint %d, want %d", p.Checkpoint(), cp)
	}
	sameDump(t, before, dump(t, p))

	// Retry: the projector re-reads from checkpoint+1 and sends a batch overlapping the
	// failed one; each event lands once.
	go func() { woke <- p.WaitFor(ctx, cp+1) }()
	if _, err := p.Apply(events[250:600], f); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(events[600:], f); err != nil {
		t.Fatal(err)
	}
	if got := <-woke; got < cp+1 {
		t.Fatalf("waiter woke at %d", got)
	}
	ref := mustOpen(t, filepath.Join(dir, "ref.db"), Options{})
	applyBatches(t, ref, events, 6, 100)
	sameDump(t, dump(t, ref), dump(t, p))
}

func TestWaitFor(t *testing.T) {
	events := genLog(7, 5, 50)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	f := domain.NewFolder()

	if got := p.WaitFor(context.Background(), 0); got != 0 {
		t.Fatalf("WaitFor(0) = %d", got)
	}
	type result struct{ seq, cp uint64 }
	woke := make(chan result, 3)
	parked := make(chan uint64, 16)
	for _, seq := range []uint64{10, 20, 40} {
		go func() { woke <- result{seq, p.WaitFor(parkCtx{context.Background(), parked, seq}, seq)} }()
	}
	awaitParked(t, parked, 10, 20, 40) // all three wait: only the commit can wake them
	if _, err := p.Apply(events[:25], f); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-woke
		if r.seq > 25 || r.cp != 25 {
			t.Fatalf("WaitFor(%d) returned %d after applying up to 25", r.seq, r.cp)
		}
	}
	awaitParked(t, parked, 40) // woken too, it saw 25 and waits again
	select {
	case r := <-woke:
		t.Fatalf("WaitFor(%d) returned %d before its seq was applied", r.seq, r.cp)
	default:
	}
	if _, err := p.Apply(events[25:], f); err != nil {
		t.Fatal(err)
	}
	if r := <-woke; r.cp != 50 {
		t.Fatalf("WaitFor(40) = %d", r.cp)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if got := p.WaitFor(ctx, 1000); got != 50 {
		t.Fatalf("WaitFor with an ending ctx = %d, want 50", got)
	}

	done := make(chan uint64)
	go func() { done <- p.WaitFor(parkCtx{context.Background(), parked, 1000}, 1000) }()
	awaitParked(t, parked, 1000) // waiting, so only the close can free it
	p.Close()
	if got := <-done; got != 50 {
		t.Fatalf("WaitFor after Close = %d", got)
	}
}

// parkCtx reports seq on parked each time its Done is asked for. WaitFor asks for it
// only in its select, after it took the advance channel and read a checkpoint short of
// seq, so a report means the waiter is parking: what wakes it now is an advance, the
// end of ctx or the close.
type parkCtx struct {
	context.Context
	parked chan<- uint64
	seq    uint64
}

func (c parkCtx) Done() <-chan struct{} {
	c.parked <- c.seq
	return c.Context.Done()
}

// awaitParked waits until each of seqs has parked (reports of others are skipped).
func awaitParked(t *testing.T, parked <-chan uint64, seqs ...uint64) {
	t.Helper()
	for len(seqs) > 0 {
		select {
		case s := <-parked:
			seqs = slices.DeleteFunc(seqs, func(x uint64) bool { return x == s })
		case <-time.After(10 * time.Second):
			t.Fatalf("WaitFor(%v) never parked", seqs)
		}
	}
}

func TestClose(t *testing.T) {
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := p.State("x"); !isKind(err, domain.KindUnavailable) {
		t.Fatalf("State after Close: %v, want KindUnavailable", err)
	}
	if _, err := p.Apply(genLog(1, 1, 1), domain.NewFolder()); !isKind(err, domain.KindUnavailable) {
		t.Fatalf("Apply after Close: %v, want KindUnavailable", err)
	}
}

func TestApplyRefusesEventWithoutApplicant(t *testing.T) {
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	events := genLog(8, 3, 10)
	events[4].ApplicantID = ""
	if _, err := p.Apply(events, domain.NewFolder()); !isKind(err, domain.KindInvalid) || !strings.Contains(err.Error(), "event 5") {
		t.Fatalf("Apply with an empty applicant id: %v, want KindInvalid naming event 5", err)
	}
	if p.Checkpoint() != 0 {
		t.Fatalf("checkpoint %d after a refused batch", p.Checkpoint())
	}
}

// An absurdly long externalUserId is kept in state and history but not indexed: it must
// not stop the projection (bbolt refuses keys over 32 KiB).
func TestLongExternalUserID(t *testing.T) {
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	events := genLog(9, 2, 6)
	long := domain.ExternalUserID(strings.Repeat("x", 40<<10))
	events[2].ExternalUserID = long
	events[2].Type = domain.EventStepPassed
	events[2].StepName = "LONG"
	if _, err := p.Apply(events, domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	st, _, err := p.State(events[2].ApplicantID)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExternalUserID != long && !slices.ContainsFunc(events[3:], func(e domain.Event) bool {
		return e.ApplicantID == st.ApplicantID && e.ExternalUserID != ""
	}) {
		t.Fatalf("state lost the long externalUserId")
	}
	if got, err := p.ByExternalUserID(long, "", 0); err != nil || len(got) != 0 {
		t.Fatalf("ByExternalUserID(long) = %d, %v", len(got), err)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	if _, err := Open(path, Options{ReadOnly: true}); !isKind(err, domain.KindNotFound) {
		t.Fatalf("read-only open of a missing file: %v, want KindNotFound", err)
	}
	events := genLog(10, 5, 40)
	p := mustOpen(t, path, Options{})
	if _, err := p.Apply(events, domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	p.Close()
	ro := mustOpen(t, path, Options{ReadOnly: true})
	if ro.Checkpoint() != 40 {
		t.Fatalf("read-only checkpoint %d", ro.Checkpoint())
	}
	if _, ok, err := ro.State(events[0].ApplicantID); !ok || err != nil {
		t.Fatalf("read-only State: %v %v", ok, err)
	}
	if _, err := ro.Apply(genLog(11, 1, 50)[40:], domain.NewFolder()); !isKind(err, domain.KindConflict) {
		t.Fatalf("Apply on read-only: %v, want KindConflict", err)
	}
	// Two readers may share the file; a writer may not join them.
	ro2 := mustOpen(t, path, Options{ReadOnly: true})
	_ = ro2
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); !isKind(err, domain.KindConflict) {
		t.Fatalf("writer open beside readers: %v, want KindConflict", err)
	}
}

// Readers run beside the writer: a read made after Checkpoint returned cp sees at least
// every event up to cp (what WaitFor and ?minSeq rely on), never a half-applied batch,
// and the checkpoint only grows.
func TestReadsDuringApply(t *testing.T) {
	events := genLog(12, 100, 4000)
	exp := foldLog(events)
	p := mustOpen(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	ids := make([]domain.ApplicantID, 0, len(exp.states))
	for id := range exp.states {
		ids = append(ids, id)
	}
	// after[id][k] is the applicant's state after its first k+1 events.
	after := map[domain.ApplicantID][]domain.State{}
	f := domain.NewFolder()
	for _, e := range events {
		h := after[e.ApplicantID]
		var prev domain.State
		if len(h) > 0 {
			prev = h[len(h)-1]
		}
		next, _ := f.Apply(prev, e)
		after[e.ApplicantID] = append(h, next)
	}
	// upTo counts an applicant's events at or below seq.
	upTo := func(id domain.ApplicantID, seq uint64) int {
		n, _ := slices.BinarySearchFunc(exp.history[id], seq+1, func(r domain.Record, s uint64) int { return cmp.Compare(r.Seq, s) })
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 4)
	for r := range 3 {
		go func() {
			var err error
			defer func() { errs <- err }()
			var lastCP uint64
			for i := r; ctx.Err() == nil; i++ {
				id := ids[i%len(ids)]
				cp := p.Checkpoint()
				st, _, e := p.State(id)
				hist, _, e2 := p.History(id, 0, 0)
				if e != nil || e2 != nil {
					err = errors.Join(e, e2)
					return
				}
				if cp < lastCP {
					err = fmt.Errorf("checkpoint went back from %d to %d", lastCP, cp)
					return
				}
				lastCP = cp
				if want := upTo(id, cp); st.Events < want {
					err = fmt.Errorf("state of %s has %d events after checkpoint %d, which covers %d", id, st.Events, cp, want)
					return
				}
				// A batch lands whole: the state is exactly the fold up to its last seq.
				if st.Events > 0 && !reflect.DeepEqual(st, after[id][st.Events-1]) {
					err = fmt.Errorf("state of %s at seq %d is not the fold up to there", id, st.LastSeq)
					return
				}
				// The state and its history were read in two transactions: the history
				// may be longer, never shorter, and agrees on the common part.
				if st.Events > 0 && (len(hist) < st.Events || hist[st.Events-1].Digest != st.Digest) {
					err = fmt.Errorf("history of %s (%d records) disagrees with its state (%d events)", id, len(hist), st.Events)
					return
				}
			}
		}()
	}
	applyBatches(t, p, events, 12, 60)
	cancel()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A limit cuts every index lookup to the first applicants in id order, whichever index
// it walks.
func TestIndexLookupLimits(t *testing.T) {
	events := genLog(5, 120, 2000)
	exp := foldLog(events)
	dir := t.TempDir()
	clear := mustOpen(t, filepath.Join(dir, "clear.db"), Options{})
	applyBatches(t, clear, events, 5, 50)
	sealed := mustOpen(t, filepath.Join(dir, "sealed.db"), Options{})
	applyBatches(t, sealed, sealLog(events), 5, 50)

	byExt := map[domain.ExternalUserID][]domain.ApplicantID{}
	for id, st := range exp.states {
		if st.ExternalUserID != "" {
			byExt[st.ExternalUserID] = append(byExt[st.ExternalUserID], id)
		}
	}
	checked := 0
	for ext, want := range byExt {
		if len(want) < 2 {
			continue
		}
		checked++
		slices.Sort(want)
		for n := 1; n <= len(want)+1; n++ {
			got, err := clear.ByExternalUserID(ext, "", n)
			if err != nil {
				t.Fatal(err)
			}
			if ids := stateIDs(got); !slices.Equal(ids, want[:min(n, len(want))]) {
				t.Fatalf("ByExternalUserID(%s, limit %d) = %v, want the first of %v", ext, n, ids, want)
			}
			index := func(app domain.AppKey) domain.ExternalUserIndex { return testIndex(app, ext) }
			got, err = sealed.ByExternalUserIndex(index, "", n)
			if err != nil {
				t.Fatal(err)
			}
			if ids := stateIDs(got); !slices.Equal(ids, want[:min(n, len(want))]) {
				t.Fatalf("ByExternalUserIndex(%s, limit %d) = %v, want the first of %v", ext, n, ids, want)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d externalUserIds with several applicants", checked)
	}
}

func stateIDs(sts []domain.State) []domain.ApplicantID {
	ids := make([]domain.ApplicantID, len(sts))
	for i, st := range sts {
		ids[i] = st.ApplicantID
	}
	return ids
}

// An externalUserId may hold a 0x00, so a key under "user-1" 0x00 that names no applicant
// belongs to a longer id and is passed over; a status holds none, so there it is damage,
// as is an entry of either index naming an applicant without a state.
func TestIndexEntriesThatNameNoApplicant(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	events := genLog(9, 40, 400)
	exp := foldLog(events)
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, events, 9, 50)
	var someone domain.State
	for _, st := range exp.states {
		if st.ExternalUserID != "" && st.Status == domain.StatusApproved {
			someone = st
			break
		}
	}
	if someone.ApplicantID == "" {
		t.Fatal("no approved applicant with an externalUserId")
	}
	before, err := p.ByExternalUserID(someone.ExternalUserID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketExt).Put(indexKey(string(someone.ExternalUserID)+"\x00longer", "an-id"), []byte(someone.AppKey))
	})
	p = mustOpen(t, path, Options{})
	after, err := p.ByExternalUserID(someone.ExternalUserID, "", 0)
	if err != nil || !slices.Equal(stateIDs(after), stateIDs(before)) {
		t.Fatalf("with a longer id's entry: %v, %v; want %v", stateIDs(after), err, stateIDs(before))
	}
	p.Close()

	damage := []struct {
		name   string
		bucket []byte
		key    []byte
		lookup func(*Projection) error
		want   string
	}{
		{"status key naming no applicant", bucketStatus, indexKey(string(domain.StatusApproved), "a\x00b"),
			func(p *Projection) error { _, _, err := p.ByStatus(domain.StatusApproved, "", 0); return err }, "status index key"},
		{"status entry of an unknown applicant", bucketStatus, indexKey(string(domain.StatusApproved), "no-such-applicant"),
			func(p *Projection) error { _, _, err := p.ByStatus(domain.StatusApproved, "", 0); return err }, "status index names unknown applicant"},
		{"ext entry of an unknown applicant", bucketExt, indexKey(string(someone.ExternalUserID), "no-such-applicant"),
			func(p *Projection) error { _, err := p.ByExternalUserID(someone.ExternalUserID, "", 0); return err }, "ext index names unknown applicant"},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(d.bucket).Put(d.key, []byte(someone.AppKey)) })
			defer rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(d.bucket).Delete(d.key) })
			p := mustOpen(t, path, Options{})
			defer p.Close()
			err := d.lookup(p)
			if !isKind(err, domain.KindInternal) || !strings.Contains(err.Error(), d.want) {
				t.Fatalf("lookup: %v; want KindInternal saying %q", err, d.want)
			}
		})
	}
}
