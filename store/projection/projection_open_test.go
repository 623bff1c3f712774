package projection

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// bbolt locks with flock, which on Linux conflicts between two open file descriptions
// even in one process: a second open here stands for a second process.
func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	p := mustOpen(t, path, Options{})
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if !isKind(err, domain.KindConflict) || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v; want KindConflict saying %s is in use", err, path)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("gave up after %v, before the lock timeout", waited)
	}
	// The holder is unaffected, and once it closes the file opens.
	if _, err := p.Apply(genLog(30, 2, 5), domain.NewFolder()); err != nil {
		t.Fatalf("holder after a refused open: %v", err)
	}
	p.Close()
	p2 := mustOpen(t, path, Options{LockTimeout: 200 * time.Millisecond})
	if p2.Checkpoint() != 5 {
		t.Fatalf("checkpoint %d after reopening", p2.Checkpoint())
	}
}

// A file of a newer schema was written by a newer kycstate: it is refused as such (never
// as corrupted) and left as it is; one older than this build reads is refused with a
// word to rebuild.
func TestOpenSchemaVersion(t *testing.T) {
	for _, c := range []struct {
		name   string
		schema uint64
		want   string
	}{
		{"newer", SchemaVersion + 1, fmt.Sprintf("written by a newer kycstate (schema %d); upgrade", SchemaVersion+1)},
		{"much newer", 1 << 40, fmt.Sprintf("written by a newer kycstate (schema %d); upgrade", uint64(1<<40))},
		{"older than read", oldestSchema - 1, fmt.Sprintf("schema version %d, this build reads %d: run kycstate rebuild", oldestSchema-1, SchemaVersion)},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			p := mustOpen(t, path, Options{})
			applyBatches(t, p, genLog(4, 10, 50), 4, 10)
			p.Close()
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keySchema, seqKey(c.schema))
			})
			for _, opts := range []Options{{}, {ReadOnly: true}} {
				_, err := Open(path, opts)
				if !isKind(err, domain.KindConflict) || !strings.Contains(err.Error(), c.want) ||
					strings.Contains(err.Error(), "corrupt") {
					t.Fatalf("open (read-only %v) with schema %d: %v; want KindConflict saying %q", opts.ReadOnly, c.schema, err, c.want)
				}
			}
			if got := fileSchema(t, path); got != c.schema {
				t.Fatalf("a refused open changed the schema from %d to %d", c.schema, got)
			}
		})
	}
}

// A file of schema 1, from before the extIndex and apps buckets and the formats that
// came with them, is still served; a writable open raises it to SchemaVersion before it
// writes, so that a build reading only version 1 refuses it instead of misreading it.
func TestOpenOlderSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	events := genLog(6, 20, 300)
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, events[:200], 6, 25)
	want := dump(t, p)
	p.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, name := range laterBuckets {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, seqKey(1))
	})

	ro := mustOpen(t, path, Options{ReadOnly: true})
	if ro.Checkpoint() != events[199].Seq {
		t.Fatalf("read-only checkpoint %d, want %d", ro.Checkpoint(), events[199].Seq)
	}
	got := dump(t, ro)
	for _, name := range append([][]byte{bucketMeta}, laterBuckets...) {
		delete(want, string(name))
		delete(got, string(name))
	}
	sameDump(t, want, got)
	ro.Close()
	if got := fileSchema(t, path); got != 1 {
		t.Fatalf("a read-only open changed the schema to %d", got)
	}

	rw := mustOpen(t, path, Options{})
	var stamped uint64
	rw.db.View(func(tx *bolt.Tx) error {
		stamped, _ = keySeq(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	if stamped != SchemaVersion {
		t.Fatalf("schema %d after a writable open, want %d", stamped, SchemaVersion)
	}
	applyBatches(t, rw, events[200:], 6, 25)
	rw.Close()
	whole := mustOpen(t, filepath.Join(t.TempDir(), "whole.db"), Options{})
	applyBatches(t, whole, events, 6, 25)
	sameDump(t, dump(t, whole), dumpFile(t, path))
	whole.Close()
}

// fileSchema reads the schema version stored in a closed projection file.
func fileSchema(t *testing.T, path string) uint64 {
	t.Helper()
	var v uint64
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		v, _ = keySeq(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	return v
}

func TestOpenForeignBoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-elses"))
		return err
	})
	_, err := Open(path, Options{})
	if !isKind(err, domain.KindConflict) || !strings.Contains(err.Error(), "not a kycstate projection") {
		t.Fatalf("open of a foreign bbolt file: %v", err)
	}
	// It was not adopted: no buckets of ours were added.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			return errors.New("meta bucket created in a foreign file")
		}
		return nil
	})
}

func rawUpdate(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// sampleFile writes a projection of a few hundred applicants and returns its path and
// the events.
func sampleFile(t *testing.T) (string, []domain.Event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sample.db")
	events := genLog(31, 300, 3000)
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, events, 31, 400)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// bbolt grows files in 16 MiB steps; drop the unused tail so that copies are small
	// and every page of the file is in use.
	if err := os.Truncate(path, highWater(t, path)); err != nil {
		t.Fatal(err)
	}
	return path, events
}

