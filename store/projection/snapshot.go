// Snapshots of the projection file (DESIGN.md section 14): a consistent copy of the file
// as one read transaction sees it, and the restore of such a copy where there is none.

package projection

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kycstate/kycstate/domain"
	bolt "go.etcd.io/bbolt"
)

// Copy is the projection file as one read transaction sees it: the checkpoint and schema
// version inside it, and its bytes (WriteTo). It is valid only inside the function given
// to Projection.Snapshot.
//
// A copy holds nothing the projection does not hold now. bbolt writes copy-on-write, so
// the pages a later transaction freed (the lookup entries of an erased applicant, say)
// keep their old bytes in the file until reused; WriteTo writes every free page as zeros,
// so what an erasure removed from the projection does not live on in its snapshots. The
// free pages are those of the file's own freelist as of this transaction (bbolt persists
// it at every commit, with the pages pending release), and the rest of the file is
// exactly bbolt's Tx.WriteTo.
type Copy struct {
	Checkpoint uint64 // the last sequence the copy holds
	Schema     uint64 // its SchemaVersion
	Size       int64  // the bytes WriteTo writes

	tx       *bolt.Tx
	file     *os.File
	pageSize int64
	free     []uint64 // bit set of free page ids
}

// Snapshot runs fn with a Copy of the file in one read transaction, which stays open
// until fn returns; the projector goes on committing meanwhile (the copy is of the state
// at the transaction's start). Errors: fn's as they are; KindInternal for a file whose
// pages are not bbolt's as this build knows them; KindUnavailable when it cannot be read.
func (p *Projection) Snapshot(fn func(c *Copy) error) error {
	const op = "projection.Projection.Snapshot"
	if err := p.usable(op); err != nil {
		return err
	}
	tx, err := p.db.Begin(false)
	if err != nil {
		return p.txErr(op, err)
	}
	defer tx.Rollback()
	c := &Copy{tx: tx, file: p.file, Size: tx.Size(), pageSize: int64(tx.DB().Info().PageSize)}
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return corrupted(op, p.path, "meta bucket missing")
	}
	var ok1, ok2 bool
	c.Schema, ok1 = keySeq(meta.Get(keySchema))
	c.Checkpoint, ok2 = keySeq(meta.Get(keyCheckpoint))
	if !ok1 || !ok2 {
		return corrupted(op, p.path, "schema version or checkpoint missing")
	}
	if err := c.readFreelist(); err != nil {
		return domain.E(op, domain.KindInternal, fmt.Errorf("projection %s: %w", p.path, err))
	}
	return fn(c)
}

// The parts of bbolt's file format (version 2) that the copy reads: page headers, the
// meta page and the freelist page. bbolt writes them in the machine's byte order.
const (
	boltMagic            = 0xED0CDAED
	boltPageHeader       = 16 // id u64, flags u16, count u16, overflow u32
	boltFreelistFlag     = 0x10
	boltMetaFreelistAt   = boltPageHeader + 32 // magic, version, pageSize, flags, root bucket (16)
	boltMetaHighWaterAt  = boltMetaFreelistAt + 8
	boltNoFreelist       = ^uint64(0)
	boltFreelistOverflow = 0xFFFF // count in the first element instead
)

var errStopCopy = errors.New("first page read")

