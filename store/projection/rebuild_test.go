package projection

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// readEvents serves events the way EventLog.Read does (from inclusive, in batches, up
// to the end, stopping at fn's first error), so Rebuild and Verify can be driven by a
// generated log; rebuild_log_test.go runs them against a real stream.
func readEvents(events []domain.Event) readFunc {
	return func(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
		i := 0
		for i < len(events) && events[i].Seq < from {
			i++
		}
		for i < len(events) {
			if err := ctx.Err(); err != nil {
				return err
			}
			j := min(len(events), i+batch)
			if err := fn(events[i:j]); err != nil {
				return err
			}
			i = j
		}
		return nil
	}
}

func buildFile(tb testing.TB, path string, events []domain.Event, chunkEvents, chunkApplicants int, addBatch int) {
	tb.Helper()
	buildFileParked(tb, path, events, chunkEvents, chunkApplicants, addBatch, 0)
}

// buildFileParked is buildFile with a budget for parked states (0: the default).
func buildFileParked(tb testing.TB, path string, events []domain.Event, chunkEvents, chunkApplicants, addBatch, parkBudget int) {
	tb.Helper()
	buildFileIndexed(tb, path, events, nil, chunkEvents, chunkApplicants, addBatch, parkBudget)
}

// buildFileIndexed is buildFileParked with an Indexer.
func buildFileIndexed(tb testing.TB, path string, events []domain.Event, ix Indexer, chunkEvents, chunkApplicants, addBatch, parkBudget int) {
	tb.Helper()
	b, err := NewBuilder(path, ix)
	if err != nil {
		tb.Fatal(err)
	}
	if chunkEvents > 0 {
		b.chunkEvents, b.chunkApplicants = chunkEvents, chunkApplicants
	}
	if parkBudget > 0 {
		b.park.budget = parkBudget
	}
	for i := 0; i < len(events); i += addBatch {
		if err := b.Add(events[i:min(len(events), i+addBatch)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Finish(); err != nil {
		tb.Fatal(err)
	}
}

// The bulk load and the live path write the same bytes in every bucket, whatever the
// chunking: chunks small enough that applicants, their externalUserIds and statuses come
// back across many chunks, and the default ones.
func TestBuilderEqualsApply(t *testing.T) {
	applicants, events := 10_000, 80_000
	if testing.Short() {
		applicants, events = 1_000, 8_000
	}
	log := genLog(40, applicants, events)
	dir := t.TempDir()

	live := mustOpen(t, filepath.Join(dir, "live.db"), Options{})
	applyBatches(t, live, log, 40, 500)
	want := dump(t, live)
	if n := len(want["states"]); n < applicants*9/10 {
		t.Fatalf("only %d of %d applicants have a state", n, applicants)
	}
	// Both paths share the writer, so check the indexes against the fold independently.
	checkIndexes(t, want, foldLog(log))

	for _, c := range []struct {
		name                         string
		chunkEvents, chunkApplicants int
		addBatch                     int
		parkBudget                   int
	}{
		{"default chunks", 0, 0, 1000, 0},
		{"small chunks", 997, 101, 333, 0},
		// States spilled to the file every few chunks: applicants, their
		// externalUserIds and statuses then change across chunks in the file.
		{"small chunks, states spilled", 997, 101, 333, 200 << 10},
		{"states spilled every chunk", 0, 0, 1000, 1},
		{"one event per chunk", 1, 1, 7, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs := log
			if c.chunkEvents == 1 {
				evs = log[:min(len(log), 3000)]
			}
			path := filepath.Join(t.TempDir(), "built.db")
			buildFileParked(t, path, evs, c.chunkEvents, c.chunkApplicants, c.addBatch, c.parkBudget)
			ref := want
			if len(evs) < len(log) {
				p := mustOpen(t, filepath.Join(t.TempDir(), "ref.db"), Options{})
				applyBatches(t, p, evs, 41, 50)
				ref = dump(t, p)
			}
			sameDump(t, ref, dumpFile(t, path))
		})
	}
}

func TestBuilderSkipsWhatItFolded(t *testing.T) {
	events := genLog(41, 50, 1000)
	dir := t.TempDir()
	once, twice := filepath.Join(dir, "once.db"), filepath.Join(dir, "twice.db")
	buildFile(t, once, events, 0, 0, 100)
	b, err := NewBuilder(twice, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]domain.Event{events[:600], events[:300], events[500:], events} {
		if err := b.Add(part); err != nil {
			t.Fatal(err)
		}
	}
	if b.Checkpoint() != events[len(events)-1].Seq {
		t.Fatalf("Checkpoint = %d", b.Checkpoint())
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := b.Finish(); err != nil {
		t.Fatalf("second Finish: %v", err)
	}
	sameDump(t, dumpFile(t, once), dumpFile(t, twice))
	p := mustOpen(t, twice, Options{})
	if p.Checkpoint() != events[len(events)-1].Seq {
		t.Fatalf("built file's checkpoint %d", p.Checkpoint())
	}
}

// A built file goes on as a live projection.
func TestBuiltFileContinuesLive(t *testing.T) {
	events := genLog(42, 100, 2000)
	dir := t.TempDir()
	path := filepath.Join(dir, "p.db")
	buildFile(t, path, events[:1200], 0, 0, 100)
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, events, 42, 200) // the first 1200 are skipped
	ref := mustOpen(t, filepath.Join(dir, "ref.db"), Options{})
	applyBatches(t, ref, events, 43, 300)
	sameDump(t, dump(t, ref), dump(t, p))
}

func TestNewBuilderRefusesFileInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	p := mustOpen(t, path, Options{})
	if _, err := p.Apply(genLog(43, 3, 20), domain.NewFolder()); err != nil {
		t.Fatal(err)
	}
	if _, err := NewBuilder(path, nil); !isKind(err, domain.KindConflict) {
		t.Fatalf("NewBuilder on an open projection: %v, want KindConflict", err)
	}
	if _, ok, err := p.State(genLog(43, 3, 20)[0].ApplicantID); !ok || err != nil {
		t.Fatalf("the open projection was disturbed: %v %v", ok, err)
	}
	b, err := NewBuilder(path+".2", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if _, err := NewBuilder(path+".2", nil); !isKind(err, domain.KindConflict) {
		t.Fatalf("NewBuilder on a file another Builder holds: %v, want KindConflict", err)
	}
}

func TestBuilderAbort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	if err := os.WriteFile(path, []byte("leftover junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := NewBuilder(path, nil)
	if err != nil {
		t.Fatalf("NewBuilder over a junk file: %v", err)
	}
	if err := b.Add(genLog(44, 10, 100)); err != nil {
		t.Fatal(err)
	}
	if err := b.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file left after Abort: %v", err)
	}
	if err := b.Add(genLog(44, 10, 101)[100:]); err == nil {
		t.Fatal("Add after Abort succeeded")
	}
}

func TestBuilderRefusesEventWithoutApplicant(t *testing.T) {
	events := genLog(45, 3, 10)
	events[6].ApplicantID = ""
	b, err := NewBuilder(filepath.Join(t.TempDir(), "p.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if err := b.Add(events); !isKind(err, domain.KindInvalid) {
		t.Fatalf("Add: %v, want KindInvalid", err)
	}
	if err := b.Finish(); !isKind(err, domain.KindInvalid) {
		t.Fatalf("Finish after a failed Add: %v", err)
	}
}

func TestRebuild(t *testing.T) {
	events := genLog(46, 300, 5000)
	dir := t.TempDir()
	path := filepath.Join(dir, "projection.db")

	// An old file with a part of the log, and the junk of a crashed rebuild beside it.
	old := mustOpen(t, path, Options{})
	applyBatches(t, old, events[:1000], 46, 100)
	old.Close()
	if err := os.WriteFile(path+".rebuild", []byte("crashed rebuild"), 0o600); err != nil {
		t.Fatal(err)
	}

	var calls int
	var lastDone, lastTotal uint64
	err := rebuild(context.Background(), readEvents(events), 5000, path, RebuildOptions{Progress: func(done, total uint64) {
		if done < lastDone {
			t.Errorf("progress went back from %d to %d", lastDone, done)
		}
		calls++
		lastDone, lastTotal = done, total
	}})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 3 || lastDone != 5000 || lastTotal != 5000 {
		t.Fatalf("progress: %d calls, last %d/%d", calls, lastDone, lastTotal)
	}
	if _, err := os.Stat(path + ".rebuild"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".rebuild file left: %v", err)
	}
	ref := mustOpen(t, filepath.Join(dir, "ref.db"), Options{})
	applyBatches(t, ref, events, 47, 400)
	sameDump(t, dump(t, ref), dumpFile(t, path))
}

// A rebuild that fails (the log stops answering, the context ends) leaves the old file
// exactly as it was and no partial file.
func TestRebuildFailureKeepsOldFile(t *testing.T) {
	events := genLog(47, 100, 3000)
	dir := t.TempDir()
	path := filepath.Join(dir, "projection.db")
	old := mustOpen(t, path, Options{})
	applyBatches(t, old, events[:700], 47, 100)
	before := dump(t, old)
	old.Close()

	logDown := errors.New("log unreachable")
	failing := func(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
		n := 0
		return readEvents(events)(ctx, from, batch, func(evs []domain.Event) error {
			if n++; n == 2 {
				return logDown
			}
			return fn(evs)
		})
	}
	if err := rebuild(context.Background(), failing, 3000, path, RebuildOptions{}); !errors.Is(err, logDown) {
		t.Fatalf("rebuild with a failing log: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	canceling := func(ctx2 context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
		return readEvents(events)(ctx2, from, batch, func(evs []domain.Event) error {
			cancel()
			return fn(evs)
		})
	}
	if err := rebuild(ctx, canceling, 3000, path, RebuildOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled rebuild: %v", err)
	}
	for _, leftover := range []string{path + ".rebuild"} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind: %v", leftover, err)
		}
	}
	sameDump(t, before, dumpFile(t, path))
}

// A crash after the new file is written but before the rename (the process dies: no
// Abort runs) leaves the old file serving; the next rebuild replaces the leftover.
func TestRebuildCrashBeforeRename(t *testing.T) {
	events := genLog(48, 100, 2000)
	dir := t.TempDir()
	path := filepath.Join(dir, "projection.db")
	old := mustOpen(t, path, Options{})
	applyBatches(t, old, events[:500], 48, 100)
	before := dump(t, old)
	old.Close()

	b, err := NewBuilder(path+".rebuild", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(events); err != nil {
		t.Fatal(err)
	}
	b.stopWriter()
	if b.tx != nil {
		b.tx.Rollback()
	}
	b.db.Close() // the process is gone: its lock goes with it, its file stays

	p := mustOpen(t, path, Options{})
	if p.Checkpoint() != 500 {
		t.Fatalf("after the crash the file has checkpoint %d, want the old 500", p.Checkpoint())
	}
	sameDump(t, before, dump(t, p))
	p.Close()

	start := time.Now()
	if err := rebuild(context.Background(), readEvents(events), 2000, path, RebuildOptions{}); err != nil {
		t.Fatalf("rebuild over a crashed one's leftover: %v (after %v)", err, time.Since(start))
	}
	if got := mustOpen(t, path, Options{}).Checkpoint(); got != 2000 {
		t.Fatalf("rebuilt checkpoint %d", got)
	}
}

func TestRebuildRefusesConcurrentRebuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "projection.db")
	b, err := NewBuilder(path+".rebuild", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	err = rebuild(context.Background(), readEvents(genLog(49, 5, 50)), 50, path, RebuildOptions{})
	if !isKind(err, domain.KindConflict) {
		t.Fatalf("rebuild beside a running one: %v, want KindConflict", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused rebuild created %s", path)
	}
}

func TestRebuildEmptyLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "projection.db")
	if err := rebuild(context.Background(), readEvents(nil), 0, path, RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	p := mustOpen(t, path, Options{})
	if p.Checkpoint() != 0 {
		t.Fatalf("checkpoint %d", p.Checkpoint())
	}
}

// checkIndexes compares the ext and status buckets with the entries the folded states
// call for.
func checkIndexes(t *testing.T, d map[string][]kv, exp folded) {
	t.Helper()
	var ext, status []kv
	for _, st := range exp.states {
		if st.ExternalUserID != "" {
			ext = append(ext, kv{indexKey(string(st.ExternalUserID), st.Key()), []byte(st.AppKey)})
		}
		if st.Status != domain.StatusNone {
			status = append(status, kv{indexKey(string(st.Status), st.Key()), []byte{}})
		}
	}
	byKey := func(a, b kv) int { return bytes.Compare(a.k, b.k) }
	slices.SortFunc(ext, byKey)
	slices.SortFunc(status, byKey)
	sameDump(t, map[string][]kv{"ext": ext, "status": status},
		map[string][]kv{"ext": d["ext"], "status": d["status"]})
}

// A running query node holds its projection open for writing: Rebuild refuses rather
// than rename a new file under it, and while Rebuild runs no writer can open the file.
func TestRebuildRefusesFileInUse(t *testing.T) {
	events := genLog(50, 20, 300)
	path := filepath.Join(t.TempDir(), "projection.db")
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, events[:100], 50, 30)
	err := rebuild(context.Background(), readEvents(events), 300, path, RebuildOptions{})
	if !isKind(err, domain.KindConflict) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("rebuild of an open projection: %v, want KindConflict in use", err)
	}
	if _, err := os.Stat(path + ".rebuild"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused rebuild left %s.rebuild", path)
	}
	p.Close()

	// A reader may stay open; a writer opening meanwhile is refused.
	ro := mustOpen(t, path, Options{ReadOnly: true})
	opened := false
	read := func(ctx context.Context, from uint64, batch int, fn func([]domain.Event) error) error {
		if !opened {
			opened = true
			if w, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); err == nil {
				w.Close()
				return errors.New("a writer opened the projection during the rebuild")
			}
		}
		return readEvents(events)(ctx, from, batch, fn)
	}
	if err := rebuild(context.Background(), read, 300, path, RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if ro.Checkpoint() != 100 {
		t.Fatalf("the open reader's view changed: checkpoint %d", ro.Checkpoint())
	}
	if got := mustOpen(t, path, Options{}).Checkpoint(); got != 300 {
		t.Fatalf("rebuilt checkpoint %d", got)
	}
}

// A damaged file is what one rebuilds: its contents are not read.
func TestRebuildOverDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "projection.db")
	if err := os.WriteFile(path, []byte("not a bbolt file at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); !isKind(err, domain.KindInternal) {
		t.Fatalf("open of a damaged file: %v", err)
	}
	if err := rebuild(context.Background(), readEvents(genLog(51, 5, 50)), 50, path, RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := mustOpen(t, path, Options{}).Checkpoint(); got != 50 {
		t.Fatalf("rebuilt checkpoint %d", got)
	}
}
