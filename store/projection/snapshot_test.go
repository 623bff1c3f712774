package projection

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// snapshotBytes returns the copy Snapshot gives, written twice to check that both
// writes are the same bytes, and its checkpoint.
func snapshotBytes(t *testing.T, p *Projection) ([]byte, *Copy) {
	t.Helper()
	var first, second bytes.Buffer
	var got Copy
	err := p.Snapshot(func(c *Copy) error {
		got = *c
		if n, err := c.WriteTo(&first); err != nil || n != c.Size {
			t.Fatalf("WriteTo: %d of %d bytes, %v", n, c.Size, err)
		}
		_, err := c.WriteTo(&second)
		return err
	})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("two writes of one copy differ")
	}
	return first.Bytes(), &got
}

// checkFile runs bbolt's own consistency check on a closed file.
func checkFile(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check of %s: %v", path, err)
	}
}

func TestSnapshotRestoresTheSameProjection(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, filepath.Join(dir, "projection.db"), Options{})
	events := genLog(41, 200, 2000)
	applyBatches(t, p, events, 41, 50)
	b, c := snapshotBytes(t, p)
	if c.Checkpoint != events[len(events)-1].Seq || c.Schema != SchemaVersion || int64(len(b)) != c.Size {
		t.Fatalf("copy: checkpoint %d schema %d size %d (%d bytes)", c.Checkpoint, c.Schema, c.Size, len(b))
	}
	to := filepath.Join(dir, "restored.db")
	accepted := false
	cp, err := Restore(to, bytes.NewReader(b), func() error { accepted = true; return nil })
	if err != nil || cp != c.Checkpoint || !accepted {
		t.Fatalf("Restore: checkpoint %d, accepted %v, %v", cp, accepted, err)
	}
	if _, err := os.Stat(to + ".restore"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the partial file is left: %v", err)
	}
	checkFile(t, to)
	sameDump(t, dump(t, p), dumpFile(t, to))

	// The restored file is a projection the projector goes on from.
	r := mustOpen(t, to, Options{})
	more := genLog(41, 200, 2400)[2000:]
	applyBatches(t, r, more, 42, 50)
	applyBatches(t, p, more, 43, 50)
	sameDump(t, dump(t, p), dump(t, r))
}

// An erasure removes an applicant's lookup entry; bbolt keeps the page that held it, free,
// in the file. The snapshot must not carry it.
func TestSnapshotWritesFreePagesAsZeros(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "projection.db")
	p := mustOpen(t, path, Options{})
	applyBatches(t, p, genLog(7, 100, 1000), 7, 100)
	marker := []byte("an-index-an-erasure-removed-0123456789abcdef")
	put := func(del bool) {
		err := p.update("test", func(tx *bolt.Tx) error {
			if del {
				return tx.Bucket(bucketExtIndex).Delete(marker)
			}
			return tx.Bucket(bucketExtIndex).Put(marker, []byte("71f2c0c6-c720-423b-8df0-7763102ad57e"))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put(false)
	put(true)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, marker) {
		t.Fatal("test setup: the deleted entry is not left in a free page of the file; the test would prove nothing")
	}
	b, c := snapshotBytes(t, p)
	if bytes.Contains(b, marker) {
		t.Fatal("the snapshot holds an entry the projection deleted")
	}
	// Only free pages differ from the file (the meta pages aside, which bbolt's copy
	// writes afresh), and each is written as zeros.
	ps, zeroed := c.pageSize, 0
	for id := int64(2); (id+1)*ps <= c.Size; id++ {
		got, file := b[id*ps:(id+1)*ps], raw[id*ps:(id+1)*ps]
		if bytes.Equal(got, file) {
			continue
		}
		if !c.isFree(uint64(id)) || !bytes.Equal(got, make([]byte, ps)) {
			t.Fatalf("page %d differs from the file and is not a free page written as zeros", id)
		}
		zeroed++
	}
	if zeroed == 0 {
		t.Fatal("no page was zeroed")
	}
	to := filepath.Join(dir, "restored.db")
	if _, err := Restore(to, bytes.NewReader(b), nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, to)
	sameDump(t, dump(t, p), dumpFile(t, to))
}

// A copy taken while the projector commits is the file at one checkpoint: the same as a
// projection folded up to that checkpoint and no further.
func TestSnapshotDuringApply(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, filepath.Join(dir, "projection.db"), Options{})
	events := genLog(11, 300, 6000)
	applyBatches(t, p, events[:1000], 11, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f := domain.NewFolder()
		for rest := events[1000:]; len(rest) > 0; {
			n := min(len(rest), 50)
			if _, err := p.Apply(rest[:n], f); err != nil {
				t.Errorf("Apply: %v", err)
				return
			}
			rest = rest[n:]
		}
	}()
	var b []byte
	var c *Copy
	for range 3 { // a few copies while the batches commit
		b, c = snapshotBytes(t, p)
	}
	wg.Wait()
	to := filepath.Join(dir, "restored.db")
	cp, err := Restore(to, bytes.NewReader(b), nil)
	if err != nil || cp != c.Checkpoint {
		t.Fatalf("Restore: %d, %v (copy at %d)", cp, err, c.Checkpoint)
	}
	checkFile(t, to)
	upTo := mustOpen(t, filepath.Join(dir, "upto.db"), Options{})
	applyBatches(t, upTo, events[:cp], 12, 100)
	sameDump(t, dump(t, upTo), dumpFile(t, to))
}

func TestRestoreRefuses(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, filepath.Join(dir, "projection.db"), Options{})
	applyBatches(t, p, genLog(3, 20, 200), 3, 20)
	good, _ := snapshotBytes(t, p)

	newer := filepath.Join(dir, "newer.db")
	copyFile(t, filepath.Join(dir, "projection.db"), newer)
	p.Close()
	rawUpdate(t, newer, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, seqKey(SchemaVersion+1))
	})
	newerBytes, err := os.ReadFile(newer)
	if err != nil {
		t.Fatal(err)
	}
	refused := errors.New("digest differs")
	for _, tc := range []struct {
		name   string
		b      []byte
		accept func() error
		kind   domain.ErrorKind
		is     error
	}{
		{"newer schema", newerBytes, nil, domain.KindConflict, nil},
		{"truncated", good[:len(good)/2], nil, domain.KindInternal, nil},
		{"not accepted", good, func() error { return refused }, domain.KindOther, refused},
		{"not bbolt", bytes.Repeat([]byte{7}, 8192), nil, domain.KindInternal, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := filepath.Join(t.TempDir(), "projection.db")
			_, err := Restore(to, bytes.NewReader(tc.b), tc.accept)
			if err == nil || domain.KindOf(err) != tc.kind || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Restore: %v (kind %v), want kind %v", err, domain.KindOf(err), tc.kind)
			}
			for _, left := range []string{to, to + ".restore"} {
				if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s left behind: %v", left, err)
				}
			}
		})
	}
	t.Run("existing file", func(t *testing.T) {
		to := filepath.Join(t.TempDir(), "projection.db")
		if err := os.WriteFile(to, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(to, bytes.NewReader(good), nil); domain.KindOf(err) != domain.KindConflict {
			t.Fatalf("Restore over a file: %v", err)
		}
		if b, _ := os.ReadFile(to); string(b) != "mine" {
			t.Fatal("the existing file was touched")
		}
	})
}