// readFreelist reads the transaction's meta page (the first page its WriteTo writes) and
// from it the freelist page the transaction committed, which no later commit overwrites
// while the transaction is open.
func (c *Copy) readFreelist() error {
	first := &firstPage{want: int(c.pageSize)}
	if _, err := c.tx.WriteTo(first); len(first.b) < int(c.pageSize) {
		return fmt.Errorf("reading the meta page: %v", err) // bbolt's error does not wrap errStopCopy
	}
	ne := binary.NativeEndian
	meta := first.b
	if ne.Uint32(meta[boltPageHeader:]) != boltMagic {
		return errors.New("the meta page is not bbolt's")
	}
	flID, highWater := ne.Uint64(meta[boltMetaFreelistAt:]), ne.Uint64(meta[boltMetaHighWaterAt:])
	if flID == boltNoFreelist {
		return errors.New("the file keeps no freelist")
	}
	if flID < 2 || flID >= highWater || int64(highWater)*c.pageSize != c.Size {
		return fmt.Errorf("meta page: freelist at page %d of %d", flID, highWater)
	}
	c.free = make([]uint64, (highWater+63)/64)
	head := make([]byte, c.pageSize)
	if _, err := c.file.ReadAt(head, int64(flID)*c.pageSize); err != nil {
		return fmt.Errorf("reading the freelist page: %v", err)
	}
	if ne.Uint64(head) != flID || ne.Uint16(head[8:])&boltFreelistFlag == 0 {
		return fmt.Errorf("page %d is not the freelist", flID)
	}
	page := head
	if overflow := int64(ne.Uint32(head[12:])); overflow > 0 {
		if int64(flID)+overflow >= int64(highWater) {
			return fmt.Errorf("the freelist at page %d runs past the file", flID)
		}
		page = make([]byte, (overflow+1)*c.pageSize)
		if _, err := c.file.ReadAt(page, int64(flID)*c.pageSize); err != nil {
			return fmt.Errorf("reading the freelist page: %v", err)
		}
	}
	ids := page[boltPageHeader:]
	count := uint64(ne.Uint16(head[10:]))
	if count == boltFreelistOverflow {
		count, ids = ne.Uint64(ids), ids[8:]
	}
	if count > uint64(len(ids))/8 {
		return fmt.Errorf("the freelist claims %d pages", count)
	}
	for i := range count {
		id := ne.Uint64(ids[8*i:])
		if id < 2 || id >= highWater {
			return fmt.Errorf("the freelist lists page %d of %d", id, highWater)
		}
		c.free[id/64] |= 1 << (id % 64)
	}
	return nil
}

// firstPage keeps the first want bytes written to it, then refuses more.
type firstPage struct {
	b    []byte
	want int
}

func (f *firstPage) Write(p []byte) (int, error) {
	n := min(len(p), f.want-len(f.b))
	f.b = append(f.b, p[:n]...)
	if len(f.b) == f.want {
		return n, errStopCopy
	}
	return n, nil
}

// WriteTo writes the file as the transaction sees it, free pages as zeros: Size bytes,
// the same on every call. Errors: w's as they are, KindUnavailable when the file cannot
// be read.
func (c *Copy) WriteTo(w io.Writer) (int64, error) {
	z := &zeroFree{w: w, c: c, zeros: make([]byte, c.pageSize)}
	n, err := c.tx.WriteTo(z)
	if err != nil && z.err == nil {
		return n, domain.E("projection.Copy.WriteTo", domain.KindUnavailable, err)
	}
	return n, z.err
}

func (c *Copy) isFree(id uint64) bool {
	return id/64 < uint64(len(c.free)) && c.free[id/64]&(1<<(id%64)) != 0
}

// zeroFree passes the file's bytes on, writing a free page's as zeros.
type zeroFree struct {
	w     io.Writer
	c     *Copy
	off   int64
	zeros []byte
	err   error // w's, kept so that WriteTo returns it unwrapped
}

func (z *zeroFree) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		id := uint64(z.off / z.c.pageSize)
		n := int(min(int64(len(p)-done), z.c.pageSize-z.off%z.c.pageSize))
		out := p[done : done+n]
		if z.c.isFree(id) {
			out = z.zeros[:n]
		}
		if _, err := z.w.Write(out); err != nil {
			z.err = err
			return done, err
		}
		done += n
		z.off += int64(n)
	}
	return done, nil
}

// Restore writes the projection file path from r, a copy written by Copy.WriteTo, where
// there is none. It is written to path+".restore" and synced; accept, if not nil, then
// says whether the bytes are the ones wanted (their digest, say); then the file is opened
// as Open would (its schema version, pages and buckets checked) and renamed to path. It
// returns the file's checkpoint. A failure leaves nothing at path and removes the
// partial file.
//
// Errors: KindConflict when path exists, or for a file of a schema version this build
// does not read (a newer kycstate's); KindInternal for a file that is not a sound
// projection; accept's and r's errors as they are; KindUnavailable when the file cannot
// be written.
func Restore(path string, r io.Reader, accept func() error) (cp uint64, err error) {
	const op = "projection.Restore"
	if _, err := os.Stat(path); err == nil {
		return 0, domain.E(op, domain.KindConflict, fmt.Sprintf("projection %s exists: a snapshot is restored only where there is none", path))
	}
	tmp := path + ".restore"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		if domain.KindOf(err) == domain.KindOther {
			err = domain.E(op, domain.KindUnavailable, err)
		}
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	if err := f.Close(); err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	if accept != nil {
		if err := accept(); err != nil {
			return 0, err
		}
	}
	p, err := Open(tmp, Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	cp = p.Checkpoint()
	if err := p.Close(); err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return 0, domain.E(op, domain.KindUnavailable, fmt.Errorf("restored, directory not synced: %w", err))
	}
	return cp, nil
}