// highWater is the size the file's pages need (bbolt's high water mark).
func highWater(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenTruncatedFile(t *testing.T) {
	path, _ := sampleFile(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 256<<10 {
		t.Fatalf("sample is only %d bytes", fi.Size())
	}
	cut := filepath.Join(t.TempDir(), "cut.db")
	for _, size := range []int64{100, 4096, 3 * 4096, fi.Size() / 2, fi.Size() - 4096} {
		copyFile(t, path, cut)
		if err := os.Truncate(cut, size); err != nil {
			t.Fatal(err)
		}
		p, err := Open(cut, Options{})
		if err == nil {
			p.Close()
			t.Fatalf("truncated to %d of %d bytes: opened", size, fi.Size())
		}
		if !isKind(err, domain.KindInternal) || !strings.Contains(err.Error(), "corrupted") || !strings.Contains(err.Error(), "rebuild") {
			t.Fatalf("truncated to %d bytes: %v; want KindInternal saying corrupted, rebuild", size, err)
		}
		err0 := err
		// The file is not left locked by a failed open.
		if err := os.Truncate(cut, 0); err != nil {
			t.Fatal(err)
		}
		p, err = Open(cut, Options{LockTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("after a failed open at size %d (%v), an emptied file does not open fresh: %v", size, err0, err)
		}
		p.Close()
	}
}

func TestOpenScribbledMeta(t *testing.T) {
	path, _ := sampleFile(t)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 2*4096)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	if _, err := f.WriteAt(junk, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(path, Options{}); !isKind(err, domain.KindInternal) || !strings.Contains(err.Error(), "corrupted") {
		t.Fatalf("both meta pages scribbled: %v; want KindInternal corrupted", err)
	}
}

// Random bytes over any one page of the file: opening and every read either work or
// report corruption (KindInternal); none panics or hangs, and once bbolt itself has
// failed the projection refuses further use rather than touch the file again.
func TestScribbledPages(t *testing.T) {
	path, events := sampleFile(t)
	fi, _ := os.Stat(path)
	pages := int(fi.Size() / 4096)
	exp := foldLog(events)
	rng := rand.New(rand.NewPCG(32, 32))
	order := rng.Perm(pages - 2)
	limit := 100
	if testing.Short() {
		limit = 20
	}
	order = order[:min(len(order), limit)]
	var opened, failedOpen, readErrs, readOK int
	// One path for every attempt: a file bbolt failed on stays mapped until the process
	// ends, and a new file per attempt would pile up on disk.
	bad := filepath.Join(t.TempDir(), "bad.db")
	for _, i := range order {
		page := i + 2 // pages 0 and 1 are the meta pages (TestOpenScribbledMeta)
		copyFile(t, path, bad)
		f, err := os.OpenFile(bad, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 4096)
		for j := range junk {
			junk[j] = byte(rng.UintN(256))
		}
		if _, err := f.WriteAt(junk, int64(page)*4096); err != nil {
			t.Fatal(err)
		}
		f.Close()

		check := func(what string, err error) {
			t.Helper()
			if err == nil {
				readOK++
				return
			}
			if !isKind(err, domain.KindInternal) || !strings.Contains(err.Error(), "corrupted") {
				t.Fatalf("page %d scribbled, %s: %v; want nil or KindInternal corrupted", page, what, err)
			}
			readErrs++
		}
		p, err := Open(bad, Options{})
		if err != nil {
			check("open", err)
			failedOpen++
			continue
		}
		opened++
		for id := range exp.states {
			_, _, err := p.State(id)
			check("State", err)
			_, _, err = p.History(id, 0, 0)
			check("History", err)
		}
		for _, s := range domain.Statuses() {
			_, _, err := p.ByStatus(s, "", 0)
			check("ByStatus", err)
		}
		_, err = p.ByExternalUserID("user-1", "", 0)
		check("ByExternalUserID", err)
		_, _, err = p.Anomalies(0, 0)
		check("Anomalies", err)
		_, err = p.Changes(0, 0)
		check("Changes", err)
		check("Digests", p.Digests(func(domain.ApplicantKey, domain.Digest) error { return nil }))
		_, err = p.Apply(genLog(31, 300, 3100)[3000:], domain.NewFolder())
		if err != nil && !isKind(err, domain.KindInternal) {
			t.Fatalf("page %d scribbled, Apply: %v", page, err)
		}
		if err := closeWithin(p, 5*time.Second); err != nil {
			t.Fatalf("page %d scribbled: %v", page, err)
		}
	}
	t.Logf("%d pages scribbled: %d failed to open, %d opened; reads: %d ok, %d reported corruption",
		len(order), failedOpen, opened, readOK, readErrs)
	if readErrs == 0 {
		t.Fatal("no scribble was ever noticed: the test is not reaching the data")
	}
}

// closeWithin closes p, failing if Close blocks (bbolt left holding its locks).
func closeWithin(p *Projection, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, os.ErrClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
		return errors.New("Close blocked")
	}
}
